import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * One log line per request of the context it is registered in, with the query string's `token`
 * redacted. The app turns Fastify's own request logging off: an Exotel callback logs its own line
 * (src/routes/exotel), in a context without this plugin.
 */
export default fp(async function requestLog(app: FastifyInstance) {
  // Synchronous: one hook per request, nothing awaited.
  app.addHook('onResponse', (request, reply, done) => {
    request.log.info(
      { method: request.method, url: request.url.replace(/([?&]token=)[^&]*/gi, '$1[redacted]'), status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
      'request',
    );
    done();
  });
});
