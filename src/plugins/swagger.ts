import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { componentSchemas, refComponents } from '../openapi-components.js';

/**
 * The OpenAPI document, generated from the route schemas. On the root, before any route: it sees
 * the routes of every context, callbacks and admin alike.
 */
export default fp(
  async function openapi(app: FastifyInstance) {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'exoroute',
          version: '0.1.0',
          description:
            'Answers Exotel call-flow webhooks (Passthru, Switch-case, Connect Dial Whom, Connect parameters) ' +
            'from routing rules kept in Postgres, and logs every callback as a CDR. Admin routes need ' +
            '`Authorization: Bearer <key>`. A method an admin path does not take is 405 with an `Allow` header naming those it does.',
        },
        tags: [
          { name: 'vip-lists', description: 'VIP lists and their entries' },
          { name: 'schedules', description: 'Business hours' },
          { name: 'dial-groups', description: 'Agents to ring, strategy and Connect call settings' },
          { name: 'flows', description: 'Routing rules per Exotel applet, and simulation' },
          { name: 'cdrs', description: 'Call-detail records: every callback received, what was answered and why' },
          { name: 'exotel', description: 'Callback endpoints called by Exotel applets' },
          { name: 'api-keys', description: 'Admin credentials' },
          { name: 'audit', description: 'Who changed what' },
          { name: 'ops', description: 'Health, readiness and Prometheus metrics' },
        ],
        components: {
          schemas: componentSchemas(),
          securitySchemes: {
            bearer: {
              type: 'http',
              scheme: 'bearer',
              description: 'An admin or viewer API key (POST /admin/api-keys; the bootstrap key is printed at first start)',
            },
            exotelBasic: {
              type: 'http',
              scheme: 'basic',
              description: 'Callbacks: EXOTEL_CALLBACK_SECRET as the password (any user), as in `https://exotel:SECRET@your-host/exotel/passthru/<flow>`',
            },
            exotelToken: {
              type: 'apiKey',
              in: 'query',
              name: 'token',
              description: 'Callbacks: EXOTEL_CALLBACK_SECRET as the `token` parameter, for applet URL fields that cannot carry credentials',
            },
          },
        },
      },
      // One named schema per model, each use of it a $ref (src/openapi-components.ts).
      transformObject: refComponents,
    });
  },
  { name: 'openapi' },
);

/**
 * The document served: `/openapi.json`, and Swagger UI at `/docs`, where the service's own address
 * (`http://127.0.0.1:3000`, as `npm start` and the README give it) also leads a browser: no API is at `/`.
 */
export async function docs(app: FastifyInstance) {
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get(
    '/',
    {
      schema: {
        tags: ['ops'],
        operationId: 'root',
        summary: 'Leads a browser to Swagger UI (`/docs`)',
        description: "The service's own address, opened in a browser, is Swagger UI: `302` to `/docs`. No API is at `/`.",
        response: { 302: { description: 'Found: `Location: /docs`', type: 'null' } },
      },
    },
    (_request, reply) => reply.redirect('/docs'),
  );
}
