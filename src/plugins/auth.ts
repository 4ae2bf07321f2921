import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import { DomainError, ForbiddenError, UnauthorizedError } from '../errors.js';
import { findKey, hashKey, KeyUseRecorder, type AuthenticatedKey } from '../store/api-keys.js';
import type { Actor } from '../store/audit.js';
import { ErrorSchema, RETRY_AFTER_HEADERS } from '../schemas/common.js';
import { sharedResponse } from '../openapi-components.js';

declare module 'fastify' {
  interface FastifyRequest {
    apiKey: AuthenticatedKey | null;
  }
  interface FastifyContextConfig {
    /** A POST that changes nothing (simulate): a viewer key may call it too. */
    changesNothing?: boolean;
  }
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const MINUTE_MS = 60_000;

/** What this plugin answers on any route it guards, for the OpenAPI document (added to each route's own answers). */
const refusal = (description: string) => ({ ...ErrorSchema, description });
const UNAUTHORIZED = sharedResponse('AdminUnauthorized', refusal('No API key, or an unknown or revoked one: send `Authorization: Bearer <key>`'));
const FORBIDDEN = sharedResponse('AdminForbidden', refusal('A viewer key: this route writes and needs an admin key'));
/** A refusal the client may retry later: with the `Retry-After` header it is sent with. */
const retryLater = (description: string) => ({ ...refusal(description), headers: RETRY_AFTER_HEADERS });
/** Every 503 the error handler gives an admin request (src/plugins/error-handler.ts): each with Retry-After. */
const BUSY = sharedResponse(
  'AdminUnavailable',
  retryLater(
    "The database did not answer in time, and the message says which way: the admin API's database connections were all in use for 5 s (slow requests or CSV downloads); a statement ran past ADMIN_STATEMENT_TIMEOUT_MS (a VIP list's writes ADMIN_BULK_STATEMENT_TIMEOUT_MS), most often waiting on a lock another session holds; a connection gave no answer long after that and was closed as dead (a failover, a NAT or firewall that dropped it); or the database is unavailable (Postgres down, restarting or unreachable). Retry after `Retry-After` seconds",
  ),
);
const TOO_MANY = sharedResponse(
  'AdminTooManyRequests',
  retryLater(
    'Too many requests with this key this minute (ADMIN_RATE_LIMIT_PER_MINUTE), or too many failed authentications from this address (ADMIN_AUTH_FAILURES_PER_MINUTE): retry after `Retry-After` seconds',
  ),
);

/**
 * The author of an admin change, for the audit trail; what the change announces is noted on the
 * request, whose answer waits until this instance has loaded it (src/plugins/rules-written.ts).
 */
export const actorOf = (request: FastifyRequest): Actor => ({
  apiKeyId: request.apiKey?.id ?? null,
  announce: (payload) => {
    request.rulesAnnounced ??= [];
    request.rulesAnnounced.push(payload);
  },
});

/**
 * A 401's `WWW-Authenticate` (RFC 9110 §11.6.1 requires one): RFC 6750's Bearer challenge, with
 * `error="invalid_token"` when a token was sent (unknown, revoked or wrong) and none when it was not.
 */
export const bearerChallenge = (realm: string, tokenSent: boolean): string => `Bearer realm="${realm}"${tokenSent ? ', error="invalid_token"' : ''}`;

/** The token of an `Authorization: Bearer <token>` header, or null. */
export const bearerToken = (request: FastifyRequest): string | null => /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1] ?? null;

class TooManyRequestsError extends DomainError {
  constructor(message: string) {
    super(429, message);
  }
}

