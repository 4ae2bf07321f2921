import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { RetentionJob } from '../store/retention.js';
import type { BackgroundOptions } from './rules.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Hourly pruning of old CDRs and finished calls' dial state. */
    retention: RetentionJob;
  }
}

/** The retention job. It runs even with CDR_RETENTION_DAYS=0: finished calls' dial state must not pile up either. */
export default fp(
  async function retention(app: FastifyInstance, opts: BackgroundOptions) {
    app.decorate(
      'retention',
      new RetentionJob(app.db.pool, app.log, {
        retentionDays: app.config.CDR_RETENTION_DAYS,
        auditRetentionDays: app.config.AUDIT_RETENTION_DAYS,
      }),
    );
    if (opts.background) app.addHook('onReady', async () => app.retention.start());
    app.addHook('onClose', async () => app.retention.stop());
  },
  { name: 'retention', decorators: { fastify: ['config', 'db'] } },
);
