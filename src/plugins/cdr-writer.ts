import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { CdrWriter } from '../store/cdr-writer.js';
import { CdrSpool } from '../store/cdr-spool.js';
import type { BackgroundOptions } from './rules.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Group-committing CDR writer for the callback path. */
    cdrWriter: CdrWriter;
  }
}

/** The CDR writer, with its local spool under DATA_DIR for CDRs Postgres cannot take in time. */
export default fp(
  async function cdrWriter(app: FastifyInstance, opts: BackgroundOptions) {
    const spool = new CdrSpool(path.join(app.config.DATA_DIR, 'spool'), app.log);
    app.decorate('cdrWriter', new CdrWriter(app.db.pool, app.log, { spool }));
    // Replays what an earlier run left in the spool.
    if (opts.background) app.addHook('onReady', async () => app.cdrWriter.start());
    app.addHook('onClose', async () => app.cdrWriter.close());
  },
  { name: 'cdr-writer', decorators: { fastify: ['config', 'db'] } },
);
