import type { ExotelCall } from '../../exotel/params.js';
import type { Action } from '../../schemas/flow.js';
import type { RulesSnapshot, StoredDialGroup } from '../snapshot.js';
import { busyExpiredAt, isAway } from '../agents.js';
import { isOpen } from '../schedule.js';
import { orderPlan, type OrderPlan } from './order.js';
import { eventPacing } from './event.js';

const DAY_MS = 86_400_000;

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
  /** how the call's first request fixes its order: of every member, also those who may not be offered now */
  plan: OrderPlan;
  /** `rotate`: the dial group whose round-robin position the call takes */
  rrGroup: string | null;
  /**
   * sticky groups: the caller's last agent connected after `since` goes first. With tiers, each tier
   * has its own group's window (`extra.tiers`, `stickySince`); this then holds the caller and the
   * widest of those windows (null when no tier is sticky or the caller is unknown).
   */
  sticky: { caller: string; since: Date } | null;
  /** DialCallStatus=completed: the caller was connected to this agent (for sticky) */
  connected: { caller: string; agent: string } | null;
  at: Date;
  /** an agent reported busy before this counts as free again (AGENT_BUSY_TTL_SECONDS, or the longest call a group allows: busyExpiredAt) */
  busyExpired: Date;
  /** overflow tiers and the attempt reported: the SQL type dial_extra (absent: one tier, nothing reported) */
  extra?: DialExtra;
}

/** A group's pacing of its agents: wrap-up after a call, pause after missed offers. */
export type Pacing = Pick<StoredDialGroup, 'wrapUpSeconds' | 'maxMissedOffers' | 'missedPauseSeconds'>;
const NO_PACING: Pacing = { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 0 };

/** What issue 26 adds to a request (dial_extra in prisma/functions/dial_answer.sql). */
export interface DialExtra {
  /**
   * `dialGroups`: each tier's end in `plan.base` (exclusive), arrangement and group, and its group's
   * sticky window (null: the group is not sticky, or the caller is unknown); null: one tier
   */
  tiers: Array<{ group: string; end: number; arrange: OrderPlan['arrange']; rrGroup: string | null; stickySince: Date | null }> | null;
  /** the attempt the request reports (DialWhomNumber with a DialCallStatus that ends an offer) */
  reported: { agent: string; status: 'completed' | 'no-answer' | 'busy' | 'failed'; group: string | null; pacing: Pacing } | null;
  /**
   * each tier's group, in order (one for a single group; [] for a list of numbers): the call stores
   * them. Null only in requests of the version before, which Postgres cannot tell from a group's, so
   * a list sends [] and a call whose action turns from a group to a list (a rule on DialCallStatus,
   * the flow edited) is offered the list's numbers
   */
  tierGroups: string[] | null;
}

/** What Postgres answers a request: dial_offer() in prisma/functions/dial_answer.sql. */
export interface DialOffer {
  numbers: string[];
  /** the tier offered (from 0); null for a repeated poll */
  tier?: number | null;
  /** number → why it was passed over: tried in this call, busy, wrapping up, paused after missed offers */
  skipped?: Record<string, 'tried' | 'busy' | 'wrap-up' | 'paused'>;
  /** how the attempt this request reported ended, when this request recorded it */
  reported?: { agent: string; group: string | null; outcome: string; offered: boolean } | null;
  /** a repeated poll of an attempt: its stored answer */
  repeat?: boolean;
}

/** Why a member was not a candidate: decided here, from the snapshot (Postgres adds busy, wrap-up, paused, tried). */
export type SkipReason = 'inactive' | 'off shift' | 'away';
export interface Skip {
  number: string;
  group: string;
  why: SkipReason;
}

/** A group's members that may be offered now, and why the others may not (switched off, off shift, away). */
export function candidatesOf(group: StoredDialGroup, snapshot: Pick<RulesSnapshot, 'schedules' | 'availability'>, at: Date) {
  const members: StoredDialGroup['members'] = [];
  const skipped: Skip[] = [];
  for (const m of group.members) {
    const shift = m.schedule ? snapshot.schedules.get(m.schedule) : undefined;
    const why: SkipReason | null = !m.active
      ? 'inactive'
      : m.schedule && !(shift && isOpen(shift, at))
        ? 'off shift'
        : isAway(snapshot.availability.get(m.number), at)
          ? 'away'
          : null;
    if (why) skipped.push({ number: m.number, group: group.slug, why });
    else members.push(m);
  }
  return { members, skipped };
}

