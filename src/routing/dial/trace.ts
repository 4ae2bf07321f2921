import type { ExotelCall } from '../../exotel/params.js';
import type { Strategy } from '../../schemas/dial-group.js';
import type { StoredDialGroup } from '../snapshot.js';

const ORDER: Record<Strategy, string> = {
  sequential: 'members by priority',
  parallel: 'members by priority, rung all at once (parallel_ringing)',
  round_robin: "members by priority, starting at the group's round-robin position, which moves once per call",
  least_recent: 'the member dialed longest ago first (never dialed before them), ties by priority',
  random: "a random order, drawn at the call's first request",
  weighted: "a random order weighted by each member's weight, drawn at the call's first request",
};

/**
 * How the group offered orders its members, and what sticky does for this caller, in a support
 * lead's words: the policy half of a dial decision's trace (who was skipped and why is the other,
 * from dialTrace in answer.ts).
 */
export function dialPolicy(group: StoredDialGroup | null, call: ExotelCall): { strategy: string; order: string; sticky: string | null } {
  if (!group) return { strategy: 'numbers', order: "the flow's numbers, as listed", sticky: null };
  const caller = call.callFrom?.e164;
  const sticky = !group.sticky?.enabled
    ? null
    : caller
      ? `on: ${caller}'s last connected agent within ${group.sticky.lookbackDays} days, if any, goes first`
      : 'on, but the caller number is unknown: not applied';
  return { strategy: group.strategy, order: ORDER[group.strategy], sticky };
}
