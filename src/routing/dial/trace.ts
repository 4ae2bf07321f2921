import type { ExotelCall } from '../../exotel/params.js';
import type { Strategy } from '../../schemas/dial-group.js';
import type { StoredDialGroup } from '../snapshot.js';
import { count } from '../../lib/count.js';

/**
 * The policy half of a dial decision's trace (who was skipped and why is the other, from dialTrace in
 * answer.ts): the offered group's strategy ('numbers' for a list; the README says how each orders),
 * and sticky for this caller. Short, because every dial CDR stores it: a sentence per CDR cost the
 * dial path a few percent of its throughput (bench/README.md, issue 26).
 */
export function dialPolicy(group: StoredDialGroup | null, call: ExotelCall): { strategy: Strategy | 'numbers'; sticky: string | null } {
  if (!group) return { strategy: 'numbers', sticky: null };
  if (!group.sticky?.enabled) return { strategy: group.strategy, sticky: null };
  // the caller's last connected agent within the lookback goes first, if there is one
  return { strategy: group.strategy, sticky: call.callFrom?.e164 ? `last ${count(group.sticky.lookbackDays, 'day')}` : 'off: caller unknown' };
}
