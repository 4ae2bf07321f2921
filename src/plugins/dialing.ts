import fp from 'fastify-plugin';
import { CALLBACK_PREFIX } from '../exotel/endpoints.js';
import { answerDialWith, type AnswerDial } from '../routing/dial/answer.js';
import { dialAnswerer, previewAttempt } from '../store/dial-state.js';
import { eventPacing } from '../routing/dial/event.js';
import { firstDigitsOf } from '../store/cdrs.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Dial Whom / Connect answers (with per-call state in Postgres): src/routing/dial/. */
    answerDial: AnswerDial;
  }
}

/** Wires the dial decision (src/routing/dial/) to the dial state in Postgres (src/store/dial-state.ts). */
export default fp(
  async function dialing(app) {
    const { config } = app;
    const { pool } = app.db;
    // One batcher per instance: one batch in flight, so batches of this instance never wait on each other's locks.
    const batched = dialAnswerer(pool, { log: app.log, onBatch: (size, seconds, ok) => app.metrics.observeDialBatch(size, seconds, ok) });
    // How a reported attempt ended, counted once by the instance that recorded it, as a dial event's
    // is: only for a member, under one of its own groups.
    const answer = async (req: Parameters<typeof batched>[0], waitMs: number) => {
      const offer = await batched(req, waitMs);
      if (offer.reported) {
        const { member, group } = eventPacing(app.rules.current, offer.reported.agent, offer.reported.group);
        if (member) app.metrics.observeOfferEffect(group, offer.reported);
      }
      return offer;
    };
    const token = config.EXOTEL_CALLBACK_SECRET ? `?token=${encodeURIComponent(config.EXOTEL_CALLBACK_SECRET)}` : '';
    app.decorate(
      'answerDial',
      answerDialWith({
        rules: app.rules,
        answer,
        // A simulation (admin API) gets the same answer from a transaction that is rolled back, on the admin API's pool.
        preview: (req) => previewAttempt(app.db.adminPool, req),
        random: app.random,
        budgetMs: config.DECISION_BUDGET_MS,
        busyTtlMs: config.AGENT_BUSY_TTL_SECONDS * 1000,
        eventUrl: `${config.PUBLIC_URL}${CALLBACK_PREFIX}/dial-events${token}`,
        firstDigits: (key) => firstDigitsOf(pool, key),
      }),
    );
  },
  { name: 'dialing', dependencies: ['metrics'], decorators: { fastify: ['config', 'db', 'rules', 'random'] } },
);
