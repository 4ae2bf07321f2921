import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Config } from './config.js';
import type { Database } from './store/database.js';
import { validationOptions } from './plugins/validation.js';
import errorHandler, { clientErrors, frameworkErrors } from './plugins/error-handler.js';
import openapi, { docs } from './plugins/swagger.js';
import securityHeaders from './plugins/security-headers.js';
import parseDeferredQuery, { deferredQuery } from './plugins/deferred-query.js';
import requestLog from './plugins/request-log.js';
import rules from './plugins/rules.js';
import cdrWriter from './plugins/cdr-writer.js';
import retention from './plugins/retention.js';
import metrics from './plugins/metrics.js';
import readiness from './plugins/readiness.js';
import refusals from './plugins/refusals.js';
import dialing from './plugins/dialing.js';
import callbacks from './routes/exotel/index.js';
import healthRoutes from './routes/health.js';
import metricsRoutes from './routes/metrics.js';
import adminRoutes from './routes/admin/index.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    db: Database;
    random: () => number;
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

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.logger && typeof (opts.logger as { child?: unknown }).child === 'function'
      ? { loggerInstance: opts.logger as FastifyServerOptions['loggerInstance'] }
      : { logger: (opts.logger as FastifyServerOptions['logger']) ?? false }),
    bodyLimit: 8 * 1024 * 1024,
    // A request must arrive whole (headers and body) within REQUEST_TIMEOUT_SECONDS, else 408 and the
    // connection closes (clientErrors): Fastify's default, 0, let a client that sends its headers and
    // then trickles its body hold a connection for ever. Headers within 60 s at most, as Node's
    // default; Node looks for late requests every connectionsCheckingInterval, so at most half the
    // bound late.
    requestTimeout: opts.config.REQUEST_TIMEOUT_SECONDS * 1000,
    http: {
      headersTimeout: Math.min(60_000, opts.config.REQUEST_TIMEOUT_SECONDS * 1000),
      connectionsCheckingInterval: Math.min(30_000, opts.config.REQUEST_TIMEOUT_SECONDS * 500),
    },
    // Behind a load balancer, request.ip (EXOTEL_ALLOWED_CIDRS) is the caller's only if the balancer is trusted.
    trustProxy: opts.config.TRUST_PROXY,
    // Callbacks log one line each (src/routes/exotel), other requests one through requestLog.
    logController: new LogController({ disableRequestLogging: true }),
    ...validationOptions,
    // Flow slugs are looked up, not limited by the router: a long one is a 404 with a CDR, not a 414.
    // The query string is parsed by parseDeferredQuery, except a callback's (src/exotel/params.ts).
    routerOptions: { maxParamLength: 4096, querystringParser: deferredQuery },
    frameworkErrors,
    // What Node's HTTP parser refuses (431, 400, 408) is counted and logged, a callback's with its CDR.
    clientErrorHandler: clientErrors,
    // While closing, Fastify answers a request that still arrives on an open keep-alive connection
    // (the answer to the one in flight said keep-alive) with a bare 503: for a callback, a failed
    // call step and no CDR. Handled as usual instead, it is answered with `Connection: close`.
    return503OnClosing: false,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('config', opts.config);
  app.decorate('db', opts.db);
  app.decorate('random', opts.random ?? Math.random);
  const background = opts.background !== false;
  await app.register(retention, { background });
  await app.register(rules, { background });
  await app.register(cdrWriter, { background });
  await app.register(refusals, { background });
  await app.register(readiness);
  await app.register(metrics);
  await app.register(dialing);
  await app.register(openapi);
  await app.register(callbacks);
  // Admin, docs and ops: a context beside the callbacks' with the query parsed, security headers,
  // one log line per request, `{statusCode, error, message}` errors, and every other URL's 404.
  await app.register(async (web) => {
    // No route here reads a body (the admin routes, which do, parse their own): a path asked with a
    // typo or a method it does not take is its 404/405, not a complaint about a body nobody reads
    // (the README's `api` alias sends a JSON content type with every request, also without a body).
    web.removeContentTypeParser('application/json');
    web.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, _body, done) => done(null, undefined));
    await web.register(requestLog);
    await web.register(parseDeferredQuery);
    await web.register(errorHandler);
    await web.register(securityHeaders);
    await web.register(docs);
    await web.register(healthRoutes);
    await web.register(metricsRoutes);
    await web.register(adminRoutes, { prefix: '/admin' });
  });
  return app;
}
