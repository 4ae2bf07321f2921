import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AuditPageSchema, AuditQuerySchema } from '../../../schemas/audit.js';
import { listAudit } from '../../../store/audit.js';

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/audit', {
    schema: { tags: ['audit'], security: [{ bearer: [] }], operationId: 'listAudit',
      summary: 'Admin writes, newest first: key, time, action, entity, before, after',
      querystring: AuditQuerySchema, response: { 200: AuditPageSchema } },
  }, async (request) => listAudit(app.db.prisma, request.query));
};
export default routes;
