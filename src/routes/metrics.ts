import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { UnauthorizedError } from '../errors.js';
import { ErrorSchema } from '../schemas/common.js';
import { bearerChallenge, bearerToken } from '../plugins/auth.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** A sample whose value prom-client 15 wrote as `Nan`; the exposition format spells it `NaN`, and strict parsers take only that. */
const NAN_SAMPLE = /^([^#\n].*) Nan$/gm;

/** `GET /metrics` in Prometheus text format; with METRICS_TOKEN set, only for `Authorization: Bearer <token>`. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const token = app.config.METRICS_TOKEN ? digest(app.config.METRICS_TOKEN) : null;
  const { registry } = app.metrics;

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['ops'],
        operationId: 'metrics',
        summary: 'Prometheus metrics: callback latency by endpoint and outcome, CDR batches and spool, rules snapshot age, DB pool',
        description: 'Text exposition format 0.0.4. When METRICS_TOKEN is set, send `Authorization: Bearer <METRICS_TOKEN>`.',
        // Optional: only when METRICS_TOKEN is set.
        security: [{ bearer: [] }, {}],
        response: {
          200: {
            description: 'Prometheus text exposition format',
            content: { 'text/plain': { schema: Type.String() } },
          },
          401: ErrorSchema,
        },
      },
      onRequest: async (request, reply) => {
        if (!token) return;
        const given = bearerToken(request);
        if (given === null || !timingSafeEqual(digest(given), token)) {
          reply.header('www-authenticate', bearerChallenge('exoroute metrics', given !== null));
          throw new UnauthorizedError('missing or wrong metrics token: send Authorization: Bearer <METRICS_TOKEN>');
        }
      },
    },
    async (_request, reply) => {
      const text = (await registry.metrics()).replace(NAN_SAMPLE, '$1 NaN');
      return reply.type(registry.contentType).send(text);
    },
  );
};
export default routes;
