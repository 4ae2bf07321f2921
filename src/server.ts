import { access, constants, mkdir } from 'node:fs/promises';
import v8 from 'node:v8';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp } from './app.js';
import { type Config, ConfigError, hostAndPort, loadConfig, shown, startupWarnings } from './config.js';
import { BootstrapKeyTakenError, ensureBootstrapKey, KeyFileError } from './store/api-keys.js';
import { EmbeddedPostgresError, leaveSignalsToCaller } from './store/embedded-postgres.js';
import { MigrationError, MigrationHistoryError } from './store/migrate.js';
import { prepareDatabase, type PreparedDatabase } from './store/setup.js';

/**
 * stdout, written in the background in chunks of at least 4 kB (and at least once a second),
 * instead of one synchronous write per line: the callback line cost ~8 µs of each callback's
 * ~75 µs. pino flushes what is left synchronously when the process exits, crashes included; only
 * a SIGKILL loses the last second of lines (the CDRs are in Postgres, not in the log).
 */
function logDestination() {
  return pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 1000 });
}

/**
 * How much longer than DECISION_BUDGET_MS a graceful stop waits for requests in flight before it
 * closes their connections (stop() in main): a callback in flight is answered within its budget.
 */
const REQUEST_GRACE_MARGIN_MS = 500;

/** Why the server cannot listen on HOST:PORT, and what to change: one line for the operator. */
function listenProblem(err: NodeJS.ErrnoException, config: Pick<Config, 'HOST' | 'PORT'>): string {
  const address = hostAndPort(config.HOST, config.PORT);
  switch (err.code) {
    case 'EADDRINUSE':
      return `${address} is already in use (another exoroute, or another program): stop that, or set PORT to a free port (a second exoroute also needs a DATA_DIR of its own)`;
    case 'EACCES':
      return `not allowed to listen on ${address} (ports below 1024 need root): set PORT to 1024 or above`;
    case 'EADDRNOTAVAIL':
      return `HOST=${config.HOST} is not an address of this machine: set HOST to one (127.0.0.1, or 0.0.0.0 for every interface)`;
    default:
      return `cannot listen on ${address}: ${err.message}`;
  }
}

/**
 * Why DATA_DIR cannot hold the admin key file and the CDR spool (created if missing), or undefined.
 * Unchecked, an unwritable one failed later: with a stack trace, or as `listen` failing with EACCES,
 * reported as a port below 1024.
 */
async function dataDirProblem(dir: string): Promise<string | undefined> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (err) {
    return `DATA_DIR=${JSON.stringify(dir)} cannot be used (${(err as Error).message}): set DATA_DIR to a directory this user can write, or make it one`;
  }
}

