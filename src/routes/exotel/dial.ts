import type { FastifyInstance } from 'fastify';
import type { ExotelCall } from '../../exotel/params.js';
import { connectAnswer, dialWhomAnswer } from '../../exotel/connect.js';
import type { CallbackAnswer } from '../../exotel/responses.js';
import type { Action } from '../../schemas/flow.js';
import type { Decision } from '../../routing/decide.js';
import { availableMembers, orderPlan, type OrderPlan } from '../../routing/dial.js';
import { decideFor, rejected, type CallbackResult } from '../../routing/callback.js';
import { DEFAULT_CONNECT, type StoredDialGroup } from '../../store/dial-groups.js';
import { dialAnswerer, previewAttempt, type AttemptRequest, type CallKey } from '../../store/dial-state.js';
import type { RulesSnapshot } from '../../store/rules-snapshot.js';

export type DialEndpoint = 'dial-whom' | 'connect';

class Late extends Error {}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Late(`no answer within the ${ms} ms left of the budget`)), Math.max(0, ms));
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/** Numbers the request says were already tried in this call (DialWhomNumber, Legs). */
function triedInRequest(call: ExotelCall): string[] {
  const numbers = new Set<string>();
  if (call.dialWhomNumber?.e164) numbers.add(call.dialWhomNumber.e164);
  for (const leg of call.legs) if (leg.number?.e164) numbers.add(leg.number.e164);
  return [...numbers].sort();
}

/**
 * Dial Whom and Connect: who to ring for this call and attempt. The order is fixed at the call's
 * first request (strategy, round-robin position, sticky agent) and kept in Postgres; every
 * request answers the numbers of that order not yet tried and not busy, and the answer for one
 * attempt is stored so that concurrent identical polls get the same one. All of it is one
 * function call in Postgres per request (src/store/dial-state.ts), and requests that arrive while
 * one is being answered go together in one statement and one commit.
 */
export function dialService(app: FastifyInstance) {
  const { pool } = app.db;
  const { config } = app;
  const busyTtlMs = config.AGENT_BUSY_TTL_SECONDS * 1000;
  // One batcher per instance: one batch in flight, so batches of this instance never wait on each other's locks.
  const answerAttempt = dialAnswerer(pool, { log: app.log, onBatch: (size, seconds, ok) => app.metrics.observeDialBatch(size, seconds, ok) });
  const eventUrl = `${config.PUBLIC_URL}/exotel/dial-events${config.EXOTEL_CALLBACK_SECRET ? `?token=${encodeURIComponent(config.EXOTEL_CALLBACK_SECRET)}` : ''}`;

  async function numbersFor(
    snapshot: RulesSnapshot, action: Action, key: CallKey, call: ExotelCall, at: Date, dryRun: boolean,
  ): Promise<{ numbers: string[]; group: StoredDialGroup | null }> {
    let group: StoredDialGroup | null = null;
    let candidates: string[];
    let plan: OrderPlan;
    if ('dialGroup' in action) {
      group = snapshot.dialGroups.get(action.dialGroup) ?? null;
      if (!group) throw new Error(`dial-group '${action.dialGroup}' is not loaded`);
      const members = availableMembers(group, snapshot.schedules, at);
      candidates = members.map((m) => m.number);
      // Drawn for every request, used only by the call's first (which only Postgres can tell).
      plan = orderPlan(group, members, app.random);
    } else if ('numbers' in action) {
      candidates = action.numbers;
      plan = { base: candidates, arrange: 'as_is' };
    } else {
      throw new Error('a dial flow action needs dialGroup or numbers');
    }
    const tried = triedInRequest(call);
    const caller = call.callFrom?.e164 ?? null;
    const agent = call.dialWhomNumber?.e164 ?? null;
    const request: AttemptRequest = {
      key,
      attemptKey: `${tried.join(',')}|${call.dialCallStatus ?? ''}`,
      tried,
      candidates,
      plan,
      rrGroup: group && plan.arrange === 'rotate' ? group.slug : null,
      sticky: group?.sticky?.enabled && caller ? { caller, since: new Date(at.getTime() - group.sticky.lookbackDays * 86_400_000) } : null,
      connected: call.dialCallStatus === 'completed' && caller && agent ? { caller, agent } : null,
      at,
      busyExpired: new Date(at.getTime() - busyTtlMs),
    };
    // Batched with concurrent requests; a simulation gets the same answer from a transaction that is rolled back.
    return { numbers: await (dryRun ? previewAttempt(pool, request) : answerAttempt(request)), group };
  }

  function render(endpoint: DialEndpoint, numbers: string[], group: StoredDialGroup | null): CallbackAnswer {
    if (endpoint === 'dial-whom') return dialWhomAnswer(numbers);
    return connectAnswer(numbers, group?.connect ?? DEFAULT_CONNECT, { parallel: group?.strategy === 'parallel', eventUrl });
  }

  /** Without Postgres or time: the onError action, offered in plain order minus what the request says was tried. */
  function fallback(snapshot: RulesSnapshot, action: Action, call: ExotelCall, at: Date): { numbers: string[]; group: StoredDialGroup | null } {
    const tried = new Set(triedInRequest(call));
    if ('dialGroup' in action) {
      const group = snapshot.dialGroups.get(action.dialGroup) ?? null;
      const members = group ? availableMembers(group, snapshot.schedules, at) : [];
      return { numbers: members.map((m) => m.number).filter((n) => !tried.has(n)), group };
    }
    return { numbers: 'numbers' in action ? action.numbers.filter((n) => !tried.has(n)) : [], group: null };
  }

  return async function answerDial(opts: {
    endpoint: DialEndpoint; flowSlug: string; call: ExotelCall; at: Date; elapsedMs: () => number;
    /** Simulation: the same answer, but no state is written. */
    dryRun?: boolean;
    snapshot?: RulesSnapshot | null;
  }): Promise<CallbackResult> {
    const { endpoint, flowSlug, call, at } = opts;
    const snapshot = opts.snapshot !== undefined ? opts.snapshot : app.rules.current;
    const decided = decideFor(snapshot, 'dial', flowSlug, call, at);
    if (decided.refused || !snapshot) return decided.refused ?? rejected(503, 'routing rules are not loaded yet');
    const { flow, decision } = decided;
    const key = { callSid: call.callSid!, endpoint, flowSlug };
    try {
      const got = await withDeadline(numbersFor(snapshot, decision.action, key, call, at, opts.dryRun ?? false), config.DECISION_BUDGET_MS - opts.elapsedMs());
      return {
        answer: render(endpoint, got.numbers, got.group),
        outcome: decision.decidedBy === 'onError' ? 'on-error' : 'answered',
        reason: decision.error,
        decision: { ...decision, numbers: got.numbers } as Decision,
        flow,
      };
    } catch (err) {
      const why = `${err instanceof Late ? '' : 'dial state unavailable: '}${(err as Error).message}`;
      const got = fallback(snapshot, flow.onError, call, at);
      const onError: Decision = { ...decision, action: flow.onError, decidedBy: 'onError', error: why };
      let answer: CallbackAnswer;
      try {
        answer = render(endpoint, got.numbers, got.group);
      } catch {
        answer = render(endpoint, [], null);
      }
      return { answer, outcome: 'on-error', reason: why, decision: { ...onError, numbers: got.numbers } as Decision, flow };
    }
  };
}
