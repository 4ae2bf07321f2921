import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema } from '../../../schemas/common.js';
import { ApiKeyIdParamsSchema, ApiKeyInputSchema, ApiKeySchema, CreatedApiKeySchema } from '../../../schemas/api-key.js';
import { createKey, listKeys, revokeKey } from '../../../store/api-keys.js';
import { actorOf } from '../../../plugins/auth.js';

const tags = ['api-keys'];
const security = [{ bearer: [] }];

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/api-keys', {
    schema: { tags, security, operationId: 'listApiKeys', summary: 'List API keys (never the keys themselves)',
      response: { 200: Type.Array(ApiKeySchema) } },
  }, async () => listKeys(app.db.prisma));

  app.post('/api-keys', {
    schema: { tags, security, operationId: 'createApiKey', summary: 'Create an API key; the key is shown only in this answer',
      body: ApiKeyInputSchema, response: { 201: CreatedApiKeySchema, 400: ErrorSchema } },
  }, async (request, reply) => reply.status(201).send(await createKey(app.db.prisma, actorOf(request), request.body)));

  app.delete('/api-keys/:id', {
    schema: { tags, security, operationId: 'revokeApiKey', summary: 'Revoke an API key',
      params: ApiKeyIdParamsSchema, response: { 200: ApiKeySchema, 404: ErrorSchema, 409: ErrorSchema } },
  }, async (request) => revokeKey(app.db.prisma, actorOf(request), request.params.id));
};
export default routes;
