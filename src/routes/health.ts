import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { callableAsBefore, dialInterface, migrationsAgainst, readMigrations, type DialInterface } from '../store/migrate.js';
import { withDeadline } from '../lib/deadline.js';
import { count } from '../lib/count.js';
import { causes } from '../store/database.js';
import { noteRefusal } from '../plugins/request-log.js';

/** A stalled database must not stall the probe. */
const DB_CHECK_TIMEOUT_MS = 1000;

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

function dbErrorKind(err: unknown): string {
  for (const { code } of causes(err)) {
    if (typeof code === 'string' && DB_ERROR_KINDS[code]) return `${DB_ERROR_KINDS[code]} (${code})`;
  }
  const message = (err as Error).message;
  return message.startsWith(DEADLINE) ? message : 'see the log';
}

const DEADLINE = 'no answer within';

const ReadySchema = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('degraded')]),
  reasons: Type.Array(Type.String()),
});

const routes: FastifyPluginAsyncTypebox = async (app) => {
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
  const dialFunctionsChanged = async ({ pending, unknown }: { pending: string[]; unknown: string[] }): Promise<boolean> => {
    if (unknown.length === 0) {
      if (pending.length === 0) ownDial ??= await dialInterface(app.db.pool, DB_CHECK_TIMEOUT_MS);
      return false;
    }
    return ownDial !== undefined && !callableAsBefore(ownDial, await dialInterface(app.db.pool, DB_CHECK_TIMEOUT_MS));
  };
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['ops'],
        operationId: 'healthz',
        summary: 'The process is up',
        description: 'Liveness: 200 while the process runs, whatever the database does. Restart the instance when it fails. Never rate-limited, needs no key.',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['ops'],
        operationId: 'readyz',
        summary: 'The database is reachable and migrated, routing rules are loaded, and the CDR spool is empty',
        description:
          'Readiness: 200 `{"status":"ready","reasons":[]}`, else 503 `{"status":"degraded","reasons":[…]}` naming each problem (database unreachable, by the kind and code of its error, or `see the log` for a kind it does not name, never its host, address, user or database, which the probe\'s log line has; migrations pending; a newer version\'s migration that changed how the dial functions are called, which fails this instance\'s Dial Whom and Connect answers until it is restarted on that version; rules not loaded; CDRs waiting in the local spool). While Postgres is down every instance is 503 and still answers callbacks: a balancer that takes out every instance on 503 then answers no callback (README, Running several instances).',
        response: { 200: ReadySchema, 503: ReadySchema },
      },
    },
    async (request, reply) => {
      const reasons: string[] = [];
      let detail = '';
      try {
        const checked = async () => {
          const migrations = await migrationsAgainst(app.db.pool, ours, DB_CHECK_TIMEOUT_MS);
          return { ...migrations, changed: await dialFunctionsChanged(migrations) };
        };
        const { pending, unknown, changed } = await withDeadline(checked(), DB_CHECK_TIMEOUT_MS, (ms) => `${DEADLINE} ${ms} ms`);
        if (pending.length > 0) reasons.push(`migrations not applied: ${pending.join(', ')}`);
        if (changed)
          reasons.push(
            `a newer version of exoroute migrated the database (${unknown.join(', ')}) and changed how the dial functions are called: every Dial Whom and Connect callback here is answered onError; restart this instance on that version (README, Upgrading)`,
          );
      } catch (err) {
        reasons.push(`database unreachable: ${dbErrorKind(err)}`);
        detail = `; the database's error: ${(err as Error).message.split('\n')[0]}`;
      }
      // Only missing rules make the instance unready. Stale ones (reloads failing, LISTEN down:
      // rules.lastError) do not: they come from the database, so every instance would go unready
      // at once and no call would get an answer, where old rules still route calls. They show in
      // the exoroute_rules_listener_up metric and the log, and the instance keeps retrying.
      if (!app.rules.current) {
        const failed = app.rules.lastError;
        reasons.push(failed ? 'routing rules not loaded yet: loading them failed, and is retried' : 'routing rules not loaded yet');
        if (failed) detail += `; the rules' error: ${failed.split('\n')[0]}`;
      }
      const spooled = app.cdrWriter.spoolDepth;
      if (spooled > 0) reasons.push(`${count(spooled, 'CDR')} in the local spool, waiting for Postgres`);
      const status = reasons.length === 0 ? ('ready' as const) : ('degraded' as const);
      // On the probe's log line too: an operator reading `GET /readyz 503` sees why without asking again.
      if (reasons.length > 0) noteRefusal(request, reasons.join('; ') + detail);
      return reply.status(reasons.length === 0 ? 200 : 503).send({ status, reasons });
    },
  );
};
export default routes;
