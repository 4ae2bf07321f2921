import type { Agent, AgentGroup, AgentState, Availability } from '../schemas/agent.js';
import type { ScheduleRules } from '../schemas/schedule.js';
import { isOpen } from './schedule.js';

/** What the dial path records about an agent's phone (agent_states; the missed offers counted from agent_offers), as of one read. */
export interface AgentFacts {
  busy: boolean;
  busySince: Date | null;
  busyCallSid: string | null;
  wrapUpUntil: Date | null;
  missedOffers: number;
  pausedUntil: Date | null;
  pausedReason: string | null;
}

/** One dial-group membership of a number. */
export interface Membership {
  slug: string;
  name: string | null;
  active: boolean;
  schedule: string | null;
}

const ms = (v: Date | string | null) => (v === null ? null : v instanceof Date ? v.getTime() : Date.parse(v));

/** Away now: set away, and its `until` (if any) not yet passed. */
export function isAway(availability: Availability | undefined | null, at: Date): boolean {
  if (availability?.status !== 'away') return false;
  const until = ms(availability.until);
  return until === null || until > at.getTime();
}

/** Past the longest call a group's Connect settings allow, before a busy agent counts as free. */
const BUSY_MARGIN_MS = 60_000;
const longestCallMs = new WeakMap<object, number>();

/**
 * The instant before which an agent reported busy counts as free again (its `free` lost):
 * AGENT_BUSY_TTL_SECONDS (`ttlMs`) ago, or longer ago when a dial group's Connect settings allow a
 * longer call (ringing and conversation, and a minute), so that an agent on such a call is not
 * offered again before its `free`. The longest call is worked out once per snapshot's groups.
 */
export function busyExpiredAt(
  groups: Map<string, { connect: { maxRingingDuration: number; maxConversationDuration: number } }> | null,
  at: Date,
  ttlMs: number,
): Date {
  let longest = 0;
  if (groups) {
    const known = longestCallMs.get(groups);
    if (known === undefined) {
      for (const g of groups.values()) longest = Math.max(longest, (g.connect.maxRingingDuration + g.connect.maxConversationDuration) * 1000 + BUSY_MARGIN_MS);
      longestCallMs.set(groups, longest);
    } else {
      longest = known;
    }
  }
  return new Date(at.getTime() - Math.max(ttlMs, longest));
}

/** Every member number of the groups, with its memberships in group order. */
export function membershipsOf(
  groups: Iterable<{ slug: string; members: Array<{ number: string; name: string | null; active: boolean; schedule: string | null }> }>,
): Map<string, Membership[]> {
  const out = new Map<string, Membership[]>();
  for (const g of groups) {
    for (const m of g.members) {
      const list = out.get(m.number) ?? out.set(m.number, []).get(m.number)!;
      list.push({ slug: g.slug, name: m.name, active: m.active, schedule: m.schedule });
    }
  }
  return out;
}

/**
 * An agent as the admin API and the metrics show it: its groups (shift open or not), and its state
 * now from the facts the dial path keeps and the availability set for it. Pure.
 */
export function agentView(opts: {
  number: string;
  memberships: Membership[];
  availability: Availability | null;
  facts: AgentFacts | null;
  schedules: Map<string, ScheduleRules>;
  at: Date;
  /** a busy agent reported before this counts as free (busyExpiredAt) */
  busyExpired: Date;
}): Omit<Agent, 'today' | 'groups'> & { groups: AgentGroup[] } {
  const { facts, availability, at } = opts;
  const now = at.getTime();
  const groups = opts.memberships.map((m) => {
    const shift = m.schedule === null ? null : opts.schedules.get(m.schedule);
    return {
      slug: m.slug,
      active: m.active,
      schedule: m.schedule,
      onShift: m.schedule === null || (shift !== undefined && shift !== null && isOpen(shift, at)),
    };
  });
  const onCall =
    facts?.busy && facts.busySince && facts.busySince.getTime() > opts.busyExpired.getTime() ? { since: facts.busySince, callSid: facts.busyCallSid } : null;
  const away = isAway(availability, at) ? availability : null;
  const wrapUpUntil = facts?.wrapUpUntil && facts.wrapUpUntil.getTime() > now ? facts.wrapUpUntil : null;
  const paused = facts?.pausedUntil && facts.pausedUntil.getTime() > now ? { until: facts.pausedUntil, reason: facts.pausedReason ?? '' } : null;
  let state: AgentState;
  if (onCall) state = 'on_call';
  else if (away) state = 'away';
  else if (wrapUpUntil) state = 'wrapping_up';
  else if (paused) state = 'paused';
  else if (!groups.some((g) => g.active)) state = 'inactive';
  else if (!groups.some((g) => g.active && g.onShift)) state = 'off_shift';
  else state = 'available';
  return {
    number: opts.number,
    name: opts.memberships.find((m) => m.name !== null)?.name ?? null,
    state,
    groups,
    onCall,
    away,
    availability,
    wrapUpUntil,
    paused,
    missedOffers: facts?.missedOffers ?? 0,
  };
}
