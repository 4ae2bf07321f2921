import path from 'node:path';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { ErrorObject } from 'ajv';
import { IANAZone } from 'luxon';
import formbody from '@fastify/formbody';
import type { Config } from './config.js';
import type { Database } from './store/database.js';
import errorHandler from './plugins/error-handler.js';
import openapi from './plugins/swagger.js';
import auth from './plugins/auth.js';
import securityHeaders from './plugins/security-headers.js';
import parseDeferredQuery, { deferredQuery } from './plugins/deferred-query.js';
import healthRoutes from './routes/health.js';
import adminRoutes from './routes/admin/index.js';
import exotelRoutes, { type ExotelRoutesOptions } from './routes/exotel/index.js';
import { RulesCache } from './store/rules-snapshot.js';
import { CdrWriter } from './store/cdr-writer.js';
import { CdrSpool } from './store/cdr-spool.js';
import metrics from './plugins/metrics.js';
import dialing from './plugins/dialing.js';
import metricsRoutes from './routes/metrics.js';
import { RetentionJob } from './store/retention.js';
import { RefusalLog } from './store/refusals.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    db: Database;
    /** The in-memory routing rules every callback decides from. */
    rules: RulesCache;
    /** Group-committing CDR writer for the callback path. */
    cdrWriter: CdrWriter;
    random: () => number;
    /** Hourly pruning of old CDRs and finished calls' dial state. */
    retention: RetentionJob;
    /** Refused callbacks: which are stored as CDRs, and the per-address, per-minute counts of all. */
    refusals: RefusalLog;
  }
}

export interface AppOptions {
  config: Config;
  db: Database;
  logger?: FastifyServerOptions['logger'] | FastifyServerOptions['loggerInstance'];
  /** false: do not load rules or listen for changes (used to render the OpenAPI document offline). */
  background?: boolean;
  /** Random source for the random and weighted dial strategies (tests pass a seeded one). */
  random?: () => number;
}

/** The most specific error: the deepest path, not the summary an `anyOf` adds. */
function describeSchemaError(errors: ErrorObject[], dataVar: string): string {
  const located = errors
    .filter((e) => !['anyOf', 'oneOf', 'if'].includes(e.keyword))
    .map((e) => {
      const params = e.params as { additionalProperty?: string; missingProperty?: string };
      if (e.keyword === 'additionalProperties') return { path: `${e.instancePath}/${params.additionalProperty}`, text: 'unknown field' };
      if (e.keyword === 'required') return { path: `${e.instancePath}/${params.missingProperty}`, text: 'is required' };
      const described = (e.parentSchema as { description?: string } | undefined)?.description;
      const text = e.keyword === 'pattern' && described ? `must be: ${described}` : (e.message ?? 'is invalid');
      return { path: e.instancePath, text };
    });
  // Deepest first; at equal depth, a wrong value beats a wrong shape (the shape errors of an
  // `anyOf` branch that was not meant, e.g. a missing `closed` when special hours were given).
  const shapeOnly = (k: string) => (['required', 'additionalProperties', 'const', 'type'].includes(k) ? 1 : 0);
  const best = located
    .map((l, i) => ({ ...l, shape: shapeOnly(errors.filter((e) => !['anyOf', 'oneOf', 'if'].includes(e.keyword))[i]!.keyword) }))
    .sort((a, b) => b.path.split('/').length - a.path.split('/').length || a.shape - b.shape)[0];
  if (!best) return `${dataVar}: ${errors[0]?.message ?? 'is invalid'}`;
  return `${dataVar}${best.path}: ${best.text}`;
}