/** The groups a dial action rings, in tier order ([] for a list of numbers); throws for one not loaded. */
export function groupsOf(snapshot: Pick<RulesSnapshot, 'dialGroups'>, action: Action): StoredDialGroup[] {
  const slugs = 'dialGroup' in action ? [action.dialGroup] : 'dialGroups' in action ? action.dialGroups : [];
  return slugs.map((slug) => {
    const group = snapshot.dialGroups.get(slug);
    if (!group) throw new Error(`dial-group '${slug}' is not loaded`);
    return group;
  });
}

const ENDS_AN_OFFER = new Set(['completed', 'no-answer', 'busy', 'failed']);

/**
 * The attempt a re-fetch reports (DialWhomNumber, DialCallStatus): how the offer to that agent
 * ended, and the pacing of the group it was offered from (`groupOf`: the tier the agent is in now;
 * Postgres takes the group whose tier in the call offered it when the two differ); offered by no
 * group (a flow's list of numbers), `unGrouped`'s group and pacing, the ones its dial events apply
 * (the agent's only group, else none, and the strictest pacing), so that the offer is stored under
 * the group the metrics count it under, as an offer of the list that its dial events record.
 * `failed` ends the offer but is no miss (the carrier or network; dial_offer_ended() in
 * prisma/functions/dial_answer.sql); `canceled` (the caller hung up) and other statuses say
 * nothing about the agent. Postgres records it only for an agent the call was offered.
 */
