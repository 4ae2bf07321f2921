import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AuditPageSchema, AuditQuerySchema } from '../../../schemas/audit.js';
import { listAudit } from '../../../store/audit.js';

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/audit',
    {
      schema: {
        tags: ['audit'],
        security: [{ bearer: [] }],
        operationId: 'listAudit',
        summary: 'Admin writes, newest first: key, time, action, entity, before, after',
        description:
          'One entry per admin write: the key that made it, when, the action (create, replace, update, delete, …), the entity and its slug or id, and the object before and after. Filter by `entity`; page with `cursor`.',
        querystring: AuditQuerySchema,
        response: { 200: AuditPageSchema },
      },
    },
    async (request) => listAudit(app.db.prisma, request.query),
  );
};
export default routes;
