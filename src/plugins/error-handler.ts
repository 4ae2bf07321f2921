import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Prisma } from '../generated/prisma/client.js';
import { DomainError } from '../errors.js';
import { CALLBACK_PREFIX } from '../exotel/endpoints.js';

/** Which thing a Prisma unique violation was about, in API words. */
function uniqueTarget(err: Prisma.PrismaClientKnownRequestError): string {
  const meta = err.meta as
    | { target?: unknown; driverAdapterError?: { cause?: { constraint?: { fields?: string[]; index?: string } } } }
    | undefined;
  const constraint = meta?.driverAdapterError?.cause?.constraint;
  const fields = constraint?.fields ?? (Array.isArray(meta?.target) ? meta.target : []);
  if (fields.length > 0) return fields.map((f) => String(f).replaceAll('"', '')).join(', ');
  // The pg adapter names only the index; ours follow Prisma's `<table>_<column>_key`.
  if (constraint?.index?.endsWith('_slug_key')) return 'slug';
  return 'unique value';
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
      message = `an object with the same ${uniqueTarget(err)} already exists`;
    } else if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2025') {
      status = 404;
      message = 'the object does not exist';
    } else if (err.validation) {
      status = 400;
    }
    if (status >= 500) {
      request.log.error({ err }, 'request failed');
      message = 'internal error; the request was logged';
      status = status === 503 ? 503 : 500;
    } else {
      request.log.info({ status, message }, 'request rejected');
    }
    return reply.status(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );
});

/**
 * Fastify's `frameworkErrors`: a URL its router cannot decode (a malformed %-escape, an overlong
 * parameter). Fastify's own answer would echo the URL, `token` included. The router calls this
 * before any context is chosen (the option is instance-wide, Fastify offers no encapsulated one),
 * so here alone a callback is told by its URL prefix: it is refused with a CDR like any other.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  if (request.url.startsWith(`${CALLBACK_PREFIX}/`)) return request.server.refuseCallback(request, reply, 400, 'the URL has a malformed %-escape');
  return reply.code(400).send({ statusCode: 400, error: 'Bad Request', code: err.code, message: 'the URL has a malformed %-escape' });
}
