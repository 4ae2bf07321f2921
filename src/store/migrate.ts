import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import type { Logger } from 'pino';
import { withQueryTimeout } from './database.js';

/** prisma/migrations at the repository (or image) root: two levels up from src/store, three from dist/src/store. */
export const MIGRATIONS_DIR =
  ['../../prisma/migrations/', '../../../prisma/migrations/'].map((rel) => fileURLToPath(new URL(rel, import.meta.url))).find((dir) => existsSync(dir)) ??
  fileURLToPath(new URL('../../prisma/migrations/', import.meta.url));

/** Same DDL and advisory lock id as Prisma's schema engine, so `prisma migrate deploy` agrees. */
const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;
const PRISMA_ADVISORY_LOCK = 72707369;

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(path.join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/**
 * The database's record of a migration and the migration on disk disagree: unfinished (a failed
 * `prisma migrate deploy`) or edited since it was applied. Only the operator can settle it, so no
 * restart helps (server.ts exits 3, which the systemd unit does not restart).
 */
export class MigrationHistoryError extends MigrationError {
  override name = 'MigrationHistoryError';
}

/**
 * Applies every migration not yet recorded in `_prisma_migrations`, each in its own transaction,
 * under Prisma's advisory lock so that several instances starting at once apply each only once.
 * Returns the names applied now. `log` hears of a wait for another instance's migrations and of
 * each migration as it starts (one on a large table may take minutes): at info on a database
 * migrated before, at debug on a new one.
 *
 * Each waits at most `lockWait.timeoutMs` for a table lock (`lock_timeout`), then rolls back and
 * tries again after `lockWait.retryMs`: Postgres queues every later query on a table behind a
 * waiting ALTER, so a migration stuck behind a long query (a CSV export, the first prune) would
 * otherwise hold up the running instances' callbacks for as long.
 */
export async function applyMigrations(
  pool: pg.Pool,
  dir = MIGRATIONS_DIR,
  log?: Pick<Logger, 'debug' | 'info' | 'warn'>,
  lockWait = { timeoutMs: 500, retryMs: 1000 },
): Promise<string[]> {
  const migrations = await readMigrations(dir);
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    const { rows: locked } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [PRISMA_ADVISORY_LOCK]);
    if (!locked[0]?.ok) {
      log?.info('another instance (or prisma migrate) is applying migrations; waiting for it to finish');
      await client.query('SELECT pg_advisory_lock($1)', [PRISMA_ADVISORY_LOCK]);
    }
    await client.query(MIGRATIONS_TABLE);
    const { rows } = await client.query<{ migration_name: string; checksum: string; finished_at: Date | null }>(
      'SELECT migration_name, checksum, finished_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL',
    );
    const done = new Map(rows.map((r) => [r.migration_name, r]));
    // Read before the first migration to apply (none on a fresh database, where no instance runs yet).
    let before = migrations.some((m) => !done.has(m.name)) ? await dialInterface(client) : null;
    if (before?.types.size === 0 && before.functions.length === 0) before = null;
    for (const m of migrations) {
      const row = done.get(m.name);
      if (row) {
        if (!row.finished_at)
          throw new MigrationHistoryError(
            `migration ${m.name} started but did not finish; complete or undo its changes by hand, then record that with \`prisma migrate resolve --applied ${m.name}\` or \`--rolled-back ${m.name}\``,
          );
        if (row.checksum !== m.checksum)
          throw new MigrationHistoryError(
            `migration ${m.name} was edited after it was applied (its checksum in _prisma_migrations differs from prisma/migrations/${m.name}/migration.sql); run the version that applied it, or put that file back`,
          );
        continue;
      }
      // On a new database each is quick and the operator wants the count (setup.ts), not 30 lines;
      // an upgrade applies a few, and one that rewrites a large table may take minutes: named at info.
      log?.[done.size === 0 ? 'debug' : 'info']({ migration: m.name }, 'applying migration');
      for (let attempt = 1; ; attempt++) {
        await client.query('BEGIN');
        try {
          await client.query(`SET LOCAL lock_timeout = ${Math.round(lockWait.timeoutMs)}`);
          await client.query(m.sql);
          await client.query(
            `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
             VALUES ($1, $2, $3, now(), now(), 1)`,
            [randomUUID(), m.checksum, m.name],
          );
          await client.query('COMMIT');
          break;
        } catch (err) {
          await client.query('ROLLBACK');
          if ((err as { code?: string }).code !== '55P03') throw new MigrationError(`migration ${m.name} failed: ${(err as Error).message}`);
          // lock_not_available: logged at the first wait and then every 20th, not once a second.
          if (attempt % 20 === 1)
            log?.warn(
              { migration: m.name, attempt },
              `migration waits for a table lock that another session holds (${(err as Error).message}); trying again every ${lockWait.retryMs} ms`,
            );
          await setTimeout(lockWait.retryMs);
        }
      }
      applied.push(m.name);
    }
    if (before) {
      if (!callableAsBefore(before, await dialInterface(client)))
        log?.warn(
          { applied },
          "these migrations changed how the dial functions in Postgres are called (their types or parameters): instances of the version before still running on this database now answer every Dial Whom and Connect callback with the flow's onError numbers, until each is restarted on this version; restart them now (README, Upgrading)",
        );
    }
    return applied;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [PRISMA_ADVISORY_LOCK]).catch(() => {});
    client.release();
  }
}

