import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { openDatabase, type Database } from './database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './embedded-postgres.js';
import { applyMigrations, unknownMigrations } from './migrate.js';

export interface PreparedDatabase {
  db: Database;
  embedded: EmbeddedDatabase | null;
  /** Closes the pool, then stops the embedded Postgres if one was started. */
  close(): Promise<void>;
}

/**
 * DATABASE_URL, or an embedded Postgres under DATA_DIR/postgres when it is unset; then the
 * migrations in prisma/migrations are applied.
 */
export async function prepareDatabase(config: Config, log: Logger): Promise<PreparedDatabase> {
  let embedded: EmbeddedDatabase | null = null;
  let url = config.DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres(path.join(config.DATA_DIR, 'postgres'), log);
    url = embedded.url;
  }
  const db = openDatabase(url, log);
  try {
    const applied = await applyMigrations(db.pool, undefined, log);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    const unknown = await unknownMigrations(db.pool);
    if (unknown.length > 0) {
      log.warn(
        { unknownMigrations: unknown },
        "the database was migrated by a newer version of exoroute (migrations are not reversed): where its schema changed, this version may fail (Dial Whom and Connect answers then get the flow's onError numbers); run the newer version again, or restore the backup taken before the upgrade",
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