export function reportedAttempt(
  call: ExotelCall,
  groupOf: (number: string) => StoredDialGroup | null,
  unGrouped?: (number: string) => { group: string | null; pacing: Pacing },
): DialExtra['reported'] {
  const agent = call.dialWhomNumber?.e164;
  const status = call.dialCallStatus;
  if (!agent || !status || !ENDS_AN_OFFER.has(status)) return null;
  const group = groupOf(agent);
  const listed = group ? null : unGrouped?.(agent);
  return {
    agent,
    status: status as NonNullable<DialExtra['reported']>['status'],
    group: group?.slug ?? listed?.group ?? null,
    pacing: group
      ? { wrapUpSeconds: group.wrapUpSeconds, maxMissedOffers: group.maxMissedOffers, missedPauseSeconds: group.missedPauseSeconds }
      : (listed?.pacing ?? NO_PACING),
  };
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

/** Of tiers' sticky windows, the one reaching furthest back (null: none is sticky). */
function widest(windows: Array<DialRequest['sticky']>): DialRequest['sticky'] {
  let wide: DialRequest['sticky'] = null;
  for (const w of windows) if (w && (!wide || w.since < wide.since)) wide = w;
  return wide;
}

/** DialCallStatus=completed with both numbers known: the caller talked to this agent. */
export function connection(call: ExotelCall): DialRequest['connected'] {
  const caller = call.callFrom?.e164;
  const agent = call.dialWhomNumber?.e164;
  return call.dialCallStatus === 'completed' && caller && agent ? { caller, agent } : null;
}

/**
 * The request for one dial callback, from the snapshot, the flow's action, the call and the clock;
 * the dial group it rings (null for a list of numbers), and `groupOf`: the tier's group a member is
 * offered by (for a number in two tiers, the one it is placed in). Throws when the action names a
 * group the snapshot does not hold.
 */
export function dialRequest(
  snapshot: RulesSnapshot,
  action: Action,
  key: CallKey,
  call: ExotelCall,
  at: Date,
  opts: { busyTtlMs: number; random: () => number },
): {
  request: DialRequest;
  group: StoredDialGroup | null;
  groups: StoredDialGroup[];
  groupOf: (number: string) => StoredDialGroup | null;
  skipped: Skip[];
} {
  const groups = groupsOf(snapshot, action);
  const group = groups[0] ?? null;
  // Each tier's own group's sticky window: a caller who overflows to a sticky tier meets their last
  // agent first there, and a tier whose group is not sticky is arranged without it.
  const windows = groups.map((g) => stickyWindow(g, call, at));
  let candidates: string[];
  let plan: OrderPlan;
  let tiers: DialExtra['tiers'] = null;
  const skipped: Skip[] = [];
  if (groups.length > 0) {
    const available = groups.map((g) => candidatesOf(g, snapshot, at));
    for (const a of available) skipped.push(...a.skipped);
    // The order holds every member, also those who may not be offered now: the call offers them
    // once they may (back from away, shift started, switched on). A number in two tiers belongs to
    // the first whose membership is on duty (active, in its shift; the agent may be away), else to
    // the first that lists it; and it is a candidate only when that tier may offer it now.
    const onDuty =
      skipped.length === 0
        ? null
        : available.map((a) => new Set([...a.members.map((m) => m.number), ...a.skipped.filter((x) => x.why === 'away').map((x) => x.number)]));
    candidates = [];
    const base: string[] = [];
    tiers = [];
    for (const [i, g] of groups.entries()) {
      const members = g.members.filter((m) => !base.includes(m.number) && (!onDuty || onDuty[i]!.has(m.number) || !onDuty.some((d) => d.has(m.number))));
      for (const m of members) if (!onDuty || available[i]!.members.includes(m)) candidates.push(m.number);
      // Drawn for every request, used only by the call's first (which only Postgres can tell).
      const tierPlan = orderPlan(g, members, opts.random);
      base.push(...tierPlan.base);
      tiers.push({
        group: g.slug,
        end: base.length,
        arrange: tierPlan.arrange,
        rrGroup: tierPlan.arrange === 'rotate' ? g.slug : null,
        stickySince: windows[i]?.since ?? null,
      });
    }
    plan = { base, arrange: tiers.length === 1 ? tiers[0]!.arrange : 'as_is' };
    if (tiers.length === 1) tiers = null;
  } else if ('numbers' in action) {
    candidates = action.numbers;
    plan = { base: candidates, arrange: 'as_is' };
  } else {
    throw new Error('a dial flow action needs dialGroup, dialGroups or numbers');
  }
  const groupOf = (number: string): StoredDialGroup | null => {
    const at = groups.length > 0 ? plan.base.indexOf(number) : -1;
    if (at < 0) return null;
    return tiers === null ? groups[0]! : (groups[tiers.findIndex((tier) => at < tier.end)] ?? null);
  };
  const tried = triedInRequest(call);
  const request: DialRequest = {
    key,
    attemptKey: attemptKey(tried, call),
    tried,
    candidates,
    plan,
    rrGroup: group && tiers === null && plan.arrange === 'rotate' ? group.slug : null,
    sticky: tiers === null ? (windows[0] ?? null) : widest(windows),
    connected: connection(call),
    at,
    busyExpired: busyExpiredAt(snapshot.dialGroups, at, opts.busyTtlMs),
    // A list of numbers paces an agent it rang as its dial events do: by the strictest of the agent's groups.
    extra: {
      tiers,
      reported: reportedAttempt(call, groupOf, groups.length === 0 ? (number) => eventPacing(snapshot, number, null) : undefined),
      tierGroups: groups.map((g) => g.slug),
    },
  };
  return { request, group, groups, groupOf, skipped };
}

/**
 * Without Postgres or time: the numbers an action offers in plain order, minus what the request
 * says was tried (no rotation, no busy agents left out: those facts are in Postgres).
 */
export function fallbackNumbers(snapshot: RulesSnapshot, action: Action, call: ExotelCall, at: Date): { numbers: string[]; group: StoredDialGroup | null } {
  const tried = new Set(triedInRequest(call));
  if ('dialGroup' in action || 'dialGroups' in action) {
    const slugs = 'dialGroup' in action ? [action.dialGroup] : action.dialGroups;
    const groups = slugs.map((slug) => snapshot.dialGroups.get(slug)).filter((g): g is StoredDialGroup => g !== undefined);
    const numbers = [...new Set(groups.flatMap((g) => candidatesOf(g, snapshot, at).members.map((m) => m.number)))];
    return { numbers: numbers.filter((n) => !tried.has(n)), group: groups[0] ?? null };
  }
  return { numbers: 'numbers' in action ? action.numbers.filter((n) => !tried.has(n)) : [], group: null };
}