/** Exotel's callbacks (and any other URL under their prefix, refused with a CDR). */
const isCallbackUrl = (url: string) => url.startsWith('/exotel/');

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const loggerOpts =
    opts.logger && typeof (opts.logger as { child?: unknown }).child === 'function'
      ? { loggerInstance: opts.logger as FastifyServerOptions['loggerInstance'] }
      : { logger: (opts.logger as FastifyServerOptions['logger']) ?? false };
  const unroutable: ExotelRoutesOptions['unroutable'] & object = {};
  const app = Fastify({
    ...loggerOpts,
    bodyLimit: 8 * 1024 * 1024,
    // Behind a load balancer, request.ip (EXOTEL_ALLOWED_CIDRS) is the caller's only if the balancer is trusted.
    trustProxy: opts.config.TRUST_PROXY,
    // Callbacks log one line each (src/routes/exotel); other requests are logged below with the
    // query string's `token` redacted.
    logController: new LogController({ disableRequestLogging: true }),
    // Unknown fields are rejected (400), never silently dropped; all errors so the deepest is named.
    ajv: {
      customOptions: { removeAdditional: false, allErrors: true, verbose: true, coerceTypes: 'array' },
      plugins: [
        (ajv: import('ajv').default) =>
          ajv.addFormat('iana-timezone', { type: 'string', validate: (s: string) => IANAZone.isValidZone(s) }),
      ],
    },
    schemaErrorFormatter: (errors, dataVar) => new Error(describeSchemaError(errors as ErrorObject[], dataVar)),
    // Flow slugs are looked up, not limited by the router: a long one is a 404 with a CDR, not a 414.
    // The query string is parsed by parseDeferredQuery, except a callback's (src/exotel/params.ts).
    routerOptions: { maxParamLength: 4096, querystringParser: deferredQuery },
    // A URL the router cannot decode: Fastify's own answer would echo it, `token` included.
    frameworkErrors: (err, request, reply) => {
      if (unroutable.handle && isCallbackUrl(request.url)) return unroutable.handle(request, reply);
      return (reply as FastifyReply).code(400).send({ statusCode: 400, error: 'Bad Request', code: err.code, message: 'the URL has a malformed %-escape' });
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('config', opts.config);
  app.decorate('db', opts.db);
  app.decorate('rules', new RulesCache(opts.db, app.log));
  app.decorate('cdrWriter', new CdrWriter(opts.db.pool, app.log, { spool: new CdrSpool(path.join(opts.config.DATA_DIR, 'spool'), app.log) }));
  app.decorate('random', opts.random ?? Math.random);
  app.decorate('retention', new RetentionJob(opts.db.pool, app.log, { retentionDays: opts.config.CDR_RETENTION_DAYS }));
  app.decorate('refusals', new RefusalLog(opts.db.pool, app.log));
  // Runs even with CDR_RETENTION_DAYS=0: finished calls' dial state must not pile up either.
  if (opts.background !== false) app.addHook('onReady', async () => app.retention.start());
  app.addHook('onClose', async () => {
    await app.retention.stop();
  });
  if (opts.background !== false) {
    app.addHook('onReady', async () => {
      await app.rules.start();
      await app.cdrWriter.start(); // replays what an earlier run left in the spool
      app.refusals.start();
    });
  }
  app.addHook('onClose', async () => {
    await app.refusals.close(); // its counts are in memory only until written
    await app.cdrWriter.close();
    await app.rules.stop();
  });

  // Synchronous: for a callback (which logs its own line) the hook is a check and nothing more.
  app.addHook('onResponse', (request, reply, done) => {
    if (!isCallbackUrl(request.url)) {
      request.log.info(
        { method: request.method, url: request.url.replace(/([?&]token=)[^&]*/gi, '$1[redacted]'), status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
        'request',
      );
    }
    done();
  });
  await app.register(parseDeferredQuery, { skip: isCallbackUrl });
  await app.register(errorHandler);
  await app.register(securityHeaders, { skip: isCallbackUrl });
  await app.register(formbody);
  await app.register(openapi);
  await app.register(metrics);
  await app.register(dialing);
  await app.register(healthRoutes);
  await app.register(metricsRoutes);
  await app.register(exotelRoutes, { prefix: '/exotel', unroutable });
  await app.register(
    async (admin) => {
      await admin.register(auth);
      await admin.register(adminRoutes);
    },
    { prefix: '/admin' },
  );
  return app;
}
