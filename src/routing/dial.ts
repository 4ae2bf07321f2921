import type { DialGroup, Member } from '../schemas/dial-group.js';
import type { ScheduleRules } from '../schemas/schedule.js';
import { isOpen } from './schedule.js';

/** What exoroute knows of an agent's phone (from dial events). */
export interface AgentFacts {
  busy: boolean;
  /** epoch ms */
  busySince: number | null;
  lastDialedAt: number | null;
}

/** Members that may be offered now: active, and inside their shift when they have one. */
export function availableMembers(group: Pick<DialGroup, 'members'>, schedules: Map<string, ScheduleRules>, at: Date): Member[] {
  return group.members.filter((m) => {
    if (!m.active) return false;
    if (!m.schedule) return true;
    const shift = schedules.get(m.schedule);
    return shift ? isOpen(shift, at) : false;
  });
}

const byPriority = (a: Member, b: Member) => a.priority - b.priority || a.number.localeCompare(b.number);

/** Weighted random order without replacement: each draw picks a remaining member with probability ∝ weight. */
function weightedOrder(members: Member[], random: () => number): Member[] {
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
 * The order in which to offer a group's members for one call (SPEC §3): `sequential` and
 * `parallel` by priority; `round_robin` by priority rotated by the shared position; `random`
 * shuffled; `weighted` random by weight; `least_recent` dialed longest ago first. With sticky, the
 * caller's last connected agent goes first.
 */
export function orderMembers(
  group: Pick<DialGroup, 'strategy'>,
  members: Member[],
  opts: { rrPosition: number; random: () => number; facts: Map<string, AgentFacts>; stickyAgent: string | null },
): string[] {
  const sorted = [...members].sort(byPriority);
  let ordered: Member[];
  switch (group.strategy) {
    case 'round_robin': {
      const k = sorted.length === 0 ? 0 : opts.rrPosition % sorted.length;
      ordered = [...sorted.slice(k), ...sorted.slice(0, k)];
      break;
    }
    case 'random':
      ordered = weightedOrder(sorted.map((m) => ({ ...m, weight: 1 })), opts.random);
      break;
    case 'weighted':
      ordered = weightedOrder(sorted, opts.random);
      break;
    case 'least_recent': {
      const last = (m: Member) => opts.facts.get(m.number)?.lastDialedAt ?? -Infinity;
      ordered = [...sorted].sort((a, b) => last(a) - last(b) || byPriority(a, b));
      break;
    }
    default:
      ordered = sorted;
  }
  const numbers = ordered.map((m) => m.number);
  if (opts.stickyAgent && numbers.includes(opts.stickyAgent)) {
    return [opts.stickyAgent, ...numbers.filter((n) => n !== opts.stickyAgent)];
  }
  return numbers;
}

/** Busy state expires when no `free` event arrives within the TTL. */
export function isBusy(facts: AgentFacts | undefined, now: number, busyTtlMs: number): boolean {
  return !!facts?.busy && facts.busySince !== null && now - facts.busySince < busyTtlMs;
}

/** Numbers of `order` still to offer: not tried in this call, and not busy now. */
export function remaining(order: string[], tried: Set<string>, facts: Map<string, AgentFacts>, now: number, busyTtlMs: number): string[] {
  return order.filter((n) => !tried.has(n) && !isBusy(facts.get(n), now, busyTtlMs));
}
