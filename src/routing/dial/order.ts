import type { DialGroup, Member } from '../../schemas/dial-group.js';
import type { ScheduleRules } from '../../schemas/schedule.js';
import { isOpen } from '../schedule.js';

/** Members that may be offered now: active, and inside their shift when they have one. */
export function availableMembers(group: Pick<DialGroup, 'members'>, schedules: Map<string, ScheduleRules>, at: Date): Member[] {
  return group.members.filter((m) => {
    if (!m.active) return false;
    if (!m.schedule) return true;
    const shift = schedules.get(m.schedule);
    return shift ? isOpen(shift, at) : false;
  });
}

/** Lower priority first; equal priorities by number (code units: the same on every machine). */
export const byPriority = (a: Pick<Member, 'priority' | 'number'>, b: Pick<Member, 'priority' | 'number'>) =>
  a.priority - b.priority || (a.number < b.number ? -1 : a.number > b.number ? 1 : 0);

/** Weighted random order without replacement: each draw picks a remaining member with probability ∝ weight. */
export function weightedOrder(members: Member[], random: () => number): Member[] {
  const left = [...members];
  const out: Member[] = [];
  while (left.length > 0) {
    const total = left.reduce((s, m) => s + m.weight, 0);
    let r = random() * total;
    let i = 0;
    while (i < left.length - 1 && r >= left[i]!.weight) r -= left[i++]!.weight;
    out.push(left.splice(i, 1)[0]!);
  }
  return out;
}

/**
 * How a call's order is chosen at its first request (docs/contract.md §3), as far as it needs no shared
 * state: `base` is the members by priority for `sequential`, `parallel`, `round_robin` and
 * `least_recent`, shuffled for `random`, drawn by weight for `weighted`. Postgres finishes it with
 * the state all instances share (dial_offer() in prisma/functions/dial_answer.sql):
 * `rotate` starts `base` at the group's round-robin position, `least_recent` puts the members
 * dialed longest ago first (never dialed before them, ties by priority), and with sticky the
 * caller's last connected agent goes first.
 */
export interface OrderPlan {
  base: string[];
  arrange: 'as_is' | 'rotate' | 'least_recent';
}

export function orderPlan(group: Pick<DialGroup, 'strategy'>, members: Member[], random: () => number): OrderPlan {
  const sorted = [...members].sort(byPriority);
  const numbers = (ms: Member[]) => ms.map((m) => m.number);
  switch (group.strategy) {
    case 'round_robin':
      return { base: numbers(sorted), arrange: 'rotate' };
    case 'least_recent':
      return { base: numbers(sorted), arrange: 'least_recent' };
    case 'random':
      return {
        base: numbers(
          weightedOrder(
            sorted.map((m) => ({ ...m, weight: 1 })),
            random,
          ),
        ),
        arrange: 'as_is',
      };
    case 'weighted':
      return { base: numbers(weightedOrder(sorted, random)), arrange: 'as_is' };
    default:
      return { base: numbers(sorted), arrange: 'as_is' };
  }
}