/** Entry point: config, database, listen, and a bounded graceful shutdown on SIGTERM/SIGINT/SIGHUP. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const dataDir = await dataDirProblem(config.DATA_DIR);
  if (dataDir) {
    console.error(`exoroute cannot start: ${dataDir}`);
    process.exit(2);
  }
  // Under load V8 would let the heap grow to several times what is live before collecting it
  // (628 MB RSS at 7,000 callbacks/s with 110 MB live). A growth limit keeps RSS near the live
  // size, however big the VIP lists are, where a fixed --max-old-space-size would crash a service
  // whose lists outgrew it. 0 leaves V8's own heuristics.
  if (config.HEAP_GROWTH_PERCENT > 0) v8.setFlagsFromString(`--heap-growing-percent=${config.HEAP_GROWTH_PERCENT}`);
  const log = pino(
    {
      level: config.LOG_LEVEL,
      // Exact paths only: a wildcard (`*.password`) makes pino walk every object of every line, 1.4 µs
      // per callback line, and nothing here logs such objects. `err.rawPacket`: the bytes of a request
      // Node's HTTP parser refused (Fastify logs it at trace), query string and Authorization included.
      redact: {
        paths: ['req.headers.authorization', 'req.query.token', 'password', 'secret', 'err.password', 'err.rawPacket'],
        censor: '[redacted]',
      },
    },
    logDestination(),
  );
  // Signals are taken from the start: one that arrives while the database is being prepared or the
  // app built stops the service once that step is done, and nothing (the embedded Postgres) is left.
  let store: PreparedDatabase | null = null;
  let app: FastifyInstance | null = null;
  let listening = false;
  let stopping = false;
  // The exit code of a graceful stop: 0 when asked to stop (SIGTERM, SIGINT), 129 (128 + 1, as a
  // shell reports a process SIGHUP ended) for SIGHUP, which is no request to stop under a supervisor
  // (an operator's `kill -HUP` for a reload): systemd's Restart=on-failure (deploy/exoroute.service)
  // restarts it then, reading the configuration afresh, where exit 0 left the service down.
  let exitCode = 0;
  const stop = async () => {
    const force = setTimeout(() => {
      log.error('shutdown took longer than 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    try {
      if (app) {
        // Stops accepting and waits for in-flight requests. A keep-alive connection whose request
        // was in flight would then sit idle until its timeout: close such connections as they idle.
        const sweep = setInterval(() => app?.server.closeIdleConnections(), 50);
        // A request still running once every callback in flight has had its DECISION_BUDGET_MS (a
        // CSV download, which streams for minutes; an admin request on a Postgres connection that
        // died without a word, given up only after its statement timeouts) would hold the rest until
        // the forced exit, with exit code 1 and the CDR writer, the refused-callback counts and the
        // database never closed: its connection is closed then.
        const graceMs = config.DECISION_BUDGET_MS + REQUEST_GRACE_MARGIN_MS;
        const cut = setTimeout(() => {
          log.warn(`requests still running ${graceMs} ms after the signal (CSV downloads, admin requests waiting for Postgres): their connections are closed`);
          app?.server.closeAllConnections();
        }, graceMs);
        await app.close();
        clearTimeout(cut);
        clearInterval(sweep);
      }
      await store?.close();
      log.info('stopped');
      process.exit(exitCode);
    } catch (err) {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  const onSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    if (signal === 'SIGHUP') {
      exitCode = 129;
      log.info({ signal }, 'shutting down; exit 129, so that a supervisor restarts the service (systemd reads its EnvironmentFile again)');
    } else log.info({ signal }, 'shutting down');
    if (listening) void stop();
  };
  // SIGINT: Ctrl-C in a terminal; SIGHUP: the terminal closed, or a `kill -HUP` (exitCode). The embedded Postgres has a process
  // group of its own, so the terminal's signal does not stop it under the service's feet (nor
  // leave it running when the service goes): store.close() stops it, last.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => onSignal(signal));
  leaveSignalsToCaller();

  try {
    store = await prepareDatabase(config, log);
  } catch (err) {
    // DATABASE_URL's Postgres down, unreachable, or refusing the user, password or database: one
    // line, not the pg error's stack; exit 1, so that the supervisor tries again.
    if (!config.DATABASE_URL || err instanceof MigrationError) throw err;
    console.error(
      `exoroute cannot start: the database at DATABASE_URL=${shown('DATABASE_URL', config.DATABASE_URL)} cannot be used: ${(err as Error).message}: check that Postgres runs there and takes this user, password and database`,
    );
    process.exit(1);
  }
  if (stopping) return stop();
  let bootstrap: Awaited<ReturnType<typeof ensureBootstrapKey>>;
  try {
    bootstrap = await ensureBootstrapKey(store.db.pool, { configuredKey: config.ADMIN_API_KEY, dataDir: config.DATA_DIR });
  } catch (err) {
    // Stop the embedded Postgres too; exit 2 as for a bad variable: a restart cannot fix the file.
    if (!(err instanceof KeyFileError || err instanceof BootstrapKeyTakenError)) throw err;
    console.error(`exoroute cannot start: ${err.message}`);
    await store.close();
    process.exit(2);
  }
  if (bootstrap.generated) {
    // Printed once, on the run that generated it; it stays in the file for later runs.
    process.stdout.write(`\n  Admin API key (kept in ${bootstrap.file}, shown only now):\n    ${bootstrap.key}\n\n`);
  }
  for (const warning of startupWarnings(config)) log.warn(warning);

  app = await buildApp({ config, db: store.db, logger: log });
  if (stopping) return stop();
  try {
    // Fastify logs `Server listening at <address>` at info, one line per address (each interface's
    // for 0.0.0.0), and has no option against it: its level is raised while it listens (Fastify's
    // own advice), and the line below says it once, with the docs and PUBLIC_URL. The app is ready
    // first, so that only the listening itself is quiet (no request can come before it).
    await app.ready();
    const level = app.log.level;
    if ((pino.levels.values[level] ?? Number.POSITIVE_INFINITY) < (pino.levels.values.warn ?? 40)) app.log.level = 'warn';
    try {
      await app.listen({ port: config.PORT, host: config.HOST });
    } finally {
      app.log.level = level;
    }
  } catch (err) {
    // The app first: its rules listener and CDR writer still use the database closed after it.
    await app.close();
    await store.close();
    console.error(`exoroute cannot start: ${listenProblem(err as NodeJS.ErrnoException, config)}`);
    process.exit(1);
  }
  listening = true;
  if (stopping) return stop();
  const address = app.server.address();
  const port = address && typeof address === 'object' ? address.port : config.PORT;
  const docs = `http://${hostAndPort(config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST, port)}/docs`;
  log.info({ docs, publicUrl: config.PUBLIC_URL }, `exoroute listening: docs at ${docs}, PUBLIC_URL (the base Exotel is given) ${config.PUBLIC_URL}`);
}

main().catch((err) => {
  // A start-up problem the operator can fix is one line saying what and how, not a stack trace.
  // One that no restart can fix (the migration history) exits 3, which the systemd unit does not restart.
  if (err instanceof MigrationHistoryError) {
    console.error(`exoroute cannot start: ${err.message}`);
    process.exit(3);
  }
  if (err instanceof EmbeddedPostgresError) console.error(`exoroute cannot start: ${err.message}`);
  else console.error(err);
  process.exit(1);
});
