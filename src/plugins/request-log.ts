import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';

/** A key newKey() makes (src/store/api-keys.ts), wherever it is in a URL. */
const GENERATED_KEY = /exr_[A-Za-z0-9_-]{43}/g;

/**
 * A URL as it may be shown (logged, or named in a 404): the query string's `token` redacted, and any
 * generated API key, ADMIN_API_KEY, METRICS_TOKEN or callback secret (current or previous) anywhere in it, as sent or %-encoded.
 */
export function urlRedactor(
  config: Pick<Config, 'ADMIN_API_KEY' | 'METRICS_TOKEN' | 'EXOTEL_CALLBACK_SECRET' | 'EXOTEL_CALLBACK_SECRET_PREVIOUS'>,
): (url: string) => string {
  const { ADMIN_API_KEY, METRICS_TOKEN, EXOTEL_CALLBACK_SECRET, EXOTEL_CALLBACK_SECRET_PREVIOUS } = config;
  const secrets = [ADMIN_API_KEY, METRICS_TOKEN, EXOTEL_CALLBACK_SECRET, EXOTEL_CALLBACK_SECRET_PREVIOUS].flatMap((s) => (s ? [encodeURIComponent(s), s] : []));
  return (url) => {
    let shown = url.replace(/([?&]token=)[^&]*/gi, '$1[redacted]').replace(GENERATED_KEY, '[redacted]');
    for (const secret of secrets) if (shown.includes(secret)) shown = shown.replaceAll(secret, '[redacted]');
    return shown;
  };
}

/** Why a request was refused (4xx), as its answer says, or why /readyz is 503: put on its one log line. */
const refusals = new WeakMap<FastifyRequest, string>();

/** Notes why a request was refused, for its log line (src/plugins/error-handler.ts). */
export function noteRefusal(request: FastifyRequest, message: string): void {
  refusals.set(request, message);
}

/** A request's one log line (also written by frameworkErrors, outside any context). */
export function logRequest(request: FastifyRequest, reply: FastifyReply, redacted: (url: string) => string): void {
  const message = refusals.get(request);
  request.log.info(
    {
      method: request.method,
      url: redacted(request.url),
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
      ...(message === undefined ? {} : { message }),
    },
    'request',
  );
}

/**
 * One log line per request of the context it is registered in, with the query string's `token`
 * redacted, and any key or secret found elsewhere in the URL: a generated API key, ADMIN_API_KEY,
 * METRICS_TOKEN or the callback secret (current or previous), as sent or %-encoded, under any
 * parameter name (`access_token`, RFC 6750's) or in the path (a key revoked by itself instead of its
 * id). The app turns Fastify's own request logging off: an Exotel callback logs its own line
 * (src/routes/exotel), in a context without this plugin.
 */
export default fp(async function requestLog(app: FastifyInstance) {
  const redacted = urlRedactor(app.config);
  // Synchronous: one hook per request, nothing awaited.
  app.addHook('onResponse', (request, reply, done) => {
    logRequest(request, reply, redacted);
    done();
  });
});
