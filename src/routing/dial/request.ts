import type { ExotelCall } from '../../exotel/params.js';
import type { Action } from '../../schemas/flow.js';
import type { RulesSnapshot, StoredDialGroup } from '../snapshot.js';
import { availableMembers, orderPlan, type OrderPlan } from './order.js';

const DAY_MS = 86_400_000;

export type DialEndpoint = 'dial-whom' | 'connect';

/** The call a request belongs to: dial state is kept per call, endpoint and flow. */
export interface CallKey {
  callSid: string;
  endpoint: string;
  flowSlug: string;
}

/**
 * One Dial Whom / Connect request, everything Postgres needs to answer it: the TypeScript side of
 * the SQL type dial_request (prisma/functions/dial_answer.sql), which src/store/dial-state.ts
 * marshals it into.
 */
export interface DialRequest {
  key: CallKey;
  /** the attempt: numbers the request says were tried and its DialCallStatus */
  attemptKey: string;
  /** numbers the request says were tried (DialWhomNumber, Legs) */
  tried: string[];
  /** numbers that may be offered now */
  candidates: string[];
  /** how the call's first request fixes its order */
  plan: OrderPlan;
  /** `rotate`: the dial group whose round-robin position the call takes */
  rrGroup: string | null;
  /** sticky groups: the caller's last agent connected after `since` goes first */
  sticky: { caller: string; since: Date } | null;
  /** DialCallStatus=completed: the caller was connected to this agent (for sticky) */
  connected: { caller: string; agent: string } | null;
  at: Date;
  /** an agent reported busy before this counts as free again (AGENT_BUSY_TTL_SECONDS) */
  busyExpired: Date;
}

/** Numbers the request says were already tried in this call (DialWhomNumber, Legs), sorted. */
export function triedInRequest(call: ExotelCall): string[] {
  const numbers = new Set<string>();
  if (call.dialWhomNumber?.e164) numbers.add(call.dialWhomNumber.e164);
  for (const leg of call.legs) if (leg.number?.e164) numbers.add(leg.number.e164);
  return [...numbers].sort();
}

/**
 * An attempt's identity: what was tried and how the last dial ended. Exotel polls one attempt
 * more than once; each poll of it must get the same answer.
 */
export function attemptKey(tried: string[], call: ExotelCall): string {
  return `${tried.join(',')}|${call.dialCallStatus ?? ''}`;
}

/** Sticky groups: the caller, and how far back a connection to an agent counts. */
export function stickyWindow(group: StoredDialGroup | null, call: ExotelCall, at: Date): DialRequest['sticky'] {
  const caller = call.callFrom?.e164;
  if (!group?.sticky?.enabled || !caller) return null;
  return { caller, since: new Date(at.getTime() - group.sticky.lookbackDays * DAY_MS) };
}

/** DialCallStatus=completed with both numbers known: the caller talked to this agent. */
export function connection(call: ExotelCall): DialRequest['connected'] {
  const caller = call.callFrom?.e164;
  const agent = call.dialWhomNumber?.e164;
  return call.dialCallStatus === 'completed' && caller && agent ? { caller, agent } : null;
}

/** An agent reported busy before this instant counts as free again. */
export function busyCutoff(at: Date, busyTtlMs: number): Date {
  return new Date(at.getTime() - busyTtlMs);
}

/**
 * The request for one dial callback, from the snapshot, the flow's action, the call and the clock;
 * and the dial group it rings (null for a list of numbers). Throws when the action names a group
 * the snapshot does not hold.
 */
export function dialRequest(
  snapshot: RulesSnapshot, action: Action, key: CallKey, call: ExotelCall, at: Date, opts: { busyTtlMs: number; random: () => number },
): { request: DialRequest; group: StoredDialGroup | null } {
  let group: StoredDialGroup | null = null;
  let candidates: string[];
  let plan: OrderPlan;
  if ('dialGroup' in action) {
    group = snapshot.dialGroups.get(action.dialGroup) ?? null;
    if (!group) throw new Error(`dial-group '${action.dialGroup}' is not loaded`);
    const members = availableMembers(group, snapshot.schedules, at);
    candidates = members.map((m) => m.number);
    // Drawn for every request, used only by the call's first (which only Postgres can tell).
    plan = orderPlan(group, members, opts.random);
  } else if ('numbers' in action) {
    candidates = action.numbers;
    plan = { base: candidates, arrange: 'as_is' };
  } else {
    throw new Error('a dial flow action needs dialGroup or numbers');
  }
  const tried = triedInRequest(call);
  const request: DialRequest = {
    key,
    attemptKey: attemptKey(tried, call),
    tried,
    candidates,
    plan,
    rrGroup: group && plan.arrange === 'rotate' ? group.slug : null,
    sticky: stickyWindow(group, call, at),
    connected: connection(call),
    at,
    busyExpired: busyCutoff(at, opts.busyTtlMs),
  };
  return { request, group };
}

/**
 * Without Postgres or time: the numbers an action offers in plain order, minus what the request
 * says was tried (no rotation, no busy agents left out: those facts are in Postgres).
 */
export function fallbackNumbers(snapshot: RulesSnapshot, action: Action, call: ExotelCall, at: Date): { numbers: string[]; group: StoredDialGroup | null } {
  const tried = new Set(triedInRequest(call));
  if ('dialGroup' in action) {
    const group = snapshot.dialGroups.get(action.dialGroup) ?? null;
    const members = group ? availableMembers(group, snapshot.schedules, at) : [];
    return { numbers: members.map((m) => m.number).filter((n) => !tried.has(n)), group };
  }
  return { numbers: 'numbers' in action ? action.numbers.filter((n) => !tried.has(n)) : [], group: null };
}
