import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet from '@fastify/helmet';

/**
 * Security headers (helmet's defaults: CSP, HSTS, nosniff, frame-ancestors, referrer policy, no
 * `X-Powered-By`) on every route — admin, Swagger UI, the OpenAPI document, ops and 404s — except
 * the Exotel callbacks: their answers are read by Exotel, not a browser, and their path stays short.
 *
 * Register before any route: the callbacks are exempted as they are declared.
 */
export default fp(async function securityHeaders(app: FastifyInstance) {
  // Before helmet's own onRoute hook, which reads `helmet: false`.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/exotel/')) route.helmet = false;
  });
  await app.register(helmet, {
    contentSecurityPolicy: {
      // Swagger UI loads only its own scripts and styles (no inline script), so helmet's default
      // `script-src 'self'` holds. Without upgrade-insecure-requests, /docs also works over plain
      // http on a LAN address (the service is often reached that way before its TLS proxy).
      directives: { upgradeInsecureRequests: null },
    },
  });
});
