import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import fp from 'fastify-plugin';
import { callableAsBefore, dialInterface, migrationsAgainst, readMigrations, type DialInterface } from '../store/migrate.js';
import { withDeadline } from '../lib/deadline.js';
import { count } from '../lib/count.js';
import { causes } from '../store/database.js';

/** A stalled database must not stall the probe. */
export const DB_CHECK_TIMEOUT_MS = 1000;

/**
 * What /readyz says of a database error by its code. /readyz needs no key and is often public: the
 * error's message names the host, address, user or database, which go to the probe's log line only.
 */
export const DB_ERROR_KINDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name not resolved',
  '28P01': 'password authentication failed',
  '28000': 'connection not authorised',
  '3D000': 'database does not exist',
  '53300': 'too many connections',
  '57P03': 'starting up',
};

const DEADLINE = 'no answer within';

function dbErrorKind(err: unknown): string {
  for (const { code } of causes(err)) {
    if (typeof code === 'string' && DB_ERROR_KINDS[code]) return `${DB_ERROR_KINDS[code]} (${code})`;
  }
  const message = (err as Error).message;
  return message.startsWith(DEADLINE) ? message : 'see the log';
}

/**
 * Each kind of problem that makes an instance unready: the `reason` label of the
 * exoroute_not_ready metric, which the ExorouteNotReady alert names.
 */
export const NOT_READY_KINDS = ['database', 'migrations', 'dial_functions', 'rules', 'spool'] as const;
export type NotReadyKind = (typeof NOT_READY_KINDS)[number];

export interface Readiness {
  /** Each problem: its kind, and what /readyz says of it. */
  problems: Array<{ kind: NotReadyKind; reason: string }>;
  /** What the probe's log line adds (the database's or the rules' error), never in the answer. */
  detail: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Whether this instance can answer callbacks as it should: /readyz (on the callbacks' pool, as
     * they would meet the database), and the exoroute_not_ready metric (on the admin API's, as a
     * scrape never takes a callback's connection).
     */
    readiness(pool?: pg.Pool): Promise<Readiness>;
  }
}

/** The readiness check, shared by GET /readyz and a /metrics scrape, so that an alert sees what a balancer sees. */
export default fp(
  async function readiness(app: FastifyInstance) {
    // The migrations this code was started with, read once: a `git pull` (README, Upgrading) puts the
    // next version's on disk under a running instance, whose code needs none of them. Read at every
    // probe, they made every instance unready from the pull to its restart: with several instances
    // built before they are restarted together, all at once, and the balancer sent callbacks nowhere.
    const ours = (await readMigrations()).map(({ name }) => ({ name }));
    // How this version calls the dial functions in Postgres, read at the first probe that finds the
    // database migrated by this version alone, all of it. A newer one's migration may change it (README,
    // Upgrading): every Dial Whom and Connect callback this instance answers then fails, until it is
    // restarted on that version, and a balancer should send them to an instance that can answer.
    // Compared only while the database has migrations that are not ours: no cost otherwise.
    let ownDial: DialInterface | undefined;
    const dialFunctionsChanged = async (pool: pg.Pool, { pending, unknown }: { pending: string[]; unknown: string[] }): Promise<boolean> => {
      if (unknown.length === 0) {
        if (pending.length === 0) ownDial ??= await dialInterface(pool, DB_CHECK_TIMEOUT_MS);
        return false;
      }
      return ownDial !== undefined && !callableAsBefore(ownDial, await dialInterface(pool, DB_CHECK_TIMEOUT_MS));
    };

    app.decorate('readiness', async (pool: pg.Pool = app.db.pool): Promise<Readiness> => {
      const problems: Readiness['problems'] = [];
      let detail = '';
      try {
        const checked = async () => {
          const migrations = await migrationsAgainst(pool, ours, DB_CHECK_TIMEOUT_MS);
          return { ...migrations, changed: await dialFunctionsChanged(pool, migrations) };
        };
        const { pending, unknown, changed } = await withDeadline(checked(), DB_CHECK_TIMEOUT_MS, (ms) => `${DEADLINE} ${ms} ms`);
        if (pending.length > 0) problems.push({ kind: 'migrations', reason: `migrations not applied: ${pending.join(', ')}` });
        if (changed)
          problems.push({
            kind: 'dial_functions',
            reason: `a newer version of exoroute migrated the database (${unknown.join(', ')}) and changed how the dial functions are called: every Dial Whom and Connect callback here is answered onError; restart this instance on that version (README, Upgrading)`,
          });
      } catch (err) {
        problems.push({ kind: 'database', reason: `database unreachable: ${dbErrorKind(err)}` });
        detail = `; the database's error: ${(err as Error).message.split('\n')[0]}`;
      }
      // Only missing rules make the instance unready. Stale ones (reloads failing, LISTEN down:
      // rules.lastError) do not: they come from the database, so every instance would go unready
      // at once and no call would get an answer, where old rules still route calls. They show in
      // the exoroute_rules_listener_up metric and the log, and the instance keeps retrying.
      if (!app.rules.current) {
        const failed = app.rules.lastError;
        problems.push({ kind: 'rules', reason: failed ? 'routing rules not loaded yet: loading them failed, and is retried' : 'routing rules not loaded yet' });
        if (failed) detail += `; the rules' error: ${failed.split('\n')[0]}`;
      }
      const spooled = app.cdrWriter.spoolDepth;
      if (spooled > 0) problems.push({ kind: 'spool', reason: `${count(spooled, 'CDR')} in the local spool, waiting for Postgres` });
      return { problems, detail };
    });
  },
  { name: 'readiness', dependencies: ['rules', 'cdr-writer'], decorators: { fastify: ['db'] } },
);
