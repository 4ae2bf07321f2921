import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** A key newKey() makes (src/store/api-keys.ts), wherever it is in a URL. */
const GENERATED_KEY = /exr_[A-Za-z0-9_-]{43}/g;

/**
 * One log line per request of the context it is registered in, with the query string's `token`
 * redacted, and any key or secret found elsewhere in the URL: a generated API key, ADMIN_API_KEY,
 * METRICS_TOKEN or the callback secret, as sent or %-encoded, under any parameter name
 * (`access_token`, RFC 6750's) or in the path (a key revoked by itself instead of its id). The app
 * turns Fastify's own request logging off: an Exotel callback logs its own line
 * (src/routes/exotel), in a context without this plugin.
 */
export default fp(async function requestLog(app: FastifyInstance) {
  const { ADMIN_API_KEY, METRICS_TOKEN, EXOTEL_CALLBACK_SECRET } = app.config;
  const secrets = [ADMIN_API_KEY, METRICS_TOKEN, EXOTEL_CALLBACK_SECRET].flatMap((s) => (s ? [encodeURIComponent(s), s] : []));
  const redacted = (url: string) => {
    let shown = url.replace(/([?&]token=)[^&]*/gi, '$1[redacted]').replace(GENERATED_KEY, '[redacted]');
    for (const secret of secrets) if (shown.includes(secret)) shown = shown.replaceAll(secret, '[redacted]');
    return shown;
  };
  // Synchronous: one hook per request, nothing awaited.
  app.addHook('onResponse', (request, reply, done) => {
    request.log.info({ method: request.method, url: redacted(request.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
    done();
  });
});
