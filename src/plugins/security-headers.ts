import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet from 'helmet';

/** Sets the headers on a raw response, synchronously (also used by frameworkErrors, outside any context). */
export const setHeaders = helmet({
  // Swagger UI loads only its own scripts and styles (no inline script), so helmet's default
  // `script-src 'self'` holds. Without upgrade-insecure-requests, /docs also works over plain
  // http on a LAN address (the service is often reached that way before its TLS proxy).
  contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
});

/**
 * Security headers (helmet's defaults: CSP, HSTS, nosniff, frame-ancestors, referrer policy, no
 * `X-Powered-By`) on every answer of the context it is registered in: admin, Swagger UI, the OpenAPI
 * document, ops and 404s. Not in the Exotel callbacks' context: those are read by Exotel, not a browser.
 *
 * helmet itself in one synchronous hook, rather than @fastify/helmet, whose two hooks (one async)
 * each build `request.routeOptions` for every request.
 */
export default fp(async function securityHeaders(app: FastifyInstance) {
  app.addHook('onRequest', (request, reply, done) => {
    setHeaders(request.raw, reply.raw, (err?: unknown) => done(err as Error | undefined));
  });
});
