import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { pendingMigrations } from '../store/migrate.js';

const ReadySchema = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('degraded')]),
  reasons: Type.Array(Type.String()),
});

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['ops'], operationId: 'healthz', summary: 'The process is up',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['ops'], operationId: 'readyz', summary: 'The database is reachable and migrated, and routing rules are loaded',
        response: { 200: ReadySchema, 503: ReadySchema },
      },
    },
    async (_request, reply) => {
      const reasons: string[] = [];
      try {
        const pending = await pendingMigrations(app.db.pool);
        if (pending.length > 0) reasons.push(`migrations not applied: ${pending.join(', ')}`);
      } catch (err) {
        reasons.push(`database unreachable: ${(err as Error).message.split('\n')[0]}`);
      }
      if (!app.rules.current) reasons.push(app.rules.lastError ?? 'routing rules not loaded yet');
      const status = reasons.length === 0 ? ('ready' as const) : ('degraded' as const);
      return reply.status(reasons.length === 0 ? 200 : 503).send({ status, reasons });
    },
  );
};
export default routes;
