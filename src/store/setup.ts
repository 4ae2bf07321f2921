import path from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { openDatabase, type Database } from './database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './embedded-postgres.js';
import { applyMigrations, unknownMigrations } from './migrate.js';
import { count } from '../lib/count.js';

/**
 * Instances share state stamped by their own clocks (an agent's wrap-up and pause ends, offers'
 * start, availability and override ends, CDR times) and read it by their own: one whose clock is
 * off stretches or cuts other instances' wrap-ups and pauses, and a dial event's leg length (5 s of
 * slack) makes an answered call a miss. Each instance within a second of Postgres' clock keeps
 * them within two seconds of each other.
 */
export const CLOCK_OFFSET_WARN_MS = 1000;

/** How far this process's clock is ahead of Postgres' (negative: behind), in ms, to the round trip's half. */
export async function clockOffsetMs(pool: pg.Pool, now: () => number = Date.now): Promise<number> {
  const sent = now();
  const { rows } = await pool.query<{ ms: number }>('SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS ms');
  return Math.round((sent + now()) / 2 - rows[0]!.ms);
}

export interface PreparedDatabase {
  db: Database;
  embedded: EmbeddedDatabase | null;
  /** Closes the pool, then stops the embedded Postgres if one was started. */
  close(): Promise<void>;
}

/** What of the configuration openDatabase takes. */
export const databaseOptions = (config: Config) => ({
  adminStatementTimeoutMs: config.ADMIN_STATEMENT_TIMEOUT_MS,
  adminBulkStatementTimeoutMs: config.ADMIN_BULK_STATEMENT_TIMEOUT_MS,
});

/**
 * DATABASE_URL, or an embedded Postgres under DATA_DIR/postgres when it is unset; then the
 * migrations in prisma/migrations are applied.
 */
export async function prepareDatabase(config: Config, log: Logger, opts: { now?: () => number } = {}): Promise<PreparedDatabase> {
  let embedded: EmbeddedDatabase | null = null;
  let url = config.DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres(path.join(config.DATA_DIR, 'postgres'), log);
    url = embedded.url;
  }
  const db = openDatabase(url, log, databaseOptions(config));
  try {
    const applied = await applyMigrations(db.pool, undefined, log);
    const newest = applied.at(-1);
    if (newest) log.info({ applied: applied.length, newest }, `${count(applied.length, 'migration')} applied; the newest ${newest}`);
    const unknown = await unknownMigrations(db.pool);
    if (unknown.length > 0) {
      log.warn(
        { unknownMigrations: unknown },
        "the database was migrated by a newer version of exoroute (migrations are not reversed): where its schema changed, this version may fail (Dial Whom and Connect answers then get the flow's onError numbers); run the newer version again, or restore the backup taken before the upgrade",
      );
    }
    const offset = await clockOffsetMs(db.pool, opts.now);
    if (Math.abs(offset) > CLOCK_OFFSET_WARN_MS) {
      log.warn(
        { clockOffsetMs: offset },
        `this server's clock is ${(Math.abs(offset) / 1000).toFixed(1)} s ${offset > 0 ? 'ahead of' : 'behind'} Postgres': instances stamp agents' wrap-ups, pauses and offers with their own clocks and read each other's, so wrap-ups and pauses run long or short and answered calls may count as misses; keep the clocks of every server and of Postgres synchronised (NTP)`,
      );
    }
  } catch (err) {
    await db.close();
    await embedded?.stop();
    throw err;
  }
  return {
    db,
    embedded,
    async close() {
      await db.close();
      await embedded?.stop();
    },
  };
}
