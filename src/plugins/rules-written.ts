import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { withDeadline } from '../lib/deadline.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The RULES_CHANNEL payloads the request's writes announced (through actorOf), or null: none. */
    rulesAnnounced: string[] | null;
  }
}

/**
 * The longest an admin write's answer waits for its instance's reload: a Postgres that stalls
 * must not hold the answer to a write that has committed. The reload goes on, and is retried.
 */
const RELOAD_WAIT_MS = 10_000;

/**
 * Read your writes: an admin write that changed routing data is answered once this instance has
 * loaded the change into the rules the callbacks decide from, so that a simulate, a callback or
 * GET /admin/agents sent here after the answer already decides by it (waiting for the write's own
 * NOTIFY, they were answered from the rules before it: a dial group just created was "not
 * loaded"). Other instances follow on the NOTIFY, within a second.
 */
export default fp(
  async function rulesWritten(app: FastifyInstance) {
    app.decorateRequest('rulesAnnounced', null);
    app.addHook('onSend', async (request, reply) => {
      const announced = request.rulesAnnounced;
      if (announced === null || reply.statusCode >= 400) return;
      try {
        await withDeadline(app.rules.loadAnnounced(announced), RELOAD_WAIT_MS, (ms) => `rules not reloaded within ${ms} ms`, { unref: true });
      } catch (err) {
        // Committed all the same: this instance follows once a retried load works (rules.lastError, /readyz).
        request.log.warn({ err }, "rules not reloaded after an admin write: this instance's callbacks may decide by the rules before it for now");
      }
    });
  },
  { name: 'rules-written', dependencies: ['rules'] },
);
