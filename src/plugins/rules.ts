import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { RulesCache } from '../store/rules-snapshot.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The in-memory routing rules every callback decides from. */
    rules: RulesCache;
  }
}

/** Background work (loading, listening for changes) runs only with `background`; see AppOptions. */
export interface BackgroundOptions {
  background: boolean;
}

/** The rules snapshot: loaded when the app is ready, reloaded on every committed admin change. */
export default fp(
  async function rules(app: FastifyInstance, opts: BackgroundOptions) {
    app.decorate('rules', new RulesCache(app.db, app.log));
    if (opts.background) app.addHook('onReady', async () => app.rules.start());
    app.addHook('onClose', async () => app.rules.stop());
  },
  { name: 'rules', decorators: { fastify: ['db'] } },
);
