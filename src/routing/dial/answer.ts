import type { ExotelCall } from '../../exotel/params.js';
import { connectAnswer, dialWhomAnswer, DEFAULT_CONNECT } from '../../exotel/connect.js';
import type { CallbackAnswer } from '../../exotel/responses.js';
import { DeadlineExceeded, withDeadline } from '../../lib/deadline.js';
import { decideFor, rejected, type CallbackResult } from '../callback.js';
import type { Decision } from '../decide.js';
import type { RulesSnapshot, StoredDialGroup } from '../snapshot.js';
import { dialRequest, fallbackNumbers, type DialEndpoint, type DialRequest } from './request.js';

const late = (ms: number) => `no answer within the ${ms} ms left of the budget`;

/** A dial flow's decision, with the numbers it offers. */
export type DialDecision = Decision & { numbers: string[] };

export interface DialAnswerOptions {
  endpoint: DialEndpoint;
  flowSlug: string;
  call: ExotelCall;
  at: Date;
  elapsedMs: () => number;
  /** Simulation: the same answer, but no state is written. */
  dryRun?: boolean;
  /** The snapshot to decide from; the current one when absent. */
  snapshot?: RulesSnapshot | null;
}

export type AnswerDial = (opts: DialAnswerOptions) => Promise<CallbackResult<DialDecision>>;

/**
 * Dial Whom and Connect: who to ring for this call and attempt. The flow decides the action
 * (routing/decide.ts); request.ts turns it into one DialRequest; Postgres answers it in one round
 * trip (dial_answer() in prisma/functions/dial_answer.sql, through `answer`, batched with
 * concurrent requests by src/store/dial-state.ts): the order fixed at the call's first request,
 * minus the numbers tried and the busy agents, stored so that every poll of one attempt gets the
 * same numbers. When Postgres fails or the budget runs out, the flow's onError action is offered
 * without it (fallbackNumbers).
 */
export function answerDialWith(deps: {
  rules: { readonly current: RulesSnapshot | null };
  /** the answer for a request, its state written (dial_answer()) */
  answer: (req: DialRequest) => Promise<string[]>;
  /** the same answer, nothing written (simulation) */
  preview: (req: DialRequest) => Promise<string[]>;
  random: () => number;
  budgetMs: number;
  busyTtlMs: number;
  /** Connect answers: where Exotel reports dial events */
  eventUrl: string;
}): AnswerDial {
  const { budgetMs, eventUrl } = deps;
  const opts = { busyTtlMs: deps.busyTtlMs, random: deps.random };

  async function numbersFor(
    snapshot: RulesSnapshot, action: Decision['action'], key: DialRequest['key'], call: ExotelCall, at: Date, dryRun: boolean,
  ): Promise<{ numbers: string[]; group: StoredDialGroup | null }> {
    const { request, group } = dialRequest(snapshot, action, key, call, at, opts);
    return { numbers: await (dryRun ? deps.preview(request) : deps.answer(request)), group };
  }

  function render(endpoint: DialEndpoint, numbers: string[], group: StoredDialGroup | null): CallbackAnswer {
    if (endpoint === 'dial-whom') return dialWhomAnswer(numbers);
    return connectAnswer(numbers, group?.connect ?? DEFAULT_CONNECT, { parallel: group?.strategy === 'parallel', eventUrl });
  }

  return async function answerDial(o) {
    const { endpoint, flowSlug, call, at } = o;
    const snapshot = o.snapshot !== undefined ? o.snapshot : deps.rules.current;
    const decided = decideFor(snapshot, 'dial', flowSlug, call, at);
    if (decided.refused || !snapshot) return decided.refused ?? rejected(503, 'routing rules are not loaded yet');
    const { flow, decision } = decided;
    const key = { callSid: call.callSid!, endpoint, flowSlug };
    try {
      const work = numbersFor(snapshot, decision.action, key, call, at, o.dryRun ?? false);
      const got = await withDeadline(work, budgetMs - o.elapsedMs(), late);
      return {
        answer: render(endpoint, got.numbers, got.group),
        outcome: decision.decidedBy === 'onError' ? 'on-error' : 'answered',
        reason: decision.error,
        decision: { ...decision, numbers: got.numbers },
        flow,
      };
    } catch (err) {
      const why = `${err instanceof DeadlineExceeded ? '' : 'dial state unavailable: '}${(err as Error).message}`;
      const got = fallbackNumbers(snapshot, flow.onError, call, at);
      let answer: CallbackAnswer;
      try {
        answer = render(endpoint, got.numbers, got.group);
      } catch {
        answer = render(endpoint, [], null);
      }
      return {
        answer, outcome: 'on-error', reason: why, flow,
        decision: { ...decision, action: flow.onError, decidedBy: 'onError', error: why, numbers: got.numbers },
      };
    }
  };
}
