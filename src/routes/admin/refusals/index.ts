import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorSchema } from '../../../schemas/common.js';
import { RefusalListQuerySchema, RefusalPageSchema } from '../../../schemas/refusal.js';
import { listRefusals } from '../../../store/refusals.js';

/** Refused callbacks, counted per source address and minute (the first ones are CDRs as well). */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/refusals',
    {
      schema: {
        tags: ['cdrs'],
        security: [{ bearer: [] }],
        operationId: 'listRefusals',
        summary: 'Refused callbacks (secret missing or wrong, address not allowed), counted per source address and minute',
        description:
          'Every callback the guard refuses is counted here, newest minute first, then by address. The first ones of each minute ' +
          'and address are also stored as CDRs (`GET /admin/cdrs?outcome=rejected`); the rest are counted only. The counts of the ' +
          'last few seconds are added when the service next writes them (every 5 s, and at shutdown).',
        querystring: RefusalListQuerySchema,
        response: { 200: RefusalPageSchema, 400: ErrorSchema },
      },
    },
    async (request) => listRefusals(app.db.adminPool, request.query),
  );
};
export default routes;
