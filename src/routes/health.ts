import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { noteRefusal } from '../plugins/request-log.js';

const ReadySchema = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('degraded')]),
  reasons: Type.Array(Type.String()),
});

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['ops'],
        operationId: 'healthz',
        summary: 'The process is up',
        description: 'Liveness: 200 while the process runs, whatever the database does. Restart the instance when it fails. Never rate-limited, needs no key.',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['ops'],
        operationId: 'readyz',
        summary: 'The database is reachable and migrated, routing rules are loaded, and the CDR spool is empty',
        description:
          'Readiness: 200 `{"status":"ready","reasons":[]}`, else 503 `{"status":"degraded","reasons":[…]}` naming each problem (database unreachable, by the kind and code of its error, or `see the log` for a kind it does not name, never its host, address, user or database, which the probe\'s log line has; migrations pending; a newer version\'s migration that changed how the dial functions are called, which fails this instance\'s Dial Whom and Connect answers until it is restarted on that version; rules not loaded; CDRs waiting in the local spool). While Postgres is down every instance is 503 and still answers callbacks: a balancer that takes out every instance on 503 then answers no callback (README, Running several instances).',
        response: { 200: ReadySchema, 503: ReadySchema },
      },
    },
    async (request, reply) => {
      const { problems, detail } = await app.readiness();
      const reasons = problems.map((p) => p.reason);
      const status = reasons.length === 0 ? ('ready' as const) : ('degraded' as const);
      // On the probe's log line too: an operator reading `GET /readyz 503` sees why without asking again.
      if (reasons.length > 0) noteRefusal(request, reasons.join('; ') + detail);
      return reply.status(reasons.length === 0 ? 200 : 503).send({ status, reasons });
    },
  );
};
export default routes;
