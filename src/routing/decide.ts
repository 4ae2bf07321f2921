import type { Action, Conditions, Flow, RuleTrace } from '../schemas/flow.js';
import { enumValue, type ExotelCall } from '../exotel/params.js';
import type { RulesSnapshot } from './snapshot.js';
import { openAt } from './schedule.js';
import type { AvailabilityOutcome } from './own-availability.js';
import type { DialTrace } from './dial/answer.js';

export type DecidedBy = 'rule' | 'otherwise' | 'onError';

export interface Decision {
  action: Action;
  decidedBy: DecidedBy;
  matchedRule: string | null;
  /** Why onError was answered, when it was. */
  error: string | null;
  trace: RuleTrace[];
  /** An availability action (passthru): whose, and from what to what. */
  availability?: AvailabilityOutcome;
  /** A dial decision: the tier offered and who was passed over, and why. */
  dial?: DialTrace;
}

type ConditionTrace = RuleTrace['conditions'][number];
type Lookup = Pick<RulesSnapshot, 'vipLists' | 'schedules'>;

class MissingReference extends Error {}

function vipMember(rules: Lookup, slug: string, call: ExotelCall, now: number): { held: boolean; why: string } {
  const list = rules.vipLists.get(slug);
  if (!list) throw new MissingReference(`vip-list '${slug}' is not loaded`);
  const caller = call.callFrom?.e164;
  if (!caller) return { held: false, why: `caller number unknown (${call.callFrom?.raw ?? 'not sent'})` };
  const entry = list.get(caller);
  if (!entry) return { held: false, why: `${caller} is not in ${slug}` };
  if (entry.expiresAt !== null && entry.expiresAt <= now) {
    return { held: false, why: `${caller}'s entry in ${slug} expired at ${new Date(entry.expiresAt).toISOString()}` };
  }
  return { held: true, why: `${caller} is in ${slug}` };
}

/** Whether the schedule is open, and why, at the schedule's own clock (which is the server's, not Exotel's CurrentTime). */
function scheduleOpen(rules: Lookup, slug: string, at: Date): { open: boolean; why: string } {
  const schedule = rules.schedules.get(slug);
  if (!schedule) throw new MissingReference(`schedule '${slug}' is not loaded`);
  const { open, reason, localTime } = openAt(schedule, at);
  return { open, why: `${slug} is ${open ? 'open' : 'closed'} at ${localTime}: ${reason}` };
}

/** Whether a value is in a rule's list, as a trace says it: the one value itself, or how many there are. */
function inList(held: boolean, list: string[]): string {
  if (list.length === 1) return `${held ? 'is' : 'is not'} '${list[0]}'`;
  return `${held ? 'is one' : 'is none'} of the ${list.length} listed`;
}

function textMatch(value: string | null, m: { equals: string } | { in: string[] } | { prefix: string }, what: string): { held: boolean; why: string } {
  if (value === null) return { held: false, why: `no ${what} sent` };
  if ('equals' in m) return { held: value === m.equals, why: `${what} '${value}' ${value === m.equals ? '=' : '≠'} '${m.equals}'` };
  if ('in' in m) {
    const held = m.in.includes(value);
    return { held, why: `${what} '${value}' ${inList(held, m.in)}` };
  }
  const held = value.startsWith(m.prefix);
  return { held, why: `${what} '${value}' ${held ? 'starts' : 'does not start'} with '${m.prefix}'` };
}

/** Evaluates every condition of a rule (all, not just up to the first failure, so the trace is complete). */
function evaluate(rules: Lookup, when: Conditions, call: ExotelCall, at: Date): ConditionTrace[] {
  const out: ConditionTrace[] = [];
  const now = at.getTime();
  if (when.callerIn !== undefined) out.push({ condition: `callerIn ${when.callerIn}`, ...vipMember(rules, when.callerIn, call, now) });
  if (when.callerNotIn !== undefined) {
    const r = vipMember(rules, when.callerNotIn, call, now);
    out.push({ condition: `callerNotIn ${when.callerNotIn}`, held: !r.held, why: r.why });
  }
  if (when.openBy !== undefined) {
    const { open, why } = scheduleOpen(rules, when.openBy, at);
    out.push({ condition: `openBy ${when.openBy}`, held: open, why });
  }
  if (when.closedBy !== undefined) {
    const { open, why } = scheduleOpen(rules, when.closedBy, at);
    out.push({ condition: `closedBy ${when.closedBy}`, held: !open, why });
  }
  if (when.digits !== undefined) {
    const what = call.digitsFromFirstRequest ? "digits (of the call's first request)" : 'digits';
    out.push({ condition: 'digits', ...textMatch(call.digits, when.digits, what) });
  }
  if (when.callerPrefix !== undefined) {
    const caller = call.callFrom?.e164 ?? null;
    const prefix = caller === null ? undefined : when.callerPrefix.find((p) => caller.startsWith(p));
    out.push({
      condition: 'callerPrefix',
      held: prefix !== undefined,
      why: caller === null ? 'caller number unknown' : prefix ? `${caller} starts with ${prefix}` : `${caller} has none of the prefixes`,
    });
  }
  if (when.calledNumber !== undefined) {
    const called = call.callTo?.e164 ?? null;
    const held = called !== null && when.calledNumber.includes(called);
    out.push({ condition: 'calledNumber', held, why: called === null ? 'called number unknown' : `${called} ${held ? 'is' : 'is not'} listed` });
  }
  if (when.direction !== undefined) {
    // A rule's value normalised as the parser normalises the call's ('No Answer ' → 'no-answer').
    const want = enumValue(when.direction);
    const held = want !== null && call.direction === want;
    out.push({ condition: `direction ${when.direction}`, held, why: `direction is ${call.direction ?? 'not sent'}` });
  }
  if (when.customField !== undefined) out.push({ condition: 'customField', ...textMatch(call.customField, when.customField, 'CustomField') });
  if (when.dialCallStatus !== undefined) {
    const status = call.dialCallStatus;
    const held = status !== null && when.dialCallStatus.some((s) => enumValue(s) === status);
    out.push({ condition: 'dialCallStatus', held, why: `DialCallStatus is ${status ?? 'not sent'}` });
  }
  return out;
}

/**
 * The decision for one callback: the first rule whose conditions all hold, else `otherwise`;
 * `onError` when a rule cannot be evaluated. Pure: snapshot + call + clock in, answer + trace out.
 */
export function decide(rules: Lookup, flow: Flow, call: ExotelCall, at: Date): Decision {
  const trace: RuleTrace[] = [];
  let matched: number | null = null;
  try {
    flow.rules.forEach((rule, index) => {
      if (matched !== null) {
        trace.push({ index, name: rule.name, result: 'not evaluated', conditions: [] });
        return;
      }
      const conditions = evaluate(rules, rule.when, call, at);
      const ok = conditions.every((c) => c.held);
      if (ok) matched = index;
      trace.push({ index, name: rule.name, result: ok ? 'matched' : 'not matched', conditions });
    });
  } catch (err) {
    return { action: flow.onError, decidedBy: 'onError', matchedRule: null, error: `rule evaluation failed: ${(err as Error).message}`, trace };
  }
  if (matched !== null) {
    const rule = flow.rules[matched]!;
    return { action: rule.then, decidedBy: 'rule', matchedRule: rule.name, error: null, trace };
  }
  return { action: flow.otherwise, decidedBy: 'otherwise', matchedRule: null, error: null, trace };
}
