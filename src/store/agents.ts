import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { DateTime } from 'luxon';
import type { Agent, Availability, AvailabilityInput, Offer } from '../schemas/agent.js';
import type { ScheduleRules } from '../schemas/schedule.js';
import { DomainError, InvalidFieldError, NotFoundError } from '../errors.js';
import { agentView, membershipsOf, type AgentFacts, type Membership } from '../routing/agents.js';
import { RULES_CHANNEL, type Actor } from './audit.js';
import { inTransaction, QUERY_TIMEOUT_MS, withQueryTimeout } from './database.js';

/**
 * Agents: every number that is a member of a dial group. Availability (away/available) is routing
 * data, announced like the rules so every instance's snapshot follows; the facts the dial path
 * keeps (busy, wrap-up, missed offers, pause) and the offers made are read here for the admin API
 * and the metrics. Plain SQL on the pool: the phone path (a passthru callback) must not start Prisma.
 */

export class NoAgentError extends DomainError {
  constructor(number: string) {
    super(404, `${number} is no member of any dial group; add it to a group first`);
  }
}

const AVAILABILITY_COLUMNS = 'status, reason, until, set_by AS "setBy", set_at AS "setAt"';

/** Every availability row, by number (for the rules snapshot; given up after `queryTimeoutMs`, if given). */
export async function loadAvailability(db: pg.Pool | pg.PoolClient, queryTimeoutMs?: number): Promise<Map<string, Availability>> {
  const { rows } = await db.query<Availability & { number: string }>(
    withQueryTimeout(`SELECT number, ${AVAILABILITY_COLUMNS} FROM agent_availability`, queryTimeoutMs),
  );
  return new Map(rows.map(({ number, ...a }) => [number, a]));
}

/** The audit entries of the changes one setter (a call) made to an agent, within a day of an instant: SQL, with their placeholders. */
const changesBy = (p: { number: string; setBy: string; at: string }) =>
  `audit_entries e WHERE e.at > ${p.at}::timestamptz - interval '1 day' AND e.entity = 'agent' AND e.entity_id = ${p.number}
     AND e.action = 'set-availability' AND e.after ->> 'setBy' = ${p.setBy}`;
/**
 * Sets an agent's availability in one statement, under the agent's lock: the row, the audit entry,
 * and the NOTIFY that makes every instance reload it. `toggle` (the phone action) flips what is
 * stored, atomically, so two calls at once flip twice. A change made `once` (by one call: $8) is made once however often the
 * call repeats its request (Exotel retrying, or polling twice), also after another call changed it
 * in between: a repeat (a toggle after any change of the call, or the status the call set last)
 * changes nothing and no row comes back; the call may still set the other status. Concurrent
 * repeats are caught by the row's set_by and status (read under the row lock), later ones by the
 * call's last audit entry of the last day (a call lasts hours at most; read by the index on
 * entity_id and at). Set available, the agent's pause is lifted and its count of missed offers
 * starts again; so is a wrap-up, and a busy state whose end never came (a lost `free` event): the
 * legs of the agent's offers that no end event closed count as ended, so that the end of the next
 * call's leg does not make the agent busy on one of them again (dial_agent_event()). The audit
 * entry's `after` then says, under `ended`, what of these was in force and is over: `paused` (until,
 * reason), `wrapUpUntil`, `onCall` (since, callSid; also one past AGENT_BUSY_TTL_SECONDS, which the
 * agents API already shows as over), named as GET /admin/agents names them; left out when none was.
 */
