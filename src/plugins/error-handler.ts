import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Prisma } from '../generated/prisma/client.js';
import { DomainError } from '../errors.js';
import { ADMIN_POOL_MAX, isDatabaseUnavailable, isPoolWaitTimeout, isQueryReadTimeout, isStatementTimeout, POOL_WAIT_MS } from '../store/database.js';
import { CALLBACK_PREFIX, LOWERCASE_URLS } from '../exotel/endpoints.js';
import { errorAnswer, type CallbackAnswer } from '../exotel/responses.js';
import { logRequest, noteRefusal, urlRedactor } from './request-log.js';
import { setHeaders } from './security-headers.js';

/** Which thing a Prisma unique violation was about, in API words. */
function uniqueTarget(err: Prisma.PrismaClientKnownRequestError): string {
  const meta = err.meta as { target?: unknown; driverAdapterError?: { cause?: { constraint?: { fields?: string[]; index?: string } } } } | undefined;
  const constraint = meta?.driverAdapterError?.cause?.constraint;
  const fields = constraint?.fields ?? (Array.isArray(meta?.target) ? meta.target : []);
  if (fields.length > 0) return fields.map((f) => String(f).replaceAll('"', '')).join(', ');
  // The pg adapter names only the index; ours follow Prisma's `<table>_<column>_key`.
  if (constraint?.index?.endsWith('_slug_key')) return 'slug';
  return 'unique value';
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What to do instead, added to the 413 a body over the route's `bodyLimit` gets (by the request: its query and Content-Type as sent). */
    bodyTooLargeHint?: string | ((request: FastifyRequest) => string);
  }
}

const MiB = 1024 * 1024;

/** A 413's message: the route's limit, in MiB or KiB when it is a whole number of them, and in bytes. */
function bodyTooLargeMessage(request: FastifyRequest): string {
  const limit = request.routeOptions.bodyLimit;
  const unit = limit % MiB === 0 ? `${limit / MiB} MiB (${limit} bytes)` : limit % 1024 === 0 ? `${limit / 1024} KiB (${limit} bytes)` : `${limit} bytes`;
  const given = request.routeOptions.config.bodyTooLargeHint;
  const hint = typeof given === 'function' ? given(request) : given;
  return `the request body is larger than this route's limit of ${unit}${hint ? `: ${hint}` : ''}`;
}

/** The kinds of object a unique violation can be about, in API words, with where they live. */
const KINDS: Record<string, { kind: string; path: string }> = {
  VipList: { kind: 'VIP list', path: '/admin/vip-lists' },
  Schedule: { kind: 'schedule', path: '/admin/schedules' },
  DialGroup: { kind: 'dial group', path: '/admin/dial-groups' },
  Flow: { kind: 'flow', path: '/admin/flows' },
  ApiKey: { kind: 'API key', path: '/admin/api-keys' },
};

/** A 409 for a unique violation: which kind of object, which value, and what to do instead. */
function duplicateMessage(err: Prisma.PrismaClientKnownRequestError, body: unknown): string {
  const target = uniqueTarget(err);
  const known = KINDS[String((err.meta as { modelName?: unknown } | undefined)?.modelName)];
  const slug = (body as { slug?: unknown } | undefined)?.slug;
  if (known && target === 'slug' && typeof slug === 'string') {
    return `body/slug: a ${known.kind} '${slug}' already exists: choose another slug, or change that ${known.kind} at ${known.path}/${slug}`;
  }
  return `${known ? `a ${known.kind}` : 'an object'} with the same ${target} already exists`;
}

/**
 * Whether a URL is the admin API's. Its routes' answers carry `Cache-Control: no-store`
 * (src/routes/admin/index.ts); so do those no admin route gives (404, 405, a URL the router cannot decode).
 */
const isAdminUrl = (url: string) => /^\/admin(?:[/?]|$)/.test(url);

/** Retry-After of a 503 while the database is unavailable. */
const UNAVAILABLE_RETRY_SECONDS = 5;