/**
 * How an instance calls the dial functions of prisma/functions/dial_answer.sql: the attributes of
 * their composite types (dial_request and dial_extra are sent by position, ROW(...)::dial_request)
 * and each dial_* function's parameter types (those with defaults counted apart) and result.
 */
export interface DialInterface {
  types: Map<string, string>;
  functions: Array<{ name: string; args: string[]; required: number; result: string }>;
}

/** The dial functions' interface as the database has it now (with `timeoutMs`, each statement given up after that long). */
export async function dialInterface(client: pg.Pool | pg.PoolClient, timeoutMs?: number): Promise<DialInterface> {
  const types = await client.query<{ name: string; attributes: string }>(
    withQueryTimeout(
      `SELECT t.typname AS name, string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) AS attributes
       FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      WHERE t.typname LIKE 'dial\\_%' AND t.typnamespace = current_schema()::regnamespace
      GROUP BY t.typname`,
      timeoutMs,
    ),
  );
  const functions = await client.query<DialInterface['functions'][number]>(
    withQueryTimeout(
      `SELECT p.proname AS name, p.pronargs - p.pronargdefaults AS required, pg_get_function_result(p.oid) AS result,
            ARRAY(SELECT format_type(u.t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS u(t, i) ORDER BY u.i) AS args
       FROM pg_proc p
      WHERE p.proname LIKE 'dial\\_%' AND p.pronamespace = current_schema()::regnamespace`,
      timeoutMs,
    ),
  );
  return { types: new Map(types.rows.map((r) => [r.name, r.attributes])), functions: functions.rows };
}

/**
 * Whether every call an instance could make to the dial functions `before` still works on `after`:
 * each type with the same attributes, each function still there taking the same parameters (more
 * only with defaults) and giving the same result type. A migration that copies dial_answer.sql
 * with these unchanged leaves the instances of the version before answering; one that changes them
 * fails each of their calls (cannot cast type record to dial_request, function … does not exist).
 */
export function callableAsBefore(before: DialInterface, after: DialInterface): boolean {
  for (const [name, attributes] of before.types) if (after.types.get(name) !== attributes) return false;
  return before.functions.every((f) =>
    after.functions.some(
      (g) =>
        g.name === f.name && g.result === f.result && g.required <= f.required && g.args.length >= f.args.length && f.args.every((arg, i) => g.args[i] === arg),
    ),
  );
}

/**
 * Names of migrations the database records as applied that are not on disk: a newer version of
 * exoroute migrated it (a deploy rolled back), and this version's code may not fit its schema.
 */
export async function unknownMigrations(pool: pg.Pool, dir = MIGRATIONS_DIR): Promise<string[]> {
  const onDisk = new Set((await readMigrations(dir)).map((m) => m.name));
  const { rows } = await pool.query<{ migration_name: string }>(
    `SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY migration_name`,
  );
  return [...new Set(rows.map((r) => r.migration_name))].filter((name) => !onDisk.has(name));
}

/**
 * Names of migrations the database has not recorded as finished: of those on disk in `dir`, or of
 * the list given (a running instance's own, read when it started: /readyz).
 */
export async function pendingMigrations(
  pool: pg.Pool,
  dir: string | readonly Pick<Migration, 'name'>[] = MIGRATIONS_DIR,
  timeoutMs?: number,
): Promise<string[]> {
  return (await migrationsAgainst(pool, typeof dir === 'string' ? await readMigrations(dir) : dir, timeoutMs)).pending;
}

/**
 * The database's finished migrations against `ours`: those of ours it has not recorded (`pending`),
 * and those it has that are not ours (`unknown`: a newer version of exoroute migrated it).
 */
export async function migrationsAgainst(
  pool: pg.Pool,
  ours: readonly Pick<Migration, 'name'>[],
  timeoutMs?: number,
): Promise<{ pending: string[]; unknown: string[] }> {
  // With a timeout, a stalled server fails the query, and the pool drops that connection.
  const { rows } = await pool.query<{ migration_name: string }>(
    withQueryTimeout(
      `SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY migration_name`,
      timeoutMs,
    ),
  );
  const done = new Set(rows.map((r) => r.migration_name));
  const known = new Set(ours.map((m) => m.name));
  return { pending: ours.filter((m) => !done.has(m.name)).map((m) => m.name), unknown: [...done].filter((name) => !known.has(name)) };
}
