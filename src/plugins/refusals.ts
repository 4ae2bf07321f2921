import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { RefusalLog } from '../store/refusals.js';
import type { BackgroundOptions } from './rules.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Refused callbacks: which are stored as CDRs, and the per-address, per-minute counts of all. */
    refusals: RefusalLog;
  }
}

/** The refusal log: its counts are written every few seconds once the app is ready, and at close. */
export default fp(
  async function refusals(app: FastifyInstance, opts: BackgroundOptions) {
    app.decorate('refusals', new RefusalLog(app.db.pool, app.log));
    if (opts.background) app.addHook('onReady', async () => app.refusals.start());
    // Its counts are in memory only until written.
    app.addHook('onClose', async () => app.refusals.close());
  },
  { name: 'refusals', decorators: { fastify: ['db'] } },
);