const SET_SQL = `
WITH prev AS (
  SELECT ${AVAILABILITY_COLUMNS} FROM agent_availability WHERE number = $1
), next AS (
  INSERT INTO agent_availability AS a (number, status, reason, until, set_by, set_at)
  VALUES ($1, CASE WHEN $2 = 'toggle' THEN 'away' ELSE $2 END, $3, $4, $5, $6)
  ON CONFLICT (number) DO UPDATE SET
    status = CASE WHEN $2 <> 'toggle' THEN $2
                  WHEN a.status = 'away' AND (a.until IS NULL OR a.until > $6) THEN 'available' ELSE 'away' END,
    reason = EXCLUDED.reason, until = EXCLUDED.until, set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at
  WHERE NOT $8::boolean
     OR ((a.set_by <> EXCLUDED.set_by OR ($2 <> 'toggle' AND a.status <> $2))
         AND NOT EXISTS (SELECT FROM (SELECT e.after FROM ${changesBy({ number: '$1', setBy: '$5', at: '$6' })} ORDER BY e.at DESC, e.id DESC LIMIT 1) last
                          WHERE $2 = 'toggle' OR last.after ->> 'status' = $2))
  RETURNING ${AVAILABILITY_COLUMNS}
), cleared AS (
  INSERT INTO agent_states AS s (number, misses_since, updated_at)
  SELECT $1, $6, $6 WHERE (SELECT status FROM next) = 'available'
  ON CONFLICT (number) DO UPDATE SET misses_since = EXCLUDED.misses_since, paused_until = NULL, paused_reason = NULL,
    busy = false, busy_since = NULL, busy_call_sid = NULL, wrap_up_until = NULL, updated_at = $6
), was AS (
  -- the statement's snapshot: agent_states as it was before cleared
  SELECT * FROM agent_states WHERE number = $1 AND (SELECT status FROM next) = 'available'
), ended AS (
  SELECT COALESCE(CASE WHEN w.paused_until > $6 THEN jsonb_build_object('paused', jsonb_build_object('until', w.paused_until, 'reason', w.paused_reason)) END, '{}')
      || COALESCE(CASE WHEN w.wrap_up_until > $6 THEN jsonb_build_object('wrapUpUntil', w.wrap_up_until) END, '{}')
      || COALESCE(CASE WHEN w.busy THEN jsonb_build_object('onCall', jsonb_build_object('since', w.busy_since, 'callSid', w.busy_call_sid)) END, '{}') AS what
    FROM was w
), legs_over AS (
  UPDATE agent_offers SET end_events = dial_events
   WHERE number = $1 AND dial_events > end_events AND (SELECT status FROM next) = 'available'
), audit AS (
  INSERT INTO audit_entries (api_key_id, action, entity, entity_id, before, after)
  SELECT $7::uuid, 'set-availability', 'agent', $1, (SELECT to_jsonb(p) FROM prev p),
         to_jsonb(n) || COALESCE((SELECT jsonb_build_object('ended', e.what) FROM ended e WHERE e.what <> '{}'), '{}') FROM next n
)
SELECT n.*, (SELECT to_jsonb(p) FROM prev p) AS before, pg_notify('${RULES_CHANNEL}', 'agent:' || $1) AS notified FROM next n`;

/** An agent's advisory lock, as the dial functions take it before they write the agent's rows. */
const LOCK_AGENT = 'SELECT pg_advisory_xact_lock(1634168436, hashtext($1))';

export type AvailabilityMode = 'toggle' | 'available' | 'away';

/** What a change did: the availability before (null: never set) and after. */
export interface AvailabilityChange {
  before: Availability | null;
  after: Availability;
  /** a repeat of the call that made `after`: nothing was written */
  repeat?: boolean;
}

type JsonAvailability = Omit<Availability, 'until' | 'setAt'> & { until: string | null; setAt: string };

export async function writeAvailability(
  pool: pg.Pool,
  change: {
    number: string;
    mode: AvailabilityMode;
    reason: string | null;
    until: Date | null;
    setBy: string;
    apiKeyId: string | null;
    at: Date;
    /** set by one call (`setBy`): its repeats change nothing */
    once: boolean;
  },
  /** written within this many ms, or not at all (Postgres cancels it; see `withinMs`) */
  withinMs?: number,
  queryTimeoutMs = QUERY_TIMEOUT_MS,
): Promise<AvailabilityChange> {
  const query: pg.QueryConfig = {
    name: 'set-availability',
    text: SET_SQL,
    values: [change.number, change.mode, change.reason, change.until, change.setBy, change.at, change.apiKeyId, change.once],
  };
  // The agent's lock first (prisma/functions/dial_answer.sql's 'agnt', held to commit), so that
  // changes of one agent take turns and each reads, in a snapshot taken after the lock, the one
  // before it: its `before` (CDR, audit) is then what it changed.
  const statements = [{ name: 'lock-agent', text: LOCK_AGENT, values: [change.number] }, query];
  const { rows } = await within<Availability & { before: JsonAvailability | null; notified: unknown }>(pool, withinMs, statements, queryTimeoutMs);
  if (rows.length === 0) {
    // A repeat of the call that set it: as that call left it (the row, or its audit entry when
    // another call has changed it since). Read after the transaction, and given up as its statements are.
    const set = await pool.query<{ after: JsonAvailability }>(
      withQueryTimeout(
        {
          text: `SELECT e.after FROM ${changesBy({ number: '$1', setBy: '$2', at: '$3' })} ORDER BY e.at DESC, e.id DESC LIMIT 1`,
          values: [change.number, change.setBy, change.at],
        },
        queryTimeoutMs,
      ),
    );
    const after = set.rows[0]
      ? fromJson(set.rows[0].after)
      : (
          await pool.query<Availability>(
            withQueryTimeout({ text: `SELECT ${AVAILABILITY_COLUMNS} FROM agent_availability WHERE number = $1`, values: [change.number] }, queryTimeoutMs),
          )
        ).rows[0]!;
    return { before: after, after, repeat: true };
  }
  const { before, notified: _n, ...after } = rows[0]!;
  return { before: before && fromJson(before), after };
}

