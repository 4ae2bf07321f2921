import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Prisma } from '../generated/prisma/client.js';
import { DomainError } from '../errors.js';
import { CALLBACK_PREFIX } from '../exotel/endpoints.js';
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
    /** What to do instead, added to the 413 a body over the route's `bodyLimit` gets. */
    bodyTooLargeHint?: string;
  }
}

const MiB = 1024 * 1024;

/** A 413's message: the route's limit, in MiB or KiB when it is a whole number of them, and in bytes. */
function bodyTooLargeMessage(request: FastifyRequest): string {
  const limit = request.routeOptions.bodyLimit;
  const unit = limit % MiB === 0 ? `${limit / MiB} MiB (${limit} bytes)` : limit % 1024 === 0 ? `${limit / 1024} KiB (${limit} bytes)` : `${limit} bytes`;
  const hint = request.routeOptions.config.bodyTooLargeHint;
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

/** Maps domain, validation and Prisma errors to `{statusCode, error, message}`; 5xx never leak internals. */
export default fp(async function errorHandler(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    let status = err.statusCode ?? 500;
    let message = err.message;
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
    }
    if (status >= 500) {
      request.log.error({ err }, 'request failed');
      message = 'internal error; the request was logged';
      status = status === 503 ? 503 : 500;
    } else {
      // On the request's one log line (request-log.ts), not a line of its own.
      noteRefusal(request, message);
    }
    return reply.status(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message });
  });
  // The path is named as the request log shows it: a key or secret pasted into a path is not echoed.
  const shown = urlRedactor(app.config);
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${shown(request.url).split('?')[0]}` }),
  );
});

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
  noteRefusal(request, message);
  reply.code(400).send({ statusCode: 400, error: 'Bad Request', code: err.code, message });
  logRequest(request, reply, urlRedactor(request.server.config));
  return reply;
}
