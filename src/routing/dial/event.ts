import { DEFAULT_CONNECT } from '../../exotel/connect.js';
import type { RulesSnapshot, StoredDialGroup } from '../snapshot.js';
/** What one dial event (dial_passthru_event_url) says about the agent it names. */
export interface AgentEvent {
  /** Status busy → true, free → false, anything else → unknown (the agent's state is kept) */
  busy: boolean | null;
  /** the agent is being dialed now: least_recent counts from here */
  dialed: boolean;
  /** the agent answered: the caller is connected to it (sticky) */
  answered: boolean;
  /** the agent's leg ended (free, or Terminal): answered or missed, the offer is over */
  ended: boolean;
}

export function agentEvent(ev: { status: string | null; eventType: string | null }): AgentEvent {
  const busy = ev.status === 'busy' ? true : ev.status === 'free' ? false : null;
  const type = ev.eventType?.toLowerCase() ?? null;
  return { busy, dialed: busy === true && (type === null || type === 'dial'), answered: type === 'answered', ended: busy === false || type === 'terminal' };
}

/**
 * Beyond ringing: a leg that lasted longer than this was picked up (for accounts without Answered
 * events); short of it by as much, a parallel ring's leg ended early (another agent answered).
 */
const RING_SLACK_SECONDS = 5;

/**
 * Whose pacing a dial event applies, from the snapshot: the group exoroute named in the event URL
 * it handed Exotel (the tier offered), else, for an agent in several groups, the strictest of them
 * (longest wrap-up and pause, fewest misses). No group (a number in no group): no pacing, and
 * no member (its events are no agent's offers). The pacing group is always one of the agent's own:
 * the event URL's `group` is the caller's to send, so a name that is not the agent's group is not
 * taken for pacing. How the agent was rung (the ringing time, parallel or not) is the named group's
 * whoever the agent is: exoroute's Connect answer used that group's settings. `listed`: the URL names
 * a flow and no group, which exoroute's Connect answer of a list of numbers does: that answer rang
 * with the default Connect settings (DEFAULT_CONNECT), not any group's.
 */
export function eventPacing(snapshot: Pick<RulesSnapshot, 'dialGroups'> | null, agent: string, groupSlug: string | null, listed = false) {
  const named = groupSlug ? snapshot?.dialGroups.get(groupSlug) : undefined;
  const groups = named?.members.some((m) => m.number === agent)
    ? [named]
    : [...(snapshot?.dialGroups.values() ?? [])].filter((g) => g.members.some((m) => m.number === agent));
  if (groups.length === 0)
    return { member: false, group: null, ringSeconds: null, earlySeconds: null, pacing: { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 0 } };
  const misses = groups.map((g) => g.maxMissedOffers).filter((n) => n > 0);
  return {
    member: true,
    group: groups.length === 1 ? groups[0]!.slug : null,
    // The ring used the Connect settings of the group the URL names (whoever the agent is), or a list's.
    ringSeconds:
      (named?.connect.maxRingingDuration ?? (listed ? DEFAULT_CONNECT.maxRingingDuration : Math.max(...groups.map((g) => g.connect.maxRingingDuration)))) +
      RING_SLACK_SECONDS,
    earlySeconds: parallelEarlySeconds(named),
    pacing: {
      wrapUpSeconds: Math.max(...groups.map((g) => g.wrapUpSeconds)),
      maxMissedOffers: misses.length > 0 ? Math.min(...misses) : 0,
      missedPauseSeconds: Math.max(...groups.map((g) => g.missedPauseSeconds)),
    },
  };
}

/**
 * A parallel ring: exoroute's Connect answer asked Exotel to ring its numbers at once exactly when
 * the group it names in the events URL is `parallel` (src/routing/dial/answer.ts), whoever the
 * agent is. Exotel ends the other legs when one answers: a leg that ends unanswered sooner than
 * this was cut short, not missed (a decline looks the same). Null: not a parallel ring, or one at
 * a time (maxParallelAttempts 1), or the URL names no group (a list of numbers rings one by one).
 */
function parallelEarlySeconds(named: StoredDialGroup | undefined): number | null {
  if (named?.strategy !== 'parallel' || named.connect.maxParallelAttempts < 2) return null;
  return Math.max(0, named.connect.maxRingingDuration - RING_SLACK_SECONDS);
}