/**
 * Statements in one transaction, the last one's result. With `ms`, Postgres cancels any of them that
 * would run past `ms` from now (statement_timeout, set again to the time left before each one: it
 * counts per statement), so that a write the caller has given up on is not committed after all: a
 * caller who answers "not saved" must not find it saved. Not covered: the COMMIT itself (Postgres
 * stops the timeout before it), which stalls only with the disk; the caller's own timer, a little
 * later, answers then, and a Postgres that does not answer at all. With `ms`, two round trips per
 * statement besides BEGIN and COMMIT: for the phone's rare write, not the dial path. Every statement,
 * BEGIN to COMMIT, is given up after `queryTimeoutMs` (as the dial statements are): on a connection
 * that died without a word (a failover) the transaction otherwise held its pool connection, and the
 * agent's lock on a live server, until the kernel gave the connection up, about 15 minutes.
 */
async function within<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  ms: number | undefined,
  statements: pg.QueryConfig[],
  queryTimeoutMs: number,
): Promise<pg.QueryResult<R>> {
  const deadline = performance.now() + (ms ?? 0);
  const bounded = (statement: pg.QueryConfig) => withQueryTimeout(statement, queryTimeoutMs);
  return inTransaction(
    pool,
    'BEGIN',
    async (client) => {
      let result: pg.QueryResult<R> | undefined;
      for (const statement of statements) {
        if (ms !== undefined) {
          const left = Math.floor(deadline - performance.now());
          if (left < 1) throw new Error(`the ${Math.round(ms)} ms for the write were spent before it could ${result ? 'finish' : 'start'}`);
          await client.query(bounded({ text: `SET LOCAL statement_timeout = ${left}` }));
        }
        result = await client.query<R>(bounded(statement));
      }
      return result!;
    },
    queryTimeoutMs,
  );
}

/** An availability from its audit entry's JSON (an `after` also says what it `ended`, which is no part of it). */
const fromJson = ({ ended: _ended, ...a }: JsonAvailability & { ended?: unknown }): Availability => ({
  ...a,
  until: a.until === null ? null : new Date(a.until),
  setAt: new Date(a.setAt),
});

/** PUT /admin/agents/:number/availability: checked, then written; 404 for a number in no group. */
export async function setAvailability(pool: pg.Pool, actor: Actor, number: string, input: AvailabilityInput, at: Date): Promise<AvailabilityChange> {
  const until = input.until ? new Date(input.until) : null;
  if (until && input.status !== 'away') throw new InvalidFieldError('body/until', 'only an away status has an until; leave it out');
  if (until && until.getTime() <= at.getTime()) {
    throw new InvalidFieldError('body/until', `${input.until} is not in the future; give a later instant, or leave it out to stay away until set back`);
  }
  const { rowCount } = await pool.query('SELECT 1 FROM dial_group_members WHERE number = $1 LIMIT 1', [number]);
  if (!rowCount) throw new NoAgentError(number);
  actor.announce?.(`agent:${number}`); // SET_SQL's NOTIFY
  return writeAvailability(pool, {
    number,
    mode: input.status,
    reason: input.reason ?? null,
    until,
    setBy: `api-key:${actor.apiKeyId ?? 'none'}`,
    apiKeyId: actor.apiKeyId,
    at,
    once: false,
  });
}