/**
 * Guards the routes this plugin is registered around (the /admin scope), in this order:
 *
 * 1. a client address with `ADMIN_AUTH_FAILURES_PER_MINUTE` failed authentications in the current
 *    minute gets 429 + Retry-After for the rest of it, whatever key it sends — also a right one, or
 *    guessing could go on and tell a hit by its status;
 * 2. at most `ADMIN_RATE_LIMIT_PER_MINUTE` requests a minute per key presented (per client address
 *    without one), 429 + Retry-After beyond; counted before the key lookup, so a flood costs no query;
 * 3. 401 without a live key (and one more failure for the address), 403 when a viewer key writes
 *    (any method but GET, HEAD and OPTIONS, unless the route's config says it `changesNothing`);
 * 4. bodies over `ADMIN_BODY_LIMIT_BYTES` are 413, except on routes that set their own `bodyLimit`
 *    (the VIP bulk upsert).
 *
 * Each guarded route's OpenAPI answers get these refusals added: 401, 429, 403 on a write, 413
 * where a body is taken, and 503 (the admin pool busy, the database unavailable: the error handler)
 * (a route's own description of one comes first).
 *
 * A key accepted (also for a write a viewer key may not make) has its `lastUsedAt` set, at most
 * once a minute per key and in the background: the request neither waits for it nor fails with it.
 *
 * Counters live in this process (@fastify/rate-limit's in-memory store): with several instances the
 * limits are per instance. They count `request.ip`: behind a proxy, only with `TRUST_PROXY` set is
 * that the client's.
 */
export default fp(async function auth(app: FastifyInstance) {
  const { ADMIN_AUTH_FAILURES_PER_MINUTE, ADMIN_RATE_LIMIT_PER_MINUTE, ADMIN_BODY_LIMIT_BYTES } = app.config;

  app.addHook('onRoute', (route) => {
    route.bodyLimit ??= ADMIN_BODY_LIMIT_BYTES;
    const { schema } = route;
    if (schema?.response) {
      const writes = [route.method].flat().some((m) => !READ_METHODS.has(m)) && !route.config?.changesNothing;
      const tooLarge = schema.body ? { 413: refusal(`The body is larger than this route's limit of ${route.bodyLimit} bytes (ADMIN_BODY_LIMIT_BYTES)`) } : {};
      schema.response = { 401: UNAUTHORIZED, ...(writes ? { 403: FORBIDDEN } : {}), ...tooLarge, 429: TOO_MANY, 503: BUSY, ...schema.response };
    }
  });

  await app.register(rateLimit, { global: false });
  const failures = app.createRateLimit({ max: ADMIN_AUTH_FAILURES_PER_MINUTE, timeWindow: MINUTE_MS });
  const perKey = app.rateLimit({
    max: ADMIN_RATE_LIMIT_PER_MINUTE,
    timeWindow: MINUTE_MS,
    // A digest, so the limiter's memory never holds a key.
    keyGenerator: (request) => {
      const token = bearerToken(request);
      return token ? `key:${hashKey(token)}` : `ip:${request.ip}`;
    },
    errorResponseBuilder: (_request, context) =>
      new TooManyRequestsError(`more than ${context.max} admin requests a minute with this key; retry in ${context.after}`),
  });

  const keyUse = new KeyUseRecorder(app.db.adminPool, app.log);
  app.addHook('onClose', async () => keyUse.close());

  app.decorateRequest('apiKey', null);
  app.addHook('onRequest', async (request, reply) => {
    const locked = await failures(request, { increment: false });
    if (!locked.isAllowed && locked.remaining === 0) {
      reply.header('retry-after', locked.ttlInSeconds);
      throw new TooManyRequestsError(`too many failed authentications from ${request.ip}; retry in ${locked.ttlInSeconds} s`);
    }
    await perKey.call(app, request, reply);

    const token = bearerToken(request);
    const key = token ? await findKey(app.db.prisma, token) : null;
    if (!key) {
      await failures(request);
      reply.header('www-authenticate', bearerChallenge('exoroute admin', token !== null));
      throw token ? new UnauthorizedError('invalid or revoked API key') : new UnauthorizedError();
    }
    request.apiKey = key;
    keyUse.record(key.id);
    if (key.role !== 'admin' && !READ_METHODS.has(request.method) && !request.routeOptions.config.changesNothing) {
      throw new ForbiddenError(`a ${key.role} key may only read; ${request.method} needs an admin key`);
    }
  });
});
