import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ForbiddenError, UnauthorizedError } from '../errors.js';
import { findKey, type AuthenticatedKey } from '../store/api-keys.js';
import type { Actor } from '../store/audit.js';

declare module 'fastify' {
  interface FastifyRequest {
    apiKey: AuthenticatedKey | null;
  }
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The author of an admin change, for the audit trail. */
export const actorOf = (request: FastifyRequest): Actor => ({ apiKeyId: request.apiKey?.id ?? null });

/**
 * Bearer-key authentication for the routes this plugin is registered around (the /admin scope):
 * 401 without a live key, 403 when a viewer key tries to write.
 */
export default fp(async function auth(app: FastifyInstance) {
  app.decorateRequest('apiKey', null);
  app.addHook('onRequest', async (request) => {
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new UnauthorizedError();
    const key = await findKey(app.db.prisma, match[1]!);
    if (!key) throw new UnauthorizedError('invalid or revoked API key');
    request.apiKey = key;
    if (key.role !== 'admin' && !READ_METHODS.has(request.method)) {
      throw new ForbiddenError(`a ${key.role} key may only read; ${request.method} needs an admin key`);
    }
  });
});