type FactsRow = AgentFacts & { number: string };
type CountsRow = { number: string; group: string | null; offers: number; answers: number; misses: number };

/** The admin API counts an agent's missed offers in a row up to this many (each read stays bounded). */
const MISSED_OFFERS_COUNTED_UP_TO = 1000;

/**
 * The facts of the numbers `numbers` (a query) selects: a number without an agent_states row may
 * still have missed offers. Without `withMisses` (the metrics, which need only the state) they are
 * not counted and read as 0.
 */
const factsSql = (numbers: string, withMisses: boolean) => `SELECT n.number, COALESCE(s.busy, false) AS busy, s.busy_since AS "busySince",
  s.busy_call_sid AS "busyCallSid", s.wrap_up_until AS "wrapUpUntil",
  ${withMisses ? `agent_missed_offers(n.number, ${MISSED_OFFERS_COUNTED_UP_TO})` : '0'} AS "missedOffers",
  s.paused_until AS "pausedUntil", s.paused_reason AS "pausedReason"
  FROM (${numbers}) AS n(number) LEFT JOIN agent_states s ON s.number = n.number`;
// A failed offer (the carrier or network) is not the agent's miss: agent_missed_offers() agrees.
const MISSED = `('no-answer', 'busy')`;

/** The facts of these numbers, by number; their missed offers are not counted. */
async function loadStates(pool: pg.Pool, numbers: string[], timeoutMs?: number): Promise<Map<string, AgentFacts>> {
  // With a timeout, a stalled server fails the query, and the pool drops that connection.
  const { rows } = await pool.query<FactsRow>(withQueryTimeout({ text: factsSql('SELECT unnest($1::text[])', false), values: [numbers] }, timeoutMs));
  return new Map(rows.map(({ number, ...f }) => [number, f]));
}

/**
 * Every agent (or the one given) with its state now and its offers, answers and misses today: since
 * local midnight of `at`'s date in `timezone`, which the answer gives with that zone's offset;
 * only those in `state` now, and only the members of `group` (404 for a group that does not exist),
 * when given. Shifts are judged with the schedules given (the rules snapshot's).
 */
export async function listAgents(
  pool: pg.Pool,
  opts: { number?: string; timezone: string; at: Date; busyExpired: Date; schedules: Map<string, ScheduleRules>; state?: string; group?: string },
): Promise<Agent[]> {
  const agents = await allAgents(pool, opts);
  const chosen = agents.filter(
    (a) => (opts.state === undefined || a.state === opts.state) && (opts.group === undefined || a.groups.some((g) => g.slug === opts.group)),
  );
  if (opts.group !== undefined && chosen.length === 0 && !(await pool.query('SELECT 1 FROM dial_groups WHERE slug = $1', [opts.group])).rowCount) {
    throw new NotFoundError('dial-group', opts.group);
  }
  return chosen;
}

