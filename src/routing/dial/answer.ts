import type { DialEndpoint } from '../../exotel/endpoints.js';
import type { ExotelCall } from '../../exotel/params.js';
import { CONNECT_MAX_NUMBERS, connectAnswer, connectNumbers, dialWhomAnswer, DEFAULT_CONNECT, InvalidConnectAnswer } from '../../exotel/connect.js';
import type { CallbackAnswer } from '../../exotel/responses.js';
import { DeadlineExceeded, withDeadline } from '../../lib/deadline.js';
import { SPOOL_RESERVE_MS } from '../../config.js';
import { callSidProblem, decideFor, rejected, type CallbackResult } from '../callback.js';
import type { Decision } from '../decide.js';
import type { Flow } from '../../schemas/flow.js';
import type { RulesSnapshot, StoredDialGroup } from '../snapshot.js';
import { dialPolicy } from './trace.js';
import { dialRequest, fallbackNumbers, type DialOffer, type DialRequest, type Skip } from './request.js';

const late = (ms: number) => `no answer within the ${Math.max(0, Math.round(ms))} ms left of the budget`;

/** A dial flow's decision, with the numbers it offers. */
export type DialDecision = Decision & { numbers: string[] };

/**
 * Who was offered and who not, for traces (CDR, simulate): the tier offered, and each member passed
 * over and why — away, off shift, inactive (from the snapshot), busy, wrap-up, paused or already
 * tried in this call (from Postgres).
 */
export interface DialTrace {
  /** the dial group of the tier offered (null: a list of numbers) */
  tier: string | null;
  /** its position in the action's dialGroups (0 for a single group) */
  tierIndex: number | null;
  skipped: Array<{ number: string; group: string | null; why: string }>;
  /** a repeated poll of one attempt: its stored answer (who was skipped then is not repeated) */
  repeat?: boolean;
  /** the offered group's strategy ('numbers' for a list) and sticky for this caller: 'last N days', or why not (dialPolicy) */
  strategy?: string;
  sticky?: string | null;
  /** a Connect answer offered more than it carries: 'first 50 of N' answered, the rest left untried for a re-fetch */
  cut?: string;
}

/** What a Connect answer's trace says when it carries only the first CONNECT_MAX_NUMBERS of `offered`. */
const cutOf = (offered: number) => `first ${CONNECT_MAX_NUMBERS} of ${offered}`;

/**
 * The trace of an answer: Postgres' reasons beside the snapshot's, each member once, with the group
 * of the tier it is in (`groupOf`, from dialRequest).
 */
export function dialTrace(groups: Array<{ slug: string }>, groupOf: (number: string) => { slug: string } | null, skipped: Skip[], offer: DialOffer): DialTrace {
  const tierIndex = offer.tier ?? null;
  const out: DialTrace['skipped'] = skipped.map((s) => ({ ...s }));
  for (const [number, why] of Object.entries(offer.skipped ?? {})) out.push({ number, group: groupOf(number)?.slug ?? null, why });
  return {
    tier: tierIndex === null ? null : (groups[tierIndex]?.slug ?? null),
    tierIndex,
    skipped: out,
    ...(offer.repeat ? { repeat: true } : {}),
  };
}

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
 * trip (dial_offer() in prisma/functions/dial_answer.sql, through `answer`, batched with
 * concurrent requests by src/store/dial-state.ts): the order fixed at the call's first request,
 * minus the numbers tried and the busy agents, stored so that every poll of one attempt gets the
 * same numbers. When Postgres fails or does not answer within the budget less the CDR's reserve
 * (SPOOL_RESERVE_MS), the flow's onError action is offered without it (fallbackNumbers).
 */
