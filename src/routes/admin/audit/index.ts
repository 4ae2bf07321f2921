import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorSchema } from '../../../schemas/common.js';
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
          'One entry per admin write: the key that made it, when, the action (create, replace, update, delete, …), the entity and its slug or id, and the object before and after. Filter by `entity` and `entityId`; page with `cursor`. A query parameter out of range or unknown is 400 naming it.',
        querystring: AuditQuerySchema,
        response: { 200: AuditPageSchema, 400: ErrorSchema },
      },
    },
    async (request) => listAudit(app.db.prisma, request.query),
  );
};
export default routes;
