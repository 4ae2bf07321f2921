import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, withExamples } from '../../../schemas/common.js';
import { API_KEY_EXAMPLE, ApiKeyIdParamsSchema, ApiKeyInputSchema, ApiKeySchema, CreatedApiKeySchema } from '../../../schemas/api-key.js';
import { createKey, listKeys, revokeKey } from '../../../store/api-keys.js';
import { actorOf } from '../../../plugins/auth.js';

const tags = ['api-keys'];
const security = [{ bearer: [] }];

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api-keys',
    {
      schema: {
        tags,
        security,
        operationId: 'listApiKeys',
        summary: 'List API keys (never the keys themselves)',
        description:
          "Every key ever created, revoked ones included (with `revokedAt`): id, name, role, the key's first characters (prefix: 10 of a generated `exr_…` key, 4 of an operator-chosen `ADMIN_API_KEY`) to recognise it, and `lastUsedAt` (at most about a minute behind) to tell unused keys before revoking them. Only a SHA-256 hash of each key is stored, so a key cannot be shown again.",
        response: { 200: Type.Array(ApiKeySchema) },
      },
    },
    async () => listKeys(app.db.prisma),
  );

  app.post(
    '/api-keys',
    {
      schema: {
        tags,
        security,
        operationId: 'createApiKey',
        summary: 'Create an API key; the key is shown only in this answer',
        description:
          "Role `admin` reads and writes, `viewer` only reads (a write is 403). The answer's `key` is the only time the key is shown: keep it. Audited with the key that created it.",
        body: withExamples(ApiKeyInputSchema, API_KEY_EXAMPLE),
        response: { 201: CreatedApiKeySchema, 400: ErrorSchema },
      },
    },
    async (request, reply) => reply.status(201).send(await createKey(app.db.prisma, actorOf(request), request.body)),
  );

  app.delete(
    '/api-keys/:id',
    {
      schema: {
        tags,
        security,
        operationId: 'revokeApiKey',
        summary: 'Revoke an API key',
        description:
          'The key stops working at once (401). The bootstrap key (ADMIN_API_KEY or the generated one) cannot be revoked here: change the variable or the key file and restart. Audited. 400: the id is no UUID; 404: no key has this id; 409: the bootstrap key, or a key already revoked (the message says when).',
        params: ApiKeyIdParamsSchema,
        response: { 200: ApiKeySchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (request) => revokeKey(app.db.prisma, actorOf(request), request.params.id),
  );
};
export default routes;