export function answerDialWith(deps: {
  rules: { readonly current: RulesSnapshot | null };
  /** the answer for a request, its state written (dial_offer()) */
  answer: (req: DialRequest, waitMs: number) => Promise<DialOffer>;
  /** the same answer, nothing written (simulation) */
  preview: (req: DialRequest) => Promise<DialOffer>;
  random: () => number;
  /** DECISION_BUDGET_MS; the dial state is waited for until SPOOL_RESERVE_MS before its end */
  budgetMs: number;
  busyTtlMs: number;
  /** Connect answers: where Exotel reports dial events */
  eventUrl: string;
  /** the digits of the call's first request to the flow that carried them (its CDRs), or null */
  firstDigits?: (key: DialRequest['key']) => Promise<string | null>;
}): AnswerDial {
  const { eventUrl } = deps;
  // Postgres gets the budget less what the callback keeps for its CDR (SPOOL_RESERVE_MS): when it is
  // late, the CDR's fsync to the spool still fits in the budget.
  const waitMs = deps.budgetMs - SPOOL_RESERVE_MS;
  const opts = { busyTtlMs: deps.busyTtlMs, random: deps.random };

  async function numbersFor(
    snapshot: RulesSnapshot,
    action: Decision['action'],
    key: DialRequest['key'],
    call: ExotelCall,
    at: Date,
    dryRun: boolean,
    waitMs: number,
  ): Promise<{ numbers: string[]; group: StoredDialGroup | null; trace: DialTrace }> {
    const { request, groups, groupOf, skipped } = dialRequest(snapshot, action, key, call, at, opts);
    const offer = await (dryRun ? deps.preview(request) : deps.answer(request, waitMs));
    const trace = dialTrace(groups, groupOf, skipped, offer);
    // The tier offered rings with its own group's Connect settings. A repeated poll (no tier from
    // Postgres) repeats one tier's numbers: that tier is its first number's.
    const repeated = trace.tierIndex === null && offer.numbers.length > 0 ? groupOf(offer.numbers[0]!) : null;
    const group = repeated ?? groups[trace.tierIndex ?? 0] ?? null;
    // Added to dialTrace's new object, not spread into another: `{ ...a, ...b }` cost V8 ~1.2 µs a callback.
    const { strategy, sticky } = dialPolicy(group, call);
    trace.strategy = strategy;
    trace.sticky = sticky;
    return { numbers: offer.numbers, group, trace };
  }

  function render(endpoint: DialEndpoint, flowSlug: string, numbers: string[], group: StoredDialGroup | null): CallbackAnswer {
    if (endpoint === 'dial-whom') return dialWhomAnswer(numbers);
    // The dial events name the group offered, whose pacing then applies (routing/dial/event.ts), and
    // the flow, whose offer in the call they report (another flow of the call makes offers of its own).
    const named = `${group ? `group=${encodeURIComponent(group.slug)}&` : ''}flow=${encodeURIComponent(flowSlug)}`;
    const url = `${eventUrl}${eventUrl.includes('?') ? '&' : '?'}${named}`;
    return connectAnswer(numbers, group?.connect ?? DEFAULT_CONNECT, { parallel: group?.strategy === 'parallel', eventUrl: url });
  }

  /**
   * Exotel sends `digits` only with a Dial Whom's first request; its re-fetches (which report the
   * attempt before) carry none. A flow that decides by digits would decide otherwise on every
   * re-fetch (a caller who pressed 1 for sales offered the `otherwise` numbers), so a re-fetch
   * without digits is decided with the digits of the call's first request to the flow.
   */
  async function withFirstDigits(flow: Flow | undefined, call: ExotelCall, key: DialRequest['key'], elapsedMs: () => number): Promise<ExotelCall> {
    const refetch = call.dialCallStatus !== null || call.dialWhomNumber !== null || call.legs.length > 0;
    if (!deps.firstDigits || flow?.type !== 'dial' || call.digits !== null || !refetch || !flow.rules.some((r) => r.when.digits !== undefined)) return call;
    try {
      const digits = await withDeadline(deps.firstDigits(key), waitMs - elapsedMs(), late);
      return digits === null ? call : { ...call, digits, digitsFromFirstRequest: true };
    } catch (err) {
      call.warnings.push(`digits of the call's first request not read: ${(err as Error).message}`);
      return call;
    }
  }

  return async function answerDial(o) {
    const { endpoint, flowSlug, at } = o;
    const snapshot = o.snapshot !== undefined ? o.snapshot : deps.rules.current;
    let { call } = o;
    if (call.callSid && !callSidProblem(call.callSid)) {
      call = await withFirstDigits(snapshot?.flows.get(flowSlug), call, { callSid: call.callSid, endpoint, flowSlug }, o.elapsedMs);
    }
    const decided = decideFor(snapshot, 'dial', flowSlug, call, at);
    if (decided.refused || !snapshot) return decided.refused ?? rejected(503, 'routing rules are not loaded yet');
    const { flow, decision } = decided;
    const key = { callSid: call.callSid!, endpoint, flowSlug };
    try {
      const leftMs = waitMs - o.elapsedMs();
      // Past its deadline the request is not sent either: it is no longer waited for.
      const work = numbersFor(snapshot, decision.action, key, call, at, o.dryRun ?? false, leftMs);
      const got = await withDeadline(work, leftMs, late);
      // A Connect answer carries the first CONNECT_MAX_NUMBERS. The dial state keeps the whole
      // answer, but only the numbers Exotel reports as dialled count as tried: the others are
      // offered again by the next attempt's re-fetch, and a repeated poll is cut the same way.
      const numbers = endpoint === 'connect' ? connectNumbers(got.numbers) : got.numbers;
      const answer = render(endpoint, flowSlug, numbers, got.group);
      // decideFor made the decision for this callback alone: completed in place once nothing can throw
      // (the onError answer below copies it as decided), as `{ ...decision, numbers, dial }` cost V8 ~1.4 µs.
      const dialDecision = decision as DialDecision;
      dialDecision.numbers = numbers;
      dialDecision.dial = numbers === got.numbers ? got.trace : { ...got.trace, cut: cutOf(got.numbers.length) };
      return {
        answer,
        outcome: decision.decidedBy === 'onError' ? 'on-error' : 'answered',
        reason: decision.error,
        decision: dialDecision,
        flow,
      };
    } catch (err) {
      // Only a failure of the dial state itself is Postgres': a late one and an answer that is not
      // valid (a group's Connect settings) say what they are.
      const message = (err as Error).message;
      let why = err instanceof DeadlineExceeded || err instanceof InvalidConnectAnswer ? message : `dial state unavailable: ${message}`;
      const got = fallbackNumbers(snapshot, flow.onError, call, at);
      let numbers = endpoint === 'connect' ? connectNumbers(got.numbers) : got.numbers;
      if (numbers !== got.numbers) why = `${why}; onError answered the ${cutOf(got.numbers.length)} numbers`;
      let answer: CallbackAnswer;
      try {
        answer = render(endpoint, flowSlug, numbers, got.group);
      } catch (fallbackErr) {
        answer = render(endpoint, flowSlug, [], null);
        numbers = [];
        why = `${why}; onError not answered either: ${(fallbackErr as Error).message}`;
      }
      return {
        answer,
        outcome: 'on-error',
        reason: why,
        flow,
        decision: { ...decision, action: flow.onError, decidedBy: 'onError', error: why, numbers },
      };
    }
  };
}
