import type { ExotelCall } from '../exotel/params.js';
import type { AvailabilityAction, Flow } from '../schemas/flow.js';
import type { Availability, AvailabilityStatus } from '../schemas/agent.js';
import type { RulesSnapshot } from './snapshot.js';
import { passthruAnswer, type CallbackAnswer } from '../exotel/responses.js';
import { isAway } from './agents.js';
import type { CallbackResult } from './callback.js';
import { withDeadline } from '../lib/deadline.js';

/** What a passthru availability action did (or, before it is written and in simulate, would do). */
export interface AvailabilityOutcome {
  /** the caller, when a member of a dial group; null: no agent, nothing changes */
  agent: string | null;
  from: AvailabilityStatus | null;
  to: AvailabilityStatus | null;
  why: string;
}

const isMember = (snapshot: Pick<RulesSnapshot, 'dialGroups'>, number: string) => {
  for (const g of snapshot.dialGroups.values()) if (g.members.some((m) => m.number === number)) return true;
  return false;
};

const statusAt = (a: Availability | null | undefined, at: Date): AvailabilityStatus => (isAway(a, at) ? 'away' : 'available');

/** The caller's own availability action as the snapshot sees it: who, from what, to what. Pure. */
export function previewAvailability(
  snapshot: Pick<RulesSnapshot, 'dialGroups' | 'availability'>,
  action: AvailabilityAction,
  call: ExotelCall,
  at: Date,
): AvailabilityOutcome {
  const caller = call.callFrom?.e164 ?? null;
  if (caller === null)
    return { agent: null, from: null, to: null, why: `caller number unknown (${call.callFrom?.raw ?? 'not sent'}); no agent, nothing changed` };
  if (!isMember(snapshot, caller)) return { agent: null, from: null, to: null, why: `${caller} is no member of any dial group; nothing changed` };
  const from = statusAt(snapshot.availability.get(caller), at);
  const to = action.availability === 'toggle' ? (from === 'away' ? 'available' : 'away') : action.availability;
  return { agent: caller, from, to, why: `${caller}: ${from} → ${to} (${action.availability})` };
}

/** Branch A when the caller is now available, B otherwise (no agent included). */
export const availabilityAnswer = (o: AvailabilityOutcome): CallbackAnswer => passthruAnswer({ branch: o.to === 'available' ? 'A' : 'B' });

/** What writing the change needs: the store's writeAvailability, bound to the pool. */
export type WriteAvailability = (
  change: {
    number: string;
    mode: AvailabilityAction['availability'];
    reason: string | null;
    until: null;
    setBy: string;
    apiKeyId: null;
    at: Date;
    once: true;
  },
  withinMs: number,
) => Promise<{ before: Availability | null; after: Availability; repeat?: boolean }>;

/** Postgres is told to give up this much before the budget's end, so that its refusal is what is answered. */
const CANCEL_MARGIN_MS = 50;

/**
 * Carries out a decided availability action: writes it (one transaction under the agent's lock,
 * audited, announced to every instance: src/store/agents.ts) and answers from what was written,
 * which may differ from the snapshot's preview when another instance changed it a moment ago. When the write fails or is late, the flow's onError; a
 * late write is cancelled by Postgres, so what is answered is what happened.
 */
export async function applyOwnAvailability(
  result: CallbackResult,
  call: ExotelCall,
  at: Date,
  write: WriteAvailability,
  budgetLeftMs: number,
): Promise<CallbackResult> {
  const decision = result.decision;
  const preview = decision?.availability;
  if (!decision || !preview?.agent || !('availability' in decision.action) || result.outcome === 'on-error' || result.outcome === 'rejected') return result;
  const action = decision.action;
  try {
    const change = await withDeadline(
      write(
        {
          number: preview.agent,
          mode: action.availability,
          reason: action.reason ?? null,
          until: null,
          setBy: `phone:${call.callSid}`,
          apiKeyId: null,
          at,
          once: true,
        },
        budgetLeftMs - CANCEL_MARGIN_MS,
      ),
      budgetLeftMs,
      (ms) => `no answer within the ${Math.round(ms)} ms left of the budget`,
    );
    const to = change.after.status;
    const availability: AvailabilityOutcome = change.repeat
      ? { agent: preview.agent, from: null, to, why: `${preview.agent}: ${to}, as this call already set it (a repeated request changes nothing)` }
      : {
          agent: preview.agent,
          from: statusAt(change.before, at),
          to,
          why: `${preview.agent}: ${statusAt(change.before, at)} → ${to} (${action.availability}, set by phone)`,
        };
    return {
      ...result,
      answer: result.outcome === 'async' ? result.answer : availabilityAnswer(availability),
      decision: { ...decision, availability },
    };
  } catch (err) {
    const flow = result.flow as Flow;
    const error = `availability not saved: ${(err as Error).message}`;
    return {
      ...result,
      answer: result.outcome === 'async' ? result.answer : passthruAnswer(flow.onError as Parameters<typeof passthruAnswer>[0]),
      outcome: result.outcome === 'async' ? 'async' : 'on-error',
      reason: error,
      decision: { ...decision, action: flow.onError, decidedBy: 'onError', error, availability: { ...preview, to: null, why: `${preview.why}; not saved` } },
    };
  }
}