async function allAgents(
  pool: pg.Pool,
  opts: { number?: string; timezone: string; at: Date; busyExpired: Date; schedules: Map<string, ScheduleRules> },
): Promise<Agent[]> {
  const midnight = DateTime.fromJSDate(opts.at, { zone: opts.timezone }).startOf('day');
  const since = midnight.toISO({ suppressMilliseconds: true })!;
  const one = opts.number !== undefined;
  const where = one ? 'WHERE m.number = $1' : '';
  const args = one ? [opts.number] : [];
  const [members, availability, facts, counts] = await Promise.all([
    pool.query<{ number: string; slug: string; name: string | null; active: boolean; schedule: string | null }>(
      `SELECT m.number, g.slug, m.name, m.active, m.schedule_slug AS schedule
         FROM dial_group_members m JOIN dial_groups g ON g.id = m.group_id ${where} ORDER BY m.number, g.slug`,
      args,
    ),
    pool.query<Availability & { number: string }>(`SELECT number, ${AVAILABILITY_COLUMNS} FROM agent_availability ${one ? 'WHERE number = $1' : ''}`, args),
    pool.query<FactsRow>(factsSql(one ? 'SELECT $1::text' : 'SELECT DISTINCT number FROM dial_group_members', true), args),
    // By the group that made each offer (the metrics' label), summed for the agent below.
    pool.query<CountsRow>(
      `SELECT number, group_slug AS "group", count(*)::int AS offers, (count(*) FILTER (WHERE outcome = 'answered'))::int AS answers,
              (count(*) FILTER (WHERE outcome IN ${MISSED}))::int AS misses
         FROM agent_offers WHERE offered_at >= $${args.length + 1} ${one ? 'AND number = $1' : ''} GROUP BY number, group_slug`,
      [...args, midnight.toJSDate()],
    ),
  ]);
  const groups = new Map<string, Membership[]>();
  for (const m of members.rows) (groups.get(m.number) ?? groups.set(m.number, []).get(m.number)!).push(m);
  const availabilityOf = new Map(availability.rows.map(({ number, ...a }) => [number, a]));
  const factsOf = new Map(facts.rows.map(({ number, ...f }) => [number, f]));
  const countsOf = new Map<string, CountsRow[]>();
  for (const c of counts.rows) (countsOf.get(c.number) ?? countsOf.set(c.number, []).get(c.number)!).push(c);
  const sum = (rows: CountsRow[]) => ({
    offers: rows.reduce((n, c) => n + c.offers, 0),
    answers: rows.reduce((n, c) => n + c.answers, 0),
    misses: rows.reduce((n, c) => n + c.misses, 0),
  });
  return [...groups].map(([number, memberships]) => {
    const c = countsOf.get(number) ?? [];
    const view = agentView({
      number,
      memberships,
      availability: availabilityOf.get(number) ?? null,
      facts: factsOf.get(number) ?? null,
      schedules: opts.schedules,
      at: opts.at,
      busyExpired: opts.busyExpired,
    });
    return {
      ...view,
      groups: view.groups.map((g) => ({ ...g, today: sum(c.filter((x) => x.group === g.slug)) })),
      today: { since, ...sum(c) },
    };
  });
}

/** The agent's latest offers, newest first. */
export async function recentOffers(pool: pg.Pool, number: string, limit: number): Promise<Offer[]> {
  const { rows } = await pool.query<Offer>(
    `SELECT call_sid AS "callSid", NULLIF(flow_slug, '') AS "flow", group_slug AS "group", offered_at AS "offeredAt", outcome, ended_at AS "endedAt"
       FROM agent_offers WHERE number = $1 ORDER BY offered_at DESC LIMIT $2`,
    [number, limit],
  );
  return rows;
}

/** Agents by state now: each once, and each member of each group as that group sees it. */
export interface AgentStateCounts {
  byState: Map<string, number>;
  /**
   * By group slug: its members by the state that group sees (inactive and off_shift by that
   * group's own switch and shift, the others the agent's own), so an agent in two groups counts in each.
   */
  byGroup: Map<string, Map<string, number>>;
}

/**
 * Agents by state now, for the metrics: members and availability from the rules snapshot, the
 * dial path's facts from one query.
 */
export async function countAgentStates(
  pool: pg.Pool,
  snapshot: {
    dialGroups: Map<string, { slug: string; members: Array<{ number: string; name: string | null; active: boolean; schedule: string | null }> }>;
    availability: Map<string, Availability>;
    schedules: Map<string, ScheduleRules>;
  },
  at: Date,
  busyExpired: Date,
  timeoutMs?: number,
): Promise<AgentStateCounts> {
  const memberships = membershipsOf(snapshot.dialGroups.values());
  const facts = await loadStates(pool, [...memberships.keys()], timeoutMs);
  const byState = new Map<string, number>();
  const byGroup = new Map<string, Map<string, number>>([...snapshot.dialGroups.values()].map((g) => [g.slug, new Map()]));
  const add = (counts: Map<string, number>, state: string) => counts.set(state, (counts.get(state) ?? 0) + 1);
  for (const [number, ms] of memberships) {
    const stateIn = (memberships: Membership[]) =>
      agentView({
        number,
        memberships,
        availability: snapshot.availability.get(number) ?? null,
        facts: facts.get(number) ?? null,
        schedules: snapshot.schedules,
        at,
        busyExpired,
      }).state;
    add(byState, stateIn(ms));
    for (const m of ms) add(byGroup.get(m.slug)!, stateIn([m]));
  }
  return { byState, byGroup };
}