/** Maps domain, validation and Prisma errors to `{statusCode, error, message}`; 5xx never leak internals. */
export default fp(async function errorHandler(app: FastifyInstance) {
  // A path is named as the request log shows it, and so is a field: a key or secret pasted into a
  // path, or sent as a parameter's name (`/admin/cdrs?<key>`), is not echoed in an answer or logged.
  const shown = urlRedactor(app.config);
  app.setErrorHandler((err: FastifyError, request, reply) => {
    let status = err.statusCode ?? 500;
    let message = err.message;
    /** A 503 whose message says what to do (the admin pool busy, the database unavailable). */
    let retry = false;
    if (err instanceof DomainError) {
      status = err.statusCode;
    } else if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002') {
      status = 409;
      message = duplicateMessage(err, request.body);
    } else if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2025') {
      status = 404;
      message = 'the object does not exist';
    } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      message = bodyTooLargeMessage(request);
    } else if (err.validation) {
      status = 400;
    } else if (isPoolWaitTimeout(err)) {
      // Slow admin requests (CSV downloads, long CDR lists, VIP imports of one list) hold the admin
      // API's connections: the client's to retry, not a failure of exoroute (its callbacks have their own).
      status = 503;
      message = `the admin API's ${ADMIN_POOL_MAX} database connections were all in use for ${POOL_WAIT_MS / 1000} s (slow requests or CSV downloads): retry in a few seconds`;
      reply.header('retry-after', String(POOL_WAIT_MS / 1000));
      retry = true;
    } else if (isStatementTimeout(err)) {
      // Postgres cancelled a statement at the admin pool's statement_timeout: most often one waiting on
      // a lock another session holds. The connection is fine; the client's to retry, the operator's to
      // look if it goes on. Nothing of the statement is shown.
      status = 503;
      message = `the database did not finish this request within its statement timeout (ADMIN_STATEMENT_TIMEOUT_MS, ${app.config.ADMIN_STATEMENT_TIMEOUT_MS} ms; a VIP list's writes ADMIN_BULK_STATEMENT_TIMEOUT_MS, ${app.config.ADMIN_BULK_STATEMENT_TIMEOUT_MS} ms), most often waiting on a lock another session holds: retry in a few seconds, and if it goes on, look in Postgres for a long-running transaction (pg_stat_activity)`;
      reply.header('retry-after', String(UNAVAILABLE_RETRY_SECONDS));
      request.log.error({ code: '57014' }, 'admin statement timed out');
      retry = true;
    } else if (isQueryReadTimeout(err)) {
      // No answer, not even the cancel of its statement_timeout, long after it: the connection died
      // without a word, and was closed (src/store/database.ts); the next request takes another.
      status = 503;
      message =
        "the database did not answer, long after this request's statement timeout: its connection was taken for dead (a failover, or a NAT or firewall that dropped it) and closed; retry in a few seconds, and if it goes on, check the network between exoroute and Postgres";
      reply.header('retry-after', String(UNAVAILABLE_RETRY_SECONDS));
      request.log.error('admin statement unanswered: connection closed as dead');
      retry = true;
    } else if (status >= 500 && isDatabaseUnavailable(err)) {
      // Postgres down, restarting or unreachable: the client's to retry (callbacks go on from the rules
      // in memory). Logged with its code alone: Prisma's message is a page of source and the host.
      status = 503;
      message = 'the database is unavailable (Postgres refused or dropped the connection): retry in a few seconds';
      reply.header('retry-after', String(UNAVAILABLE_RETRY_SECONDS));
      request.log.error({ code: (err as { code?: unknown }).code }, 'database unavailable');
      retry = true;
    }
    if (status >= 500 && !retry) {
      request.log.error({ err }, 'request failed');
      message = 'internal error; the request was logged';
      status = status === 503 ? 503 : 500;
    } else {
      message = shown(message);
      // On the request's one log line (request-log.ts), not a line of its own.
      noteRefusal(request, message);
    }
    return reply.status(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message });
  });
  const allowed = adminMethods(app);
  app.setNotFoundHandler((request, reply) => {
    if (isAdminUrl(request.url)) reply.header('cache-control', 'no-store');
    const path = shown(request.url).split('?')[0];
    // `/Exotel/…`, as the brand is written: a callback (its CDR) that only the case keeps from the callback routes.
    if (!request.url.startsWith(`${CALLBACK_PREFIX}/`) && request.url.toLowerCase().startsWith(`${CALLBACK_PREFIX}/`)) {
      return request.server.refuseCallback(request, reply, 404, `no such callback endpoint: ${LOWERCASE_URLS}`);
    }
    const allow = allowed(request.url.split('?', 1)[0]!);
    if (allow.length === 0) return reply.status(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${path}` });
    // A known admin path asked with a method it does not take: 405 with the methods it does (RFC 9110 §15.5.6).
    const message = `${request.method} is not allowed on ${path}: it takes ${allow.join(', ')}`;
    noteRefusal(request, message);
    return reply.status(405).header('allow', allow.join(', ')).send({ statusCode: 405, error: 'Method Not Allowed', message });
  });
});

/**
 * The methods each admin path takes, from the routes as they are registered: a route's path with
 * its parameters (`:slug`) as one segment each, as the router matches them. Returns, for a path
 * asked, the methods of every route whose pattern it fits (none: no admin path, a 404).
 */
function adminMethods(app: FastifyInstance): (path: string) => string[] {
  const routes: Array<{ pattern: RegExp; methods: string[] }> = [];
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith('/admin/')) return;
    const source = route.url
      .split('/')
      .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    routes.push({ pattern: new RegExp(`^${source}$`), methods: [route.method].flat() });
  });
  return (path) => {
    const methods = new Set(routes.filter((r) => r.pattern.test(path)).flatMap((r) => r.methods));
    return [...methods].sort();
  };
}

/**
 * Fastify's `frameworkErrors`: a URL its router cannot decode (a malformed %-escape, an overlong
 * parameter). Fastify's own answer would echo the URL, `token` included. The router calls this
 * before any context is chosen (the option is instance-wide, Fastify offers no encapsulated one),
 * so here alone a callback is told by its URL prefix: it is refused with a CDR like any other.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const message =
    err.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? `params: a path segment of the URL is longer than ${request.server.initialConfig.routerOptions?.maxParamLength ?? 100} characters`
      : 'the URL has a malformed %-escape';
  if (request.url.startsWith(`${CALLBACK_PREFIX}/`)) return request.server.refuseCallback(request, reply, 400, message);
  // No context's hooks run here: the headers and the log line every other admin, docs or ops answer gets.
  setHeaders(request.raw, reply.raw, () => {});
  if (isAdminUrl(request.url)) reply.header('cache-control', 'no-store');
  noteRefusal(request, message);
  reply.code(400).send({ statusCode: 400, error: 'Bad Request', code: err.code, message });
  logRequest(request, reply, urlRedactor(request.server.config));
  return reply;
}

/** A request line as Node's HTTP parser reads it: method, target, version. */
const REQUEST_LINE = /(?:^|\n)[!#$%&'*+.^_`|~0-9A-Za-z-]+ (\S+) HTTP\/\d\.\d\r?\n/g;
const AUTHORIZATION = /\r?\nauthorization:[ \t]*([^\r\n]*)\r?\n/i;
/** Sockets already answered, with what: more bytes on one can make the parser report again. */
const answered = new WeakMap<Socket, { status: number; message: string }>();

/**
 * What clientErrors answered on this socket, if it did: a request whose body was being read (too
 * slow, a broken chunk) fails in its handler once the socket is closed, and its CDR is to say that.
 */
export const parserRefusal = (socket: Socket) => answered.get(socket);

/** What Node's HTTP parser refused, as a status and a message saying what to fix. */
function clientErrorAnswer(err: Error & { code?: string }, app: FastifyInstance, readingBody: boolean): { status: number; message: string } {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    // headersTimeout for the request line and headers, requestTimeout for all of it (src/app.ts)
    const ms = readingBody ? app.server.requestTimeout : Math.min(app.server.headersTimeout, app.server.requestTimeout || Infinity);
    return { status: 408, message: `the request did not arrive whole within ${ms / 1000} s` };
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return { status: 431, message: `the request line and headers are larger than ${maxHeaderSize} bytes: send long parameters in a POST body` };
  }
  return { status: 400, message: `the request is not valid HTTP/1.1 (${err.message})` };
}

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser refused before any route (headers over
 * its limit, bytes that are not HTTP, too slow to arrive). Fastify's own answer says only "Client
 * Error" and logs at trace. Here every one is counted and logged; one to a callback URL whose
 * request line was read leaves a CDR like any refused callback (its path gives the flow, its query
 * string the CallSid) before the answer is written.
 */
export function clientErrors(this: FastifyInstance, err: Error & { code?: string; rawPacket?: unknown; bytesParsed?: number }, socket: Socket) {
  // A connection reset: the client is gone, and nothing of a request was read.
  if (err.code === 'ECONNRESET' || socket.destroyed || answered.has(socket)) return;
  // A request whose body was being read when the parser refused it (a broken chunk, or too slow) is
  // already a request: its handler sees the body fail and leaves its CDR.
  const incoming = (socket as Socket & { parser?: { incoming?: { complete: boolean } | null } }).parser?.incoming;
  const readingBody = !!incoming && !incoming.complete;
  const { status, message } = clientErrorAnswer(err, this, readingBody);
  answered.set(socket, { status, message });
  this.metrics.observeClientError(status);
  const send = (answer: CallbackAnswer & { retryAfter?: number }) => {
    if (socket.writable) {
      const retryAfter = answer.retryAfter === undefined ? '' : `Retry-After: ${answer.retryAfter}\r\n`;
      socket.write(
        `HTTP/1.1 ${answer.statusCode} ${STATUS_CODES[answer.statusCode] ?? 'Error'}\r\nContent-Type: ${answer.contentType}\r\n` +
          `Content-Length: ${Buffer.byteLength(answer.body)}\r\n${retryAfter}Connection: close\r\n\r\n${answer.body}`,
      );
    }
    socket.destroy();
  };
  // Node's `rawPacket`: the bytes being parsed when it refused (Fastify's type for it is wrong), and
  // `bytesParsed`, where it stopped: the refused request is the last one to start there or before
  // (earlier ones on the connection, pipelined, were answered as usual).
  const head = Buffer.isBuffer(err.rawPacket) ? err.rawPacket.toString('latin1') : '';
  const last = [...head.matchAll(REQUEST_LINE)].filter((m) => m.index <= (err.bytesParsed ?? head.length)).pop();
  const url = last?.[1];
  if (url?.startsWith(`${CALLBACK_PREFIX}/`) && !readingBody) {
    const request = { ip: socket.remoteAddress ?? '', url, authorization: AUTHORIZATION.exec(head.slice(last!.index))?.[1]?.trim() };
    // A client that half-closes once it has sent its request would have Node end the socket before
    // the CDR is committed and the answer written; the parser is done with it, the answer ends it.
    socket.removeAllListeners('end');
    this.refuseUnparsedCallback(this.log, request, status, message).then(send, (e: unknown) => {
      this.log.error({ err: e }, 'refused callback not recorded');
      send(errorAnswer(status, message));
    });
    return;
  }
  // Neither the URL (it may hold a key) nor the bytes are logged.
  this.log.info({ status, code: err.code, remoteAddress: socket.remoteAddress }, `request refused by the HTTP parser: ${message}`);
  send(errorAnswer(status, message));
}
