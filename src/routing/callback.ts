import type { ExotelCall } from '../exotel/params.js';
import type { Action, Flow, FlowType, PassthruAction, SwitchAction } from '../schemas/flow.js';
import type { RulesSnapshot } from './snapshot.js';
import { asyncPassthruAnswer, errorAnswer, passthruAnswer, switchAnswer, type CallbackAnswer } from '../exotel/responses.js';
import { decide, type Decision } from './decide.js';
import { availabilityAnswer, previewAvailability } from './own-availability.js';
import { FLOW_TYPE_OF, type DialEndpoint, type FlowEndpoint } from '../exotel/endpoints.js';

/** The endpoints answered from the snapshot alone (Dial Whom and Connect also need per-call state). */
export type Endpoint = Exclude<FlowEndpoint, DialEndpoint>;
/** How a callback ended, as its CDR, log line and metrics name it. */
export const OUTCOMES = ['answered', 'async', 'on-error', 'rejected'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface CallbackResult<D extends Decision = Decision> {
  answer: CallbackAnswer;
  outcome: Outcome;
  /** Why the callback was refused or answered with onError; null when all went as designed. */
  reason: string | null;
  decision: D | null;
  flow: Flow | null;
}

/** The refusal of a callback without CallSid (the callback route adds why a body it could not read gave none). */
export const CALL_SID_MISSING = 'CallSid is missing';

/** The longest CallSid taken (Exotel's have 32 characters): a longer one is no call of Exotel's, and the dial state could not key it. */
export const MAX_CALL_SID_CHARS = 200;

/** Why this CallSid cannot be a call's, or null. */
export function callSidProblem(callSid: string): string | null {
  return callSid.length > MAX_CALL_SID_CHARS ? `CallSid has ${callSid.length} characters; at most ${MAX_CALL_SID_CHARS} (Exotel's have 32)` : null;
}

/** A refusal: no decision was made. */
export function rejected(statusCode: number, reason: string): CallbackResult<never> {
  return { answer: errorAnswer(statusCode, reason), outcome: 'rejected', reason, decision: null, flow: null };
}

function render(endpoint: Endpoint, action: Action): CallbackAnswer {
  return endpoint === 'passthru' ? passthruAnswer(action as PassthruAction) : switchAnswer(action as SwitchAction);
}

/** Why no flow answers this slug: one typed with capitals (as a flow's name is, in Exotel's flow builder) is told slugs are lowercase. */
function noFlow(snapshot: RulesSnapshot, flowSlug: string): string {
  const lower = flowSlug.toLowerCase();
  if (lower === flowSlug) return `no flow '${flowSlug}'`;
  const named = snapshot.flows.has(lower) ? `; this one is '${lower}'` : '';
  return `no flow '${flowSlug}': flow slugs are lowercase${named} (the flow's exotelUrls give its URL)`;
}

/**
 * The steps every callback endpoint shares: the flow must exist and be of the endpoint's type,
 * CallSid must be there; then the flow decides (its `onError` action if deciding throws).
 * Returns the refusal, or the flow and its decision.
 */
export function decideFor(
  snapshot: RulesSnapshot | null,
  flowType: FlowType,
  flowSlug: string,
  call: ExotelCall,
  at: Date,
): { refused: CallbackResult<never> } | { refused: null; flow: Flow; decision: Decision } {
  if (!snapshot) return { refused: rejected(503, 'routing rules are not loaded yet') };
  const flow = snapshot.flows.get(flowSlug);
  if (!flow || flow.type !== flowType) {
    return { refused: rejected(404, flow ? `flow '${flowSlug}' is a ${flow.type} flow, not ${flowType}` : noFlow(snapshot, flowSlug)) };
  }
  if (!call.callSid) return { refused: { ...rejected(400, CALL_SID_MISSING), flow } };
  const tooLong = callSidProblem(call.callSid);
  if (tooLong) return { refused: { ...rejected(400, tooLong), flow } };
  try {
    return { refused: null, flow, decision: decide(snapshot, flow, call, at) };
  } catch (err) {
    const error = `decision failed: ${(err as Error).message}`;
    return { refused: null, flow, decision: { action: flow.onError, decidedBy: 'onError', matchedRule: null, error, trace: [] } };
  }
}

/**
 * What to answer one Passthru or Switch callback, from the rules snapshot alone (no I/O): refusals
 * for an unknown flow or a missing CallSid; otherwise the flow's decision, or its `onError` action
 * when the decision fails or `elapsedMs()` shows the budget was overrun.
 */
export function answerCallback(opts: {
  snapshot: RulesSnapshot | null;
  endpoint: Endpoint;
  flowSlug: string;
  call: ExotelCall;
  at: Date;
  budgetMs: number;
  elapsedMs: () => number;
}): CallbackResult {
  const { endpoint } = opts;
  const decided = decideFor(opts.snapshot, FLOW_TYPE_OF[endpoint], opts.flowSlug, opts.call, opts.at);
  if (decided.refused) return decided.refused;
  const { flow } = decided;
  let { decision } = decided;
  if (decision.decidedBy !== 'onError' && opts.elapsedMs() > opts.budgetMs) {
    decision = { ...decision, action: flow.onError, decidedBy: 'onError', error: `decision took longer than the ${opts.budgetMs} ms budget` };
  }
  // Answered from the snapshot's view here (simulate stops at this); the callback then writes it
  // (applyOwnAvailability) and answers from what was written.
  const own =
    endpoint === 'passthru' && 'availability' in decision.action && opts.snapshot
      ? previewAvailability(opts.snapshot, decision.action, opts.call, opts.at)
      : null;
  if (own) decision = { ...decision, availability: own };
  if (endpoint === 'passthru' && flow.mode === 'async') {
    return { answer: asyncPassthruAnswer, outcome: 'async', reason: decision.error, decision, flow };
  }
  const outcome: Outcome = decision.decidedBy === 'onError' ? 'on-error' : 'answered';
  return { answer: own ? availabilityAnswer(own) : render(endpoint, decision.action), outcome, reason: decision.error, decision, flow };
}
