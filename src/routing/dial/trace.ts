import type { ExotelCall } from '../../exotel/params.js';
import type { Strategy } from '../../schemas/dial-group.js';
import type { Action, DialTrace } from '../../schemas/flow.js';
import { openAt } from '../schedule.js';
import type { RulesSnapshot } from '../snapshot.js';
import { triedInRequest } from './request.js';

const ORDER: Record<Strategy, string> = {
  sequential: 'members by priority',
  parallel: 'members by priority, rung all at once (parallel_ringing)',
  round_robin: "members by priority, starting at the group's round-robin position, which moves once per call",
  least_recent: 'the member dialed longest ago first (never dialed before them), ties by priority',
  random: "a random order, drawn at the call's first request",
  weighted: "a random order weighted by each member's weight, drawn at the call's first request",
};

/** A number that was a candidate, not tried, and still not offered: what Postgres knows and this code does not. */
const NOT_OFFERED = "busy (a dial event reported the agent on a call), or not in the order fixed at the call's first request";

/**
 * What a dial decision did, for the CDR and `simulate`: the strategy and how it orders, who was
 * left out and why (inactive, off shift with the shift's reason, tried in this call, busy), sticky,
 * and who was offered. Pure: from the snapshot, the action, the call, the clock and the numbers the
 * answer offers.
 */
export function dialTrace(
  snapshot: RulesSnapshot,
  action: Action,
  call: ExotelCall,
  at: Date,
  offered: string[],
  opts: { fallback?: boolean } = {},
): DialTrace {
  const tried = new Set(triedInRequest(call));
  const given = new Set(offered);
  const skipped: DialTrace['skipped'] = [];
  const left = (number: string) => {
    if (tried.has(number)) skipped.push({ number, why: 'tried in this call (DialWhomNumber or Legs)' });
    else if (!given.has(number)) skipped.push({ number, why: opts.fallback ? 'not offered' : NOT_OFFERED });
  };
  if (!('dialGroup' in action)) {
    for (const n of 'numbers' in action ? action.numbers : []) left(n);
    return { group: null, strategy: 'numbers', order: "the flow's numbers, as listed", sticky: null, skipped, offered };
  }
  const group = snapshot.dialGroups.get(action.dialGroup);
  if (!group) return { group: action.dialGroup, strategy: 'unknown', order: 'the group is not loaded', sticky: null, skipped, offered };
  for (const m of group.members) {
    if (!m.active) {
      skipped.push({ number: m.number, why: 'inactive (switched off in the group)' });
      continue;
    }
    if (m.schedule) {
      const shift = snapshot.schedules.get(m.schedule);
      if (!shift) {
        skipped.push({ number: m.number, why: `off shift: schedule '${m.schedule}' is not loaded` });
        continue;
      }
      const { open, reason, localTime } = openAt(shift, at);
      if (!open) {
        skipped.push({ number: m.number, why: `off shift: ${m.schedule} is closed at ${localTime}: ${reason}` });
        continue;
      }
    }
    left(m.number);
  }
  const caller = call.callFrom?.e164;
  const sticky = !group.sticky?.enabled
    ? null
    : caller
      ? `on: ${caller}'s last connected agent within ${group.sticky.lookbackDays} days, if any, goes first`
      : 'on, but the caller number is unknown: not applied';
  const order = opts.fallback ? `${ORDER[group.strategy]}; without dial state: plain priority order, busy agents not known` : ORDER[group.strategy];
  return { group: group.slug, strategy: group.strategy, order, sticky, skipped, offered };
}
