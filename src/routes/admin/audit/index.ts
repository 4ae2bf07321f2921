import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorSchema } from '../../../schemas/common.js';
import { AuditPageSchema, AuditQuerySchema } from '../../../schemas/audit.js';
import { listAudit } from '../../../store/audit.js';
import { notANumber, queryNumberToE164 } from '../../../exotel/phone.js';
import { InvalidFieldError } from '../../../errors.js';

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const country = app.config.DEFAULT_COUNTRY;
  /** An agent's entries are kept under its E.164 number: the number is taken in any form, as /admin/agents takes it. */
  const entityIdOf = (entity: string | undefined, entityId: string | undefined) => {
    if (entity !== 'agent' || !entityId) return entityId;
    const number = queryNumberToE164(entityId, country);
    if (!number) throw new InvalidFieldError('querystring/entityId', `${notANumber(entityId, country)}: an agent is found by its number`);
    return number;
  };
  app.get(
    '/audit',
    {
      schema: {
        tags: ['audit'],
        security: [{ bearer: [] }],
        operationId: 'listAudit',
        summary: 'Admin writes, newest first: key, time, action, entity, before, after',
        description:
          'One entry per admin write: the key that made it, when, the action (create, replace, update, delete, …), the entity and its slug or id, and the object before and after. Filter by `entity` and `entityId`, by the key that made them (`apiKeyId`) and by time (`from`, `to`); page with `cursor`. A query parameter out of range or unknown is 400 naming it.',
        querystring: AuditQuerySchema,
        response: { 200: AuditPageSchema, 400: ErrorSchema },
      },
    },
    async (request) => listAudit(app.db.prisma, { ...request.query, entityId: entityIdOf(request.query.entity, request.query.entityId) }),
  );
};
export default routes;
