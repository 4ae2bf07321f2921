/**
 * dial_answer() (prisma/functions/dial_answer.sql), through src/store/dial-state.ts: the one
 * function call per Dial Whom / Connect callback, alone or in a batch (dial_offer_batch()).
 * Checked against the TypeScript it replaced (`reference` below: the order and availability rules
 * as they were written in TypeScript before issue 6) over random groups, agent facts, sticky
 * connections and attempts; and for concurrency. The migrations that led there are tested at the end.
 */
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import fc from 'fast-check';
import pg from 'pg';
import { createTestDatabase, lockWaiters, migratedDatabase, seeded, silencingPool } from '../helper.js';
import { applyMigrations } from '../../src/store/migrate.js';
import { firstDigitsOf } from '../../src/store/cdrs.js';
import { byPriority, orderPlan, weightedOrder } from '../../src/routing/dial/order.js';
import type { DialRequest as AttemptRequest, CallKey, DialOffer } from '../../src/routing/dial/request.js';
import {
  answerAttempt,
  arrayLiteral,
  asDialExtra,
  asDialRequest,
  dialAnswerer,
  DialRequestAbandoned,
  offerAttempt,
  previewAttempt,
  recordDialEvent,
} from '../../src/store/dial-state.js';
import type { FastifyBaseLogger } from 'fastify';
import type { Member, Strategy } from '../../src/schemas/dial-group.js';

const SEED = Number(process.env.FUZZ_SEED) || 20261123;
const RUN_SCALE = Number(process.env.FUZZ_RUNS_SCALE) || 1;

const DAY = 86_400_000;
const TTL = 3_600_000;
const AT = new Date('2026-11-23T10:00:00.000Z');
const NUMBERS = ['+919811100001', '+919811100002', '+919811100003', '+919811100004', '+919811100005', '+919811100006'];

// --- The rules as TypeScript had them before they moved into dial_answer() ---------------------------

interface AgentFacts {
  busy: boolean;
  busySince: number | null;
  lastDialedAt: number | null;
}

const reference = {
  /** Round robin from a position: the order, and how many positions of members held back were passed over (taken too). */
  rrTurn(sorted: Member[], held: Set<string>, position: number): { ordered: Member[]; passed: number } {
    const turns = sorted.filter((m) => !held.has(m.number));
    const heldBack = sorted.filter((m) => held.has(m.number));
    if (turns.length === 0) return { ordered: heldBack, passed: 0 };
    const start = position % sorted.length;
    let passed = 0;
    while (held.has(sorted[(start + passed) % sorted.length]!.number)) passed++;
    const k = turns.indexOf(sorted[(start + passed) % sorted.length]!);
    return { ordered: [...turns.slice(k), ...turns.slice(0, k), ...heldBack], passed };
  },
  orderMembers(
    strategy: Strategy,
    members: Member[],
    opts: { rrPosition: number; random: () => number; facts: Map<string, AgentFacts>; stickyAgent: string | null; held?: Set<string> },
  ): string[] {
    const sorted = [...members].sort(byPriority);
    let ordered: Member[];
    switch (strategy) {
      case 'round_robin': {
        // the members who may be offered take turns: the turn is the member's at the position, or,
        // held back (busy, tried), the next one's after them; those held back follow, by priority
        ordered = reference.rrTurn(sorted, opts.held ?? new Set<string>(), opts.rrPosition).ordered;
        break;
      }
      case 'random':
        ordered = weightedOrder(
          sorted.map((m) => ({ ...m, weight: 1 })),
          opts.random,
        );
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
  },
  isBusy(facts: AgentFacts | undefined, now: number): boolean {
    return !!facts?.busy && facts.busySince !== null && now - facts.busySince < TTL;
  },
  remaining(order: string[], tried: Set<string>, facts: Map<string, AgentFacts>, now: number): string[] {
    return order.filter((n) => !tried.has(n) && !reference.isBusy(facts.get(n), now));
  },
};

// --- Scenarios -----------------------------------------------------------------------------------------

const STRATEGIES: Strategy[] = ['sequential', 'parallel', 'round_robin', 'least_recent', 'random', 'weighted'];

const factArb = fc.option(
  fc.record({
    busy: fc.boolean(),
    busySince: fc.option(fc.constantFrom(-10_000, -TTL + 1, -TTL, -TTL - 1, -5 * TTL), { nil: null }),
    // few distinct values, so that least_recent meets ties
    lastDialedAt: fc.option(fc.constantFrom(-3 * DAY, -DAY, -60_000, -1), { nil: null }),
  }),
  { nil: undefined },
);

const scenarioArb = fc.record({
  strategy: fc.constantFrom(...STRATEGIES),
  members: fc.uniqueArray(
    fc.record({ number: fc.constantFrom(...NUMBERS), priority: fc.integer({ min: 0, max: 2 }), weight: fc.integer({ min: 1, max: 5 }) }),
    { selector: (m) => m.number, minLength: 0, maxLength: 6 },
  ),
  facts: fc.array(factArb, { minLength: NUMBERS.length, maxLength: NUMBERS.length }),
  rrPosition: fc.integer({ min: 0, max: 40 }),
  sticky: fc.option(
    fc.record({
      lookbackDays: fc.integer({ min: 1, max: 30 }),
      connections: fc.array(fc.tuple(fc.constantFrom(...NUMBERS), fc.integer({ min: 0, max: 40 })), { maxLength: 4 }),
    }),
    { nil: null },
  ),
  seed: fc.integer(),
  // each request: which numbers it says were tried, its DialCallStatus, and members that went off duty since
  requests: fc.array(
    fc.record({
      tried: fc.subarray(NUMBERS),
      status: fc.constantFrom('', 'no-answer', 'busy', 'failed', 'completed'),
      offDuty: fc.subarray(NUMBERS, { maxLength: 2 }),
    }),
    { minLength: 1, maxLength: 4 },
  ),
});
type Scenario = typeof scenarioArb extends fc.Arbitrary<infer S> ? S : never;

const CALLER = '+919800000001';

/** A group's rotation sequence: dial_group_rr_<md5 of its slug> (migration 20261210017900). */
const rrSequence = (slug: string) => `dial_group_rr_${createHash('md5').update(slug).digest('hex')}`;

/** A group's round-robin position: the next value of its sequence. */
async function rrPosition(pool: pg.Pool, slug = 'sales'): Promise<number> {
  const { rows } = await pool.query<{ next: string }>(`SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next FROM ${rrSequence(slug)}`);
  return Number(rows[0]!.next);
}

async function setRrPosition(pool: pg.Pool, position: number, slug = 'sales'): Promise<void> {
  await pool.query('SELECT setval($1, $2, false)', [rrSequence(slug), position]);
}

async function seed(pool: pg.Pool, s: Scenario) {
  await pool.query('TRUNCATE agent_states, caller_agents, dial_calls, dial_answers');
  await setRrPosition(pool, s.rrPosition);
  for (const [i, f] of s.facts.entries()) {
    if (!f) continue;
    await pool.query('INSERT INTO agent_states (number, busy, busy_since, last_dialed_at, updated_at) VALUES ($1, $2, $3, $4, $5)', [
      NUMBERS[i],
      f.busy,
      f.busySince === null ? null : new Date(AT.getTime() + f.busySince),
      f.lastDialedAt === null ? null : new Date(AT.getTime() + f.lastDialedAt),
      AT,
    ]);
  }
  // connected_at apart by a millisecond at least: no ties for Postgres to break
  for (const [i, [agent, daysAgo]] of (s.sticky?.connections ?? []).entries()) {
    await pool.query(
      `INSERT INTO caller_agents (caller, agent, connected_at) VALUES ($1, $2, $3)
       ON CONFLICT (caller, agent) DO UPDATE SET connected_at = GREATEST(caller_agents.connected_at, EXCLUDED.connected_at)`,
      [CALLER, agent, new Date(AT.getTime() - daysAgo * DAY - 1000 - i)],
    );
  }
}

/** What the database holds, as the reference reads it. */
async function factsOf(pool: pg.Pool): Promise<Map<string, AgentFacts>> {
  const { rows } = await pool.query<{ number: string; busy: boolean; busy_since: Date | null; last_dialed_at: Date | null }>(
    'SELECT number, busy, busy_since, last_dialed_at FROM agent_states',
  );
  return new Map(rows.map((r) => [r.number, { busy: r.busy, busySince: r.busy_since?.getTime() ?? null, lastDialedAt: r.last_dialed_at?.getTime() ?? null }]));
}

async function stickyOf(pool: pg.Pool, agents: string[], lookbackDays: number): Promise<string | null> {
  const { rows } = await pool.query<{ agent: string }>(
    'SELECT agent FROM caller_agents WHERE caller = $1 AND agent = ANY($2::text[]) AND connected_at > $3 ORDER BY connected_at DESC, agent LIMIT 1',
    [CALLER, agents, new Date(AT.getTime() - lookbackDays * DAY)],
  );
  return rows[0]?.agent ?? null;
}

function requestOf(key: CallKey, s: Scenario, members: Member[], r: Scenario['requests'][number]): AttemptRequest {
  const tried = [...new Set(r.tried)].sort();
  return {
    key,
    attemptKey: `${tried.join(',')}|${r.status}`,
    tried,
    candidates: members.map((m) => m.number),
    plan: orderPlan({ strategy: s.strategy }, members, seeded(s.seed)),
    rrGroup: 'sales',
    sticky: s.sticky ? { caller: CALLER, since: new Date(AT.getTime() - s.sticky.lookbackDays * DAY) } : null,
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - TTL),
  };
}

t.test('dial_answer() answers as the TypeScript it replaced, request after request', async (t) => {
  const db = await migratedDatabase(t);
  const { pool } = db;
  await pool.query(`INSERT INTO dial_groups (slug, name, strategy, connect, updated_at) VALUES ('sales', 'Sales', 'round_robin', '{}', now())`);
  let call = 0;
  await fc.assert(
    fc.asyncProperty(scenarioArb, async (s) => {
      await seed(pool, s);
      const key = { callSid: `p${call++}`, endpoint: 'dial-whom', flowSlug: 'agents' };
      const all: Member[] = s.members.map((m) => ({ ...m, name: null, active: true, schedule: null }));
      const facts = await factsOf(pool);
      // The order is fixed at the first request, from the members it names (here: those on duty
      // then); a later request that names other members (added to or removed from the group during
      // the call) makes it again: the members it names in the order so far, then the new ones in
      // the later request's order.
      const first = all.filter((m) => !s.requests[0]!.offDuty.includes(m.number));
      const sticky = s.sticky
        ? await stickyOf(
            pool,
            first.map((m) => m.number),
            s.sticky.lookbackDays,
          )
        : null;
      const held = new Set(first.map((m) => m.number).filter((n) => s.requests[0]!.tried.includes(n) || reference.isBusy(facts.get(n), AT.getTime())));
      // Round robin takes its turn when the call is first offered someone: a first request that finds
      // nobody keeps the members by priority (no sticky agent yet) and leaves the turn to a later one.
      let waiting = s.strategy === 'round_robin' && first.every((m) => held.has(m.number));
      let passed = 0;
      let order = waiting
        ? [...first].sort(byPriority).map((m) => m.number)
        : reference.orderMembers(s.strategy, first, {
            rrPosition: s.strategy === 'round_robin' ? s.rrPosition : 0,
            random: seeded(s.seed),
            facts,
            stickyAgent: sticky,
            held,
          });
      if (s.strategy === 'round_robin' && !waiting) passed = 1 + reference.rrTurn([...first].sort(byPriority), held, s.rrPosition).passed;
      const tried = new Set<string>();
      const answers = new Map<string, string[]>();
      for (const r of s.requests) {
        const members = all.filter((m) => !r.offDuty.includes(m.number));
        const req = requestOf(key, s, members, r);
        const base = req.plan.base;
        if (base.length !== order.length || base.some((n) => !order.includes(n))) {
          order = [...order.filter((n) => base.includes(n)), ...base.filter((n) => !order.includes(n))];
        }
        for (const n of req.tried) tried.add(n);
        const available = new Set(req.candidates);
        const free = reference.remaining(
          order.filter((n) => available.has(n)),
          tried,
          facts,
          AT.getTime(),
        );
        if (waiting && !answers.get(req.attemptKey)?.length && free.length > 0) {
          // the turn, now: of the members by priority, those who may not be offered now held back
          const sorted = [...members].sort(byPriority);
          const turn = reference.rrTurn(sorted, new Set(base.filter((n) => !free.includes(n))), s.rrPosition);
          order = turn.ordered.map((m) => m.number);
          const now = s.sticky ? await stickyOf(pool, req.candidates, s.sticky.lookbackDays) : null;
          if (now) order = [now, ...order.filter((n) => n !== now)];
          passed = 1 + turn.passed;
          waiting = false;
        }
        // a stored answer is repeated, an empty one answered afresh
        const stored = answers.get(req.attemptKey);
        const expected = stored?.length
          ? stored
          : reference.remaining(
              order.filter((n) => available.has(n)),
              tried,
              facts,
              AT.getTime(),
            );
        answers.set(req.attemptKey, expected);
        const preview = (await previewAttempt(pool, req)).numbers;
        const got = await answerAttempt(pool, req);
        if (JSON.stringify(got) !== JSON.stringify(expected) || JSON.stringify(preview) !== JSON.stringify(got)) {
          throw new Error(
            `request ${JSON.stringify(r)}: got ${JSON.stringify(got)}, preview ${JSON.stringify(preview)}, expected ${JSON.stringify(expected)} (order ${JSON.stringify(order)})`,
          );
        }
      }
      const advanced = (await rrPosition(pool)) - s.rrPosition;
      // one position for the call once it was offered someone, and one for each member held back that its turn passed over
      if (advanced !== passed) throw new Error(`the rotation advanced by ${advanced}, not ${passed}`);
    }),
    { seed: SEED, numRuns: Math.round(150 * RUN_SCALE) },
  );
  t.pass('every request answered as before');
});

t.test('a simulation changes nothing; a completed connection is remembered for sticky', async (t) => {
  const db = await migratedDatabase(t);
  const { pool } = db;
  await pool.query(`INSERT INTO dial_groups (slug, name, strategy, connect, updated_at) VALUES ('sales', 'Sales', 'round_robin', '{}', now())`);
  const members: Member[] = NUMBERS.slice(0, 3).map((number, i) => ({ number, priority: i, weight: 1, name: null, active: true, schedule: null }));
  const s = { strategy: 'round_robin', sticky: { lookbackDays: 7, connections: [] }, seed: 1 } as unknown as Scenario;
  const req = (callSid: string, r: Scenario['requests'][number], connected: AttemptRequest['connected'] = null) => ({
    ...requestOf({ callSid, endpoint: 'connect', flowSlug: 'agents' }, s, members, r),
    connected,
  });

  const snapshot = async () => ({
    rr: await rrPosition(pool),
    ...(
      await pool.query(`SELECT
    (SELECT count(*) FROM dial_calls) AS calls,
    (SELECT sum((SELECT count(*) FROM jsonb_object_keys(answers))) FROM dial_calls) AS answers,
    (SELECT count(*) FROM caller_agents) AS connections`)
    ).rows[0],
  });
  const before = await snapshot();
  t.same(
    (await previewAttempt(pool, { ...req('x1', { tried: [], status: '', offDuty: [] }), connected: { caller: CALLER, agent: NUMBERS[1]! } })).numbers,
    NUMBERS.slice(0, 3),
  );
  t.same(await snapshot(), before, 'no row written, the rotation did not move');

  t.same(await answerAttempt(pool, req('x1', { tried: [], status: '', offDuty: [] })), NUMBERS.slice(0, 3));
  t.same(await answerAttempt(pool, req('x1', { tried: [NUMBERS[2]!], status: 'completed', offDuty: [] }, { caller: CALLER, agent: NUMBERS[2]! })), [
    NUMBERS[0],
    NUMBERS[1],
  ]);
  t.same(
    await answerAttempt(pool, req('x2', { tried: [], status: '', offDuty: [] })),
    [NUMBERS[2], NUMBERS[1], NUMBERS[0]],
    'the next call of the caller starts with the agent it was connected to, then the rotation (second, third, first)',
  );
});

t.test('concurrent requests of one new call: one order, one answer per attempt, the rotation moves once', async (t) => {
  const db = await migratedDatabase(t);
  const { pool } = db;
  await pool.query(`INSERT INTO dial_groups (slug, name, strategy, connect, updated_at) VALUES ('sales', 'Sales', 'round_robin', '{}', now())`);
  for (let round = 0; round < 10; round++) {
    const members: Member[] = NUMBERS.map((number) => ({ number, priority: 0, weight: 1, name: null, active: true, schedule: null }));
    const s = { strategy: round % 2 ? 'random' : 'round_robin', sticky: null, seed: round } as unknown as Scenario;
    const key = { callSid: `c${round}`, endpoint: 'dial-whom', flowSlug: 'agents' };
    const before = await rrPosition(pool);
    // identical first polls, each with its own random draw, and re-fetches racing them
    const firsts = Array.from({ length: 8 }, (_, i) =>
      answerAttempt(pool, requestOf(key, { ...s, seed: round * 100 + i }, members, { tried: [], status: '', offDuty: [] })),
    );
    const refetches = Array.from({ length: 4 }, () =>
      answerAttempt(pool, requestOf(key, s, members, { tried: [NUMBERS[2]!], status: 'no-answer', offDuty: [] })),
    );
    const [a, b] = [await Promise.all(firsts), await Promise.all(refetches)];
    t.equal(new Set(a.map((x) => x.join())).size, 1, `round ${round}: one answer to the first attempt`);
    t.equal(new Set(b.map((x) => x.join())).size, 1, `round ${round}: one answer to the re-fetch`);
    t.same(
      b[0],
      a[0]!.filter((n) => n !== NUMBERS[2]),
      'both follow the one order',
    );
    const after = await rrPosition(pool);
    // once for the call, not per poll; and once more when a racing re-fetch fixed the order and the
    // turn passed over the number it reported tried (held back: its position is taken too)
    if (s.strategy === 'round_robin') t.ok(after - before === 1 || after - before === 2, `the rotation advanced once for the call (${after - before})`);
    else t.equal(after - before, 0, 'the rotation did not move');
  }
});

/** Dial state as a list, to compare two databases by. */
async function dialState(pool: pg.Pool) {
  const {
    rows: [state],
  } = await pool.query(`SELECT
    (SELECT json_agg(c ORDER BY c.call_sid, c.endpoint, c.flow_slug) FROM (SELECT call_sid, endpoint, flow_slug, "order", tried, answers FROM dial_calls) c) AS calls,
    (SELECT json_agg(x ORDER BY x.caller, x.agent) FROM (SELECT caller, agent, connected_at FROM caller_agents) x) AS connections`);
  return { ...state, rr: await rrPosition(pool) };
}

/** A pool whose queries are counted: the database behind it is real. */
function countingPool(pool: pg.Pool): { pool: pg.Pool; statements: () => number } {
  let n = 0;
  const query = (...args: unknown[]) => {
    n++;
    return (pool.query as (...a: unknown[]) => unknown)(...args);
  };
  const counted = { query } as unknown as pg.Pool;
  return { pool: counted, statements: () => n };
}

t.test('a batch answers each request as it would be answered alone, in its order', async (t) => {
  const alone = await migratedDatabase(t);
  const batched = await migratedDatabase(t);
  for (const db of [alone, batched]) {
    await db.pool.query(`INSERT INTO dial_groups (slug, name, strategy, connect, updated_at) VALUES ('sales', 'Sales', 'round_robin', '{}', now())`);
  }
  const counted = countingPool(batched.pool);
  const answer = dialAnswerer(counted.pool);
  // requests of up to three calls, interleaved; a completed one may report its connection
  const requestsArb = fc.array(
    fc.record({
      call: fc.integer({ min: 0, max: 2 }),
      r: fc.record({ tried: fc.subarray(NUMBERS), status: fc.constantFrom('', 'no-answer', 'completed'), offDuty: fc.subarray(NUMBERS, { maxLength: 2 }) }),
      connects: fc.boolean(),
    }),
    { minLength: 2, maxLength: 12 },
  );
  let run = 0;
  await fc.assert(
    fc.asyncProperty(scenarioArb, requestsArb, async (s, list) => {
      for (const db of [alone, batched]) await seed(db.pool, s);
      const all: Member[] = s.members.map((m) => ({ ...m, name: null, active: true, schedule: null }));
      const requests = list.map(({ call, r, connects }, i) => {
        const members = all.filter((m) => !r.offDuty.includes(m.number));
        // each request draws its own plan, as callbacks do: only the call's first one counts
        const req = requestOf({ callSid: `b${run}-${call}`, endpoint: 'connect', flowSlug: 'agents' }, { ...s, seed: s.seed + i }, members, r);
        return r.status === 'completed' && connects && req.tried.length > 0 ? { ...req, connected: { caller: CALLER, agent: req.tried[0]! } } : req;
      });
      run++;
      const expected: string[][] = [];
      for (const req of requests) expected.push(await answerAttempt(alone.pool, req));
      const before = counted.statements();
      const got = await Promise.all(requests.map((req) => answer(req).then((a) => a.numbers)));
      const statements = counted.statements() - before;
      if (statements !== 2) throw new Error(`${requests.length} requests took ${statements} statements, not 2 (the first alone, the rest as one batch)`);
      if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`batched ${JSON.stringify(got)}, alone ${JSON.stringify(expected)}`);
      const [a, b] = [await dialState(alone.pool), await dialState(batched.pool)];
      if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`dial state: batched ${JSON.stringify(b)}, alone ${JSON.stringify(a)}`);
    }),
    { seed: SEED, numRuns: Math.round(60 * RUN_SCALE) },
  );
  t.pass('the same answers and the same state');
});

t.test("a batch's arrays go as array literals: any text, and NULLs, read back as they were", async (t) => {
  const db = await migratedDatabase(t);
  const odd = ['+919811100001', '', 'NULL', 'null', 'a b', ' lead', 'trail ', 'x,y', '{z}', 'q"uote', 'back\\slash', 'tab\there', 'ünï', "it's", '"'];
  const item = { tried: arrayLiteral(odd), tier_groups: arrayLiteral(['sales', null]), tier_ends: arrayLiteral([3, 5]), base: arrayLiteral([]) };
  const { rows } = await db.pool.query<{ tried: string[]; tier_groups: (string | null)[]; tier_ends: number[]; base: string[] }>(
    'SELECT r.tried, r.tier_groups, r.tier_ends, r.base FROM json_populate_recordset(NULL::dial_batch_request, $1::json) AS r',
    [JSON.stringify([item])],
  );
  t.same(rows, [{ tried: odd, tier_groups: ['sales', null], tier_ends: [3, 5], base: [] }]);
});

t.test('a batch records the attempts its requests report as they would be recorded one by one', async (t) => {
  const alone = await migratedDatabase(t);
  const batched = await migratedDatabase(t);
  for (const db of [alone, batched]) {
    await db.pool.query(`INSERT INTO dial_groups (slug, name, strategy, connect, updated_at) VALUES ('sales', 'Sales', 'sequential', '{}', now())`);
  }
  const counted = countingPool(batched.pool);
  const answer = dialAnswerer(counted.pool);
  const members = NUMBERS.slice(0, 4);
  // re-fetches of up to four calls, each reporting how the offer to one agent ended; an agent may
  // be reported more than once in a batch, and may or may not have a state row yet
  const reportsArb = fc.array(
    fc.record({
      call: fc.integer({ min: 0, max: 3 }),
      agent: fc.constantFrom(...members),
      status: fc.constantFrom('no-answer', 'busy', 'failed', 'completed'),
      known: fc.boolean(),
    }),
    { minLength: 2, maxLength: 8 },
  );
  const pacingArb = fc.record({
    wrapUpSeconds: fc.constantFrom(0, 30),
    maxMissedOffers: fc.integer({ min: 0, max: 3 }),
    missedPauseSeconds: fc.constantFrom(60, 300),
  });
  let run = 0;
  await fc.assert(
    fc.asyncProperty(reportsArb, pacingArb, fc.array(fc.constantFrom(...members), { maxLength: 4 }), async (list, pacing, stateRows) => {
      run++;
      for (const db of [alone, batched]) {
        await db.pool.query('TRUNCATE agent_states, agent_offers, caller_agents, dial_calls');
        for (const n of new Set(stateRows)) {
          // a state row, and a miss before, which counts toward a pause
          await db.pool.query('INSERT INTO agent_states (number, updated_at) VALUES ($1, $2)', [n, AT]);
          await db.pool.query(`INSERT INTO agent_offers (call_sid, number, offered_at, outcome, ended_at) VALUES ('before', $1, $2, 'no-answer', $2)`, [
            n,
            new Date(AT.getTime() - 60_000),
          ]);
        }
      }
      const requests: AttemptRequest[] = list.map((r, i) => {
        const at = new Date(AT.getTime() + i * 1000);
        return {
          key: { callSid: `rep${run}-${r.call}`, endpoint: 'connect', flowSlug: 'agents' },
          attemptKey: `${r.agent}|${r.status}|${i}`,
          tried: [r.agent],
          candidates: members,
          plan: { base: members, arrange: 'as_is' },
          rrGroup: null,
          sticky: null,
          connected: null,
          at,
          busyExpired: new Date(at.getTime() - TTL),
          extra: { tiers: null, reported: { agent: r.agent, status: r.status as 'no-answer', group: r.known ? 'sales' : null, pacing }, tierGroups: null },
        };
      });
      const expected: DialOffer[] = [];
      for (const req of requests) expected.push(await offerAttempt(alone.pool, req));
      const before = counted.statements();
      const got = await Promise.all(requests.map((req) => answer(req)));
      if (counted.statements() - before !== 2) throw new Error('not one request alone and one batch');
      if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`batched ${JSON.stringify(got)}, alone ${JSON.stringify(expected)}`);
      const state = async (pool: pg.Pool) =>
        (
          await pool.query(
            `SELECT
            (SELECT json_agg(s ORDER BY s.number) FROM (SELECT number, misses_since, paused_until, paused_reason, wrap_up_until, updated_at FROM agent_states) s) AS agents,
            (SELECT json_agg(agent_missed_offers(m, 1000) ORDER BY m) FROM unnest($1::text[]) AS m) AS missed,
            (SELECT json_agg(o ORDER BY o.call_sid, o.number) FROM (SELECT call_sid, number, group_slug, offered_at, outcome, ended_at FROM agent_offers) o) AS offers`,
            [members],
          )
        ).rows[0];
      const [a, b] = [await state(alone.pool), await state(batched.pool)];
      if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`agent state: batched ${JSON.stringify(b)}, alone ${JSON.stringify(a)}`);
    }),
    { seed: SEED, numRuns: Math.round(60 * RUN_SCALE) },
  );
  t.pass('the same answers, outcomes, misses, pauses and wrap-ups');
});

t.test('a batch that fails is retried request by request: a bad request fails alone', async (t) => {
  const db = await migratedDatabase(t);
  const counted = countingPool(db.pool);
  const warnings: string[] = [];
  const log = { warn: (_: unknown, msg: string) => warnings.push(msg) } as unknown as FastifyBaseLogger;
  const statements: Array<[number, boolean]> = [];
  const answer = dialAnswerer(counted.pool, {
    log,
    onBatch: (size, seconds, ok) => {
      t.ok(seconds >= 0);
      statements.push([size, ok]);
    },
  });
  const request = (callSid: string): AttemptRequest => ({
    key: { callSid, endpoint: 'connect', flowSlug: 'agents' },
    attemptKey: '|',
    tried: [],
    candidates: NUMBERS.slice(0, 3),
    plan: { base: NUMBERS.slice(0, 3), arrange: 'as_is' },
    rrGroup: null,
    sticky: null,
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - TTL),
  });
  // f1 goes alone; f2, f3 and f4 wait for it and go as one batch, which f3 (no CallSid) fails
  const results = await Promise.allSettled([answer(request('f1')), answer(request('f2')), answer(request(null as unknown as string)), answer(request('f4'))]);
  t.match(results, [
    { status: 'fulfilled', value: { numbers: NUMBERS.slice(0, 3) } },
    { status: 'fulfilled', value: { numbers: NUMBERS.slice(0, 3) } },
    { status: 'rejected', reason: { message: /null value in column "call_sid"/ } },
    { status: 'fulfilled', value: { numbers: NUMBERS.slice(0, 3) } },
  ]);
  t.equal(counted.statements(), 5, 'f1, the batch, then f2, f3 and f4 one by one');
  t.same(warnings, ['dial batch failed; answering its requests one by one'], 'the failed batch is logged');
  t.same(
    statements,
    [
      [1, true],
      [3, false],
    ],
    'reported (metrics): f1 alone, answered; the batch, failed',
  );
  const { rows } = await db.pool.query<{ call_sid: string; answers: object }>('SELECT call_sid, answers FROM dial_calls ORDER BY call_sid');
  t.same(
    rows,
    ['f1', 'f2', 'f4'].map((sid) => ({ call_sid: sid, answers: { '|': NUMBERS.slice(0, 3) } })),
    'each good request answered and stored once',
  );
});

t.test('Postgres down under load: the failed dial batches are one warning a second, not one per batch', async (t) => {
  // Each batch that failed logged a warning with its stack, on top of the onError answer of every
  // callback in it (its CDR and log line say so): during an outage, several lines a second.
  const warnings: Array<{ batchesFailed?: number }> = [];
  const log = { warn: (o: { batchesFailed?: number }) => warnings.push(o) } as unknown as FastifyBaseLogger;
  const refused = net.createServer((socket) => socket.destroy());
  await new Promise<void>((r) => refused.listen(0, '127.0.0.1', r));
  t.teardown(() => refused.close());
  const pool = new pg.Pool({ connectionString: `postgresql://x@127.0.0.1:${(refused.address() as net.AddressInfo).port}/x`, connectionTimeoutMillis: 1000 });
  pool.on('error', () => {});
  t.teardown(() => pool.end());
  const answer = dialAnswerer(pool, { log });
  const request = (callSid: string): AttemptRequest => ({
    key: { callSid, endpoint: 'connect', flowSlug: 'agents' },
    attemptKey: '|',
    tried: [],
    candidates: NUMBERS.slice(0, 3),
    plan: { base: NUMBERS.slice(0, 3), arrange: 'as_is' },
    rrGroup: null,
    sticky: null,
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - TTL),
  });
  // Each round: one request alone, the three that wait for it as one batch, which fails.
  for (let round = 0; round < 10; round++) {
    const results = await Promise.allSettled([0, 1, 2, 3].map((i) => answer(request(`down-${round}-${i}`))));
    t.ok(
      results.every((r) => r.status === 'rejected'),
      `round ${round}: every request failed`,
    );
  }
  t.ok(warnings.length >= 1 && warnings.length <= 2, `${warnings.length} warnings for 10 failed batches`);
  t.equal(warnings[0]!.batchesFailed, 1, 'the first at once');
});

t.test(
  'a connection that dies without a word (a failover) holds up no dial answer or dial event for long: its statement is given up, the connection dropped',
  async (t) => {
    const db = await migratedDatabase(t);
    const { pool, silence } = await silencingPool(t, db.url);
    // A new backend's first dial_offer() compiles the function: on a busy machine that takes a while.
    const answer = dialAnswerer(pool, { queryTimeoutMs: 3000 });
    const request = (callSid: string): AttemptRequest => ({
      key: { callSid, endpoint: 'connect', flowSlug: 'agents' },
      attemptKey: '|',
      tried: [],
      candidates: NUMBERS.slice(0, 3),
      plan: { base: NUMBERS.slice(0, 3), arrange: 'as_is' },
      rrGroup: null,
      sticky: null,
      connected: null,
      at: AT,
      busyExpired: new Date(AT.getTime() - TTL),
    });
    const within = <T>(work: Promise<T>, ms: number) =>
      Promise.race([work, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms).unref())]);
    t.same((await answer(request('before'))).numbers, NUMBERS.slice(0, 3), 'answered through the proxy');
    await new Promise((r) => setImmediate(r)); // the answerer's queue is idle again: the next request goes alone
    silence();
    // The statement in flight when the connection died: its caller has answered onError meanwhile.
    const lost = answer(request('lost'), 200).catch((err: Error) => err);
    // The next call's request waits behind it, and so does every one after, for as long as it hangs.
    const next = await within(answer(request('next')), 15_000);
    t.match(next, { numbers: NUMBERS.slice(0, 3) }, 'the next request is answered, on a new connection');
    t.match(await within(lost, 3000), { message: /timeout/ }, 'the statement on the dead connection was given up');

    // A dial event on a connection that died: given up too, so that it does not keep the connection.
    await new Promise((r) => setImmediate(r));
    silence();
    const event = (callSid: string) =>
      recordDialEvent(
        pool,
        {
          agent: NUMBERS[0]!,
          busy: true,
          dialed: true,
          answered: false,
          ended: false,
          callSid,
          caller: CALLER,
          at: AT,
          group: null,
          flow: null,
          ringSeconds: null,
          earlySeconds: null,
          pacing: { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 300 },
          busyExpired: new Date(AT.getTime() - TTL),
        },
        3000,
      ).catch((err: Error) => err);
    t.match(await within(event('event-lost'), 6000), { message: /timeout/ }, 'the dial event on the dead connection was given up');
    t.same(await within(event('event-next'), 15_000), { offered: true }, 'and the next one recorded, on a new connection');

    // The read of a call's first digits (a Dial Whom re-fetch whose flow matches digits): its caller
    // is answered by the deadline, but the read kept its pool connection as long as it hung.
    await new Promise((r) => setImmediate(r));
    silence();
    const key = { callSid: 'digits', endpoint: 'dial-whom', flowSlug: 'agents' };
    const digits = firstDigitsOf(pool, key, 3000).catch((err: Error) => err);
    t.match(await within(digits, 6000), { message: /timeout/ }, 'the read of the first digits on the dead connection was given up');
    t.equal(await within(firstDigitsOf(pool, key, 3000), 15_000), null, 'and the next one answered, on a new connection');
  },
);

t.test('a batch given up (query_timeout) is not retried one by one for callers that stopped waiting meanwhile', async (t) => {
  const { pool } = await migratedDatabase(t);
  const answer = dialAnswerer(pool, { queryTimeoutMs: 1500 });
  const request = (callSid: string): AttemptRequest => ({
    key: { callSid, endpoint: 'connect', flowSlug: 'agents' },
    attemptKey: '|',
    tried: [],
    candidates: NUMBERS.slice(0, 3),
    plan: { base: NUMBERS.slice(0, 3), arrange: 'as_is' },
    rrGroup: null,
    sticky: null,
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - TTL),
  });
  await answer(request('warm-up')); // dial_offer() compiled
  await new Promise((r) => setImmediate(r));
  // Calls A and B held by another session (as a stalled statement would hold them): A's request goes
  // alone and waits; B's and C's queue behind it and go together as a batch once A is let go.
  const gate = await pool.connect();
  t.teardown(() => gate.release());
  const lock = (call: string, how: 'lock' | 'unlock') => gate.query(`SELECT pg_advisory_${how}(1684627820, hashtext($1))`, [call]);
  await lock('A', 'lock');
  await lock('B', 'lock');
  const a = answer(request('A'));
  await lockWaiters(t, pool);
  const b = answer(request('B'), 1000).catch((err: Error) => err);
  const c = answer(request('C'), 1000).catch((err: Error) => err);
  await lock('A', 'unlock');
  await a;
  await lockWaiters(t, pool); // the batch of B and C waits for B
  // The batch is given up after 1.5 s; by then B's and C's callbacks have answered onError without them.
  t.type(await c, DialRequestAbandoned, "C's request is not sent again after its caller stopped waiting");
  const { rows } = await pool.query('SELECT call_sid FROM dial_calls WHERE call_sid = $1', ['C']);
  t.same(rows, [], 'no dial state written for a call answered onError');
  await lock('B', 'unlock');
  t.type(await b, DialRequestAbandoned, "nor B's");
});

t.test('round robin across two instances: concurrent new calls rotate evenly, each group on its own', async (t) => {
  for (const mode of ['alone', 'batched'] as const) await t.test(mode, (t) => twoInstances(t, mode));
});

async function twoInstances(t: Test, mode: 'alone' | 'batched') {
  const db = await migratedDatabase(t);
  const other = new pg.Pool({ connectionString: db.url, max: 8 });
  t.teardown(() => other.end());
  await db.pool.query(`INSERT INTO dial_groups (slug, name, strategy, connect, updated_at)
    VALUES ('sales', 'Sales', 'round_robin', '{}', now()), ('support', 'Support', 'round_robin', '{}', now())`);
  const groups = { sales: NUMBERS.slice(0, 3), support: NUMBERS.slice(3, 5) };
  const request = (slug: keyof typeof groups, callSid: string): AttemptRequest => ({
    key: { callSid, endpoint: 'connect', flowSlug: slug },
    attemptKey: '|',
    tried: [],
    candidates: groups[slug],
    plan: { base: groups[slug], arrange: 'rotate' },
    rrGroup: slug,
    sticky: null,
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - TTL),
  });
  // 60 calls of sales and 40 of support, each polled twice at once, from both pools
  const calls = [...Array.from({ length: 60 }, (_, i) => ['sales', `s${i}`] as const), ...Array.from({ length: 40 }, (_, i) => ['support', `u${i}`] as const)];
  const batched = (answer: ReturnType<typeof dialAnswerer>) => (req: AttemptRequest) => answer(req).then((a) => a.numbers);
  const via = (pool: pg.Pool) => (mode === 'batched' ? batched(dialAnswerer(pool)) : (req: AttemptRequest) => answerAttempt(pool, req));
  const [one, two] = [via(db.pool), via(other)];
  const answers = await Promise.all(
    calls.flatMap(([slug, sid], i) => [
      (i % 2 ? one : two)(request(slug, sid)).then((a) => ({ slug, sid, a })),
      (i % 2 ? two : one)(request(slug, sid)).then((a) => ({ slug, sid, a })),
    ]),
  );
  const firsts = new Map<string, Map<string, number>>();
  const bySid = new Map<string, string>();
  for (const { slug, sid, a } of answers) {
    const seen = bySid.get(sid);
    if (seen !== undefined) t.equal(a.join(), seen, `both polls of ${sid} get one answer`);
    else {
      bySid.set(sid, a.join());
      const counts = firsts.get(slug) ?? firsts.set(slug, new Map()).get(slug)!;
      counts.set(a[0]!, (counts.get(a[0]!) ?? 0) + 1);
    }
  }
  t.same(Object.fromEntries(firsts.get('sales')!), Object.fromEntries(groups.sales.map((n) => [n, 20])), 'sales: each of 3 members first 20 times');
  t.same(Object.fromEntries(firsts.get('support')!), Object.fromEntries(groups.support.map((n) => [n, 20])), 'support: each of 2 members first 20 times');
  t.equal(await rrPosition(db.pool, 'sales'), 60, 'one position per sales call');
  t.equal(await rrPosition(db.pool, 'support'), 40, 'one position per support call');
}

t.test("a group's rotation sequence is created and dropped with the group", async (t) => {
  const db = await migratedDatabase(t);
  const { pool } = db;
  const sequence = async () => (await pool.query('SELECT to_regclass($1) AS seq', [rrSequence('sales')])).rows[0].seq as string | null;
  const {
    rows: [group],
  } = await pool.query<{ id: number }>(
    `INSERT INTO dial_groups (slug, name, strategy, connect, updated_at) VALUES ('sales', 'Sales', 'round_robin', '{}', now()) RETURNING id`,
  );
  t.equal(await sequence(), rrSequence('sales'));
  t.equal(await rrPosition(pool), 0, 'a new group starts at its first member');
  await pool.query('DELETE FROM dial_groups WHERE id = $1', [group!.id]);
  t.equal(await sequence(), null, 'gone with the group');
  const req: AttemptRequest = {
    key: { callSid: 'd1', endpoint: 'dial-whom', flowSlug: 'agents' },
    attemptKey: '|',
    tried: [],
    candidates: NUMBERS.slice(0, 3),
    plan: { base: NUMBERS.slice(0, 3), arrange: 'rotate' },
    rrGroup: 'sales',
    sticky: null,
    connected: null,
    at: AT,
    busyExpired: AT,
  };
  t.same(await answerAttempt(pool, req), NUMBERS.slice(0, 3), 'a snapshot still naming the deleted group: its members from the first');
});

/** A new database with the migrations before `before` applied: to test the one that comes next. */
async function migratedBefore(t: Test, before: string): Promise<pg.Pool> {
  const url = await createTestDatabase(t);
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  t.teardown(() => pool.end());
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const all = path.resolve(import.meta.dirname, '../../prisma/migrations');
  for (const name of await readdir(all)) {
    if (name < before) await cp(path.join(all, name), path.join(dir, name), { recursive: true });
  }
  await applyMigrations(pool, `${dir}/`);
  return pool;
}

t.test("the migration that names rotation sequences by slug carries each group's position over", async (t) => {
  const pool = await migratedBefore(t, '20261210017900');
  const { rows: groups } = await pool.query<{ id: number }>(
    `INSERT INTO dial_groups (slug, name, strategy, connect, updated_at)
       VALUES ('sales', 'Sales', 'round_robin', '{}', now()), ('support', 'Support', 'round_robin', '{}', now()) RETURNING id`,
  );
  await pool.query(`SELECT setval(format('dial_group_rr_%s', $1::int), 3, false)`, [groups[0]!.id]);
  await applyMigrations(pool);
  t.equal(await rrPosition(pool, 'sales'), 3);
  t.equal(await rrPosition(pool, 'support'), 0);
  const { rows } = await pool.query(`SELECT relname FROM pg_class WHERE relkind = 'S' AND relname LIKE 'dial\\_group\\_rr\\_%' ORDER BY relname`);
  t.same(rows.map((r) => r.relname).sort(), [rrSequence('sales'), rrSequence('support')].sort(), 'the sequences named by id are gone');
});

t.test("the migration to rotation sequences carries each group's position over", async (t) => {
  const pool = await migratedBefore(t, '20261124000000');
  await pool.query(`INSERT INTO dial_groups (slug, name, strategy, connect, updated_at, rr_position)
    VALUES ('sales', 'Sales', 'round_robin', '{}', now(), 7), ('support', 'Support', 'round_robin', '{}', now(), 0)`);
  await applyMigrations(pool);
  t.equal(await rrPosition(pool, 'sales'), 7);
  t.equal(await rrPosition(pool, 'support'), 0);
});

/**
 * How an instance of the version before prisma/functions/dial_answer.sql calls dial_answer(): by
 * its sixteen named parameters (databases migrated before it have no dial_request).
 */
async function answerAsBefore(pool: pg.Pool, req: AttemptRequest, preview = false): Promise<string[]> {
  const params = Object.entries(asDialRequest(req));
  const named = params.map(([name], i) => `p_${name} => $${i + 1}${['tried', 'candidates', 'base'].includes(name) ? '::text[]' : ''}`);
  const { rows } = await pool.query<{ numbers: string[] | null }>(`SELECT dial_answer(${named.join(', ')}, p_preview => $${params.length + 1}) AS numbers`, [
    ...params.map(([, value]) => value),
    preview,
  ]);
  return rows[0]?.numbers ?? [];
}

t.test('the migration that moves answers into dial_calls carries the answers of calls in progress over', async (t) => {
  const pool = await migratedBefore(t, '20261127000000');
  const key = { callSid: 'm1', endpoint: 'dial-whom', flowSlug: 'agents' };
  const first: AttemptRequest = {
    key,
    attemptKey: '|',
    tried: [],
    candidates: NUMBERS.slice(0, 3),
    plan: { base: NUMBERS.slice(0, 3), arrange: 'as_is' },
    rrGroup: null,
    sticky: null,
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - TTL),
  };
  const refetch: AttemptRequest = { ...first, attemptKey: `${NUMBERS[0]}|no-answer`, tried: [NUMBERS[0]!] };
  t.same(await answerAsBefore(pool, first), NUMBERS.slice(0, 3), 'answered by the previous function');
  t.same(await answerAsBefore(pool, refetch), NUMBERS.slice(1, 3));
  // an agent falls busy: a fresh answer to either attempt would now leave it out
  await pool.query('INSERT INTO agent_states (number, busy, busy_since, updated_at) VALUES ($1, true, $2, $2)', [NUMBERS[1], AT]);

  await applyMigrations(pool);
  const { rows } = await pool.query('SELECT answers FROM dial_calls');
  t.same(rows, [{ answers: { '|': NUMBERS.slice(0, 3), [refetch.attemptKey]: NUMBERS.slice(1, 3) } }], "both answers, in the call's row");
  t.same(await answerAttempt(pool, first), NUMBERS.slice(0, 3), 'a repeated poll gets the answer it got before the upgrade');
  t.same(await answerAttempt(pool, refetch), NUMBERS.slice(1, 3));
  t.same(await answerAttempt(pool, { ...refetch, attemptKey: `${NUMBERS[2]}|busy`, tried: [NUMBERS[2]!] }), [], 'a new attempt is answered afresh');
});

t.test('during a rolling upgrade, instances of the previous version get the same answers from the one body', async (t) => {
  const db = await migratedDatabase(t);
  const { pool } = db;
  await pool.query(`INSERT INTO dial_groups (slug, name, strategy, connect, updated_at) VALUES ('sales', 'Sales', 'round_robin', '{}', now())`);
  const request = (callSid: string, tried: string[] = []): AttemptRequest => ({
    key: { callSid, endpoint: 'connect', flowSlug: 'agents' },
    attemptKey: `${tried.join(',')}|`,
    tried,
    candidates: NUMBERS.slice(0, 3),
    plan: { base: NUMBERS.slice(0, 3), arrange: 'rotate' },
    rrGroup: 'sales',
    sticky: null,
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - TTL),
  });
  t.same(await answerAsBefore(pool, request('r0'), true), NUMBERS.slice(0, 3), 'a preview by the sixteen named parameters: no position taken');
  t.same(await answerAsBefore(pool, request('r1')), NUMBERS.slice(0, 3), 'a request by the sixteen named parameters');
  t.same(await answerAttempt(pool, request('r1')), NUMBERS.slice(0, 3), 'the same attempt asked by this version: the stored answer');
  // the previous version's batch: dial_request's keys plus its position as `idx`
  const { rows } = await pool.query('SELECT idx, numbers FROM dial_answer_batch($1::json)', [
    JSON.stringify([request('r2'), request('r1', [NUMBERS[0]!])].map((req, idx) => ({ idx, ...asDialRequest(req) }))),
  ]);
  t.same(
    rows,
    [
      { idx: 0, numbers: [NUMBERS[1], NUMBERS[2], NUMBERS[0]] },
      { idx: 1, numbers: NUMBERS.slice(1, 3) },
    ],
    'a batch with idx: the rotation moved on',
  );
  // the version before this one (dial_offers()): {req, more} items
  const reporting: AttemptRequest = {
    ...request('r1', [NUMBERS[1]!]),
    attemptKey: `${NUMBERS[1]}|no-answer`,
    extra: {
      tiers: null,
      reported: { agent: NUMBERS[1]!, status: 'no-answer', group: 'sales', pacing: { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 0 } },
      tierGroups: null,
    },
  };
  const nested = await pool.query('SELECT idx, answer FROM dial_offers($1::json)', [
    JSON.stringify([{ req: asDialRequest(reporting), more: asDialExtra(reporting) }]),
  ]);
  t.same(nested.rows[0].answer.numbers, [NUMBERS[2]], 'a batch of {req, more} items of the previous version: the numbers left');
  t.match(nested.rows[0].answer.reported, { agent: NUMBERS[1], outcome: 'no-answer' }, 'and the attempt it reports, recorded');
});

/** A re-fetch of `callSid` reporting that `agent` did not answer, in a group that pauses after `maxMissed` misses. */
const missOf = (callSid: string, agent: string, maxMissed: number, at = AT): AttemptRequest => ({
  key: { callSid, endpoint: 'connect', flowSlug: 'agents' },
  attemptKey: `${agent}|no-answer`,
  tried: [agent],
  candidates: NUMBERS.slice(0, 3),
  plan: { base: NUMBERS.slice(0, 3), arrange: 'as_is' },
  rrGroup: null,
  sticky: null,
  connected: null,
  at,
  busyExpired: new Date(at.getTime() - TTL),
  extra: {
    tiers: null,
    reported: { agent, status: 'no-answer', group: 'sales', pacing: { wrapUpSeconds: 0, maxMissedOffers: maxMissed, missedPauseSeconds: 300 } },
    tierGroups: null,
  },
});

/** The first request of `callSid`, which offers NUMBERS[0..2]: a re-fetch's miss counts only for an agent its call offered. */
const firstOf = (callSid: string): AttemptRequest => ({
  ...missOf(callSid, NUMBERS[0]!, 0),
  attemptKey: '|',
  tried: [],
  extra: { tiers: null, reported: null, tierGroups: null },
});

const missed = async (pool: pg.Pool, agent: string) => (await pool.query<{ n: number }>('SELECT agent_missed_offers($1, 1000) AS n', [agent])).rows[0]!.n;

t.test('a miss writes its offer alone; the misses in a row are counted from the offers', async (t) => {
  const { pool } = await migratedDatabase(t);
  const A = NUMBERS[0]!;
  const states = async () => (await pool.query('SELECT number, paused_until, misses_since FROM agent_states')).rows;
  for (const c of ['c1', 'c2', 'c4', 'c5', 'c6']) await offerAttempt(pool, firstOf(c));
  await offerAttempt(pool, missOf('c1', A, 0));
  await offerAttempt(pool, missOf('c2', A, 0, new Date(AT.getTime() + 1000)));
  t.same(await states(), [], 'in a group that does not pause, no agent state is written');
  t.equal(await missed(pool, A), 2, 'two misses in a row');
  t.equal((await pool.query('SELECT agent_missed_offers($1, 1) AS n', [A])).rows[0].n, 1, 'counted up to the limit given');
  await pool.query(`INSERT INTO agent_offers (call_sid, number, offered_at, outcome, ended_at) VALUES ('c3', $1, $2, 'answered', $2)`, [
    A,
    new Date(AT.getTime() + 2000),
  ]);
  t.equal(await missed(pool, A), 0, 'an answered offer ends the run');

  const at = (s: number) => new Date(AT.getTime() + s * 1000);
  t.same((await offerAttempt(pool, missOf('c4', A, 2, at(10)))).reported, { agent: A, group: 'sales', outcome: 'no-answer', offered: true });
  t.same(await states(), [], 'one miss of two: nothing but the offer');
  await offerAttempt(pool, missOf('c5', A, 2, at(20)));
  t.same(await states(), [{ number: A, paused_until: at(320), misses_since: at(20) }], 'the second in a row pauses the agent, and the count starts again');
  t.equal(await missed(pool, A), 0);
  const { rows } = await pool.query('SELECT paused_reason FROM agent_states');
  t.equal(rows[0].paused_reason, '2 offers in a row not answered (the last: no-answer, call c5)');
  await offerAttempt(pool, missOf('c6', A, 2, at(400)));
  t.equal(await missed(pool, A), 1, 'after the pause, one miss is one');
  t.same(await states(), [{ number: A, paused_until: at(320), misses_since: at(20) }], 'and pauses no one');
});

t.test('misses of one agent in two calls at once are counted one after the other', async (t) => {
  const { pool } = await migratedDatabase(t);
  const A = NUMBERS[0]!;
  const [one, two] = [await pool.connect(), await pool.connect()];
  t.teardown(() => {
    one.release();
    two.release();
  });
  for (const c of ['c1', 'c2']) await offerAttempt(pool, firstOf(c));
  await one.query('BEGIN');
  await offerAttempt(one as unknown as pg.Pool, missOf('c1', A, 2));
  await two.query('BEGIN');
  let settled = false;
  const second = offerAttempt(two as unknown as pg.Pool, missOf('c2', A, 2, new Date(AT.getTime() + 1000))).finally(() => {
    settled = true;
  });
  await lockWaiters(t, pool); // the second's count waits on the first's lock
  t.notOk(settled, "the second waits for the first's count to commit");
  await one.query('COMMIT');
  await second;
  await two.query('COMMIT');
  const { rows } = await pool.query('SELECT paused_until FROM agent_states WHERE number = $1', [A]);
  t.ok(rows[0]?.paused_until, 'and sees its miss: two in a row, paused');
});

t.test('the migration that counts misses from the offers carries each count over', async (t) => {
  const pool = await migratedBefore(t, '20261205000800');
  const [A, B, C] = NUMBERS;
  const at = (s: number) => new Date(AT.getTime() + s * 1000);
  // A: missed, answered, missed twice (count 2); B: paused after misses (count 0) with no answer
  // since; C: one miss and no state row
  await pool.query(
    `INSERT INTO agent_offers (call_sid, number, offered_at, outcome, ended_at) VALUES
       ('a1', $1, $4, 'busy', $4), ('a2', $1, $5, 'answered', $5), ('a3', $1, $6, 'no-answer', $6), ('a4', $1, $7, 'no-answer', $7),
       ('b1', $2, $4, 'no-answer', $4), ('b2', $2, $5, 'no-answer', $5), ('b3', $2, $6, NULL, NULL), ('c1', $3, $4, 'no-answer', $4)`,
    [A, B, C, at(1), at(2), at(3), at(4)],
  );
  await pool.query(
    `INSERT INTO agent_states (number, missed_offers, paused_until, updated_at) VALUES ($1, 2, NULL, $3), ($2, 0, $3::timestamptz + interval '5 minutes', $3)`,
    [A, B, at(5)],
  );
  await applyMigrations(pool);
  t.same([await missed(pool, A!), await missed(pool, B!), await missed(pool, C!)], [2, 0, 1]);
});

t.test('two batches (of two instances) whose requests name the same calls and agents in opposite orders do not deadlock', async (t) => {
  const db = await migratedDatabase(t);
  const X = '+919811100001';
  const Y = '+919811100002';
  const at = '2026-12-05T10:00:00Z';
  const req = (call: string, agent: string) => ({
    call_sid: call,
    endpoint: 'connect',
    flow_slug: 'f',
    attempt_key: `k-${call}-${agent}`,
    tried: [agent],
    candidates: [],
    base: [],
    arrange: 'as_is',
    at,
    busy_expired: '2026-12-05T09:00:00Z',
    reported_agent: agent,
    reported_status: 'no-answer',
  });
  const batch = (items: unknown[]) =>
    db.pool.query('SELECT * FROM dial_offer_batch($1)', [JSON.stringify(items)]).then(
      () => 'ok',
      (e: Error) => e.message,
    );
  // call D held by a third session, so that the second batch stops there with what it took before
  const gate = await db.pool.connect();
  await gate.query('BEGIN');
  await gate.query(`SELECT pg_advisory_xact_lock(1684627820, hashtext('CALL-D'))`);
  const second = batch([req('CALL-B', Y), req('CALL-D', X)]);
  await lockWaiters(t, db.pool); // the second batch waits for CALL-D, having taken what comes before it
  let firstDone = false;
  const first = batch([req('CALL-A', X), req('CALL-C', Y)]).finally(() => {
    firstDone = true;
  });
  // The first batch runs, then: it is answered, or it waits for what the second holds.
  await lockWaiters(t, db.pool, 2, { or: () => firstDone });
  await gate.query('COMMIT');
  gate.release();
  t.same(await Promise.all([first, second]), ['ok', 'ok'], 'both answered, neither aborted as a deadlock');
});

t.test('a batch answers its requests in their order, each once', async (t) => {
  const db = await migratedDatabase(t);
  const items = ['c1', 'c2', 'c1', 'c3'].map((call, i) => ({
    call_sid: call,
    endpoint: 'dial-whom',
    flow_slug: 'f',
    attempt_key: `a${i}`,
    tried: [],
    candidates: ['+919811100001', '+919811100002'],
    base: ['+919811100001', '+919811100002'],
    arrange: 'as_is',
    at: '2026-12-05T10:00:00Z',
    busy_expired: '2026-12-05T09:00:00Z',
  }));
  const { rows } = await db.pool.query<{ idx: number }>('SELECT idx FROM dial_offer_batch($1)', [JSON.stringify(items)]);
  t.same(
    rows.map((r) => r.idx),
    [0, 1, 2, 3],
  );
});

t.test("tiers' own sticky windows: alone and batched alike; a batch of the version before (no tier_sticky_since) keeps one window", async (t) => {
  const { pool } = await migratedDatabase(t);
  const [n0, n1, n2, n3, n4] = NUMBERS as [string, string, string, string, string];
  // n1 two days ago, n3 a day ago (the latest)
  await pool.query(`INSERT INTO caller_agents (caller, agent, connected_at) VALUES ($1, $2, $4), ($1, $3, $5)`, [
    CALLER,
    n1,
    n3,
    new Date(AT.getTime() - 2 * DAY),
    new Date(AT.getTime() - DAY),
  ]);
  // tier one (n0, n1, n2) sticky for 7 days, tier two (n4, n3) not sticky
  const tiered = (callSid: string): AttemptRequest => ({
    key: { callSid, endpoint: 'connect', flowSlug: 'agents' },
    attemptKey: '|',
    tried: [],
    candidates: [n0, n1, n2, n3, n4],
    plan: { base: [n0, n1, n2, n4, n3], arrange: 'as_is' },
    rrGroup: null,
    sticky: { caller: CALLER, since: new Date(AT.getTime() - 7 * DAY) },
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - TTL),
    extra: {
      tiers: [
        { group: 'sales', end: 3, arrange: 'as_is', rrGroup: null, stickySince: new Date(AT.getTime() - 7 * DAY) },
        { group: 'support', end: 5, arrange: 'as_is', rrGroup: null, stickySince: null },
      ],
      reported: null,
      tierGroups: ['sales', 'support'],
    },
  });
  const order = async (callSid: string) => (await pool.query('SELECT "order" FROM dial_calls WHERE call_sid = $1', [callSid])).rows[0]?.order;
  const counted = countingPool(pool);
  const answer = dialAnswerer(counted.pool);
  const before = counted.statements();
  await Promise.all(['ts1', 'ts2', 'ts3'].map((sid) => answer(tiered(sid))));
  t.equal(counted.statements() - before, 2, 'the first alone, the others as a batch');
  for (const sid of ['ts1', 'ts2', 'ts3']) t.same(await order(sid), [n1, n0, n2, n4, n3], `${sid}: n1 first in its sticky tier, n3 not moved in the other`);
  // the version before sends no tier_sticky_since: one agent (the latest, n3) in one window, as it did
  const old = { ...asDialRequest(tiered('ts4')), ...asDialExtra(tiered('ts4')), tier_sticky_since: undefined };
  await pool.query('SELECT idx FROM dial_offer_batch($1::json)', [JSON.stringify([old])]);
  t.same(await order('ts4'), [n0, n1, n2, n3, n4], 'as before: the latest agent first in whichever tier holds it');
});

t.test('the migration that tells offers apart by flow gives the offers of calls in progress their flow, and old events still land on them', async (t) => {
  const pool = await migratedBefore(t, '20261205001200');
  const [a, b] = [NUMBERS[0]!, NUMBERS[1]!];
  await pool.query(
    `INSERT INTO dial_calls (call_sid, endpoint, flow_slug, "order", tried, answers) VALUES
       ('p1', 'connect', 'agents', $1, '{}', jsonb_build_object('|', jsonb_build_array($2::text))),
       ('p1', 'connect', 'support', $1, '{}', jsonb_build_object('|', jsonb_build_array($3::text)))`,
    [[a, b], a, b],
  );
  await pool.query(
    `INSERT INTO agent_offers (call_sid, number, group_slug, offered_at) VALUES ('p1', $1, 'sales', now()), ('p1', $2, 'support', now()),
       ('old', $1, 'sales', now() - interval '2 days')`,
    [a, b],
  );
  await applyMigrations(pool);
  const { rows } = await pool.query('SELECT call_sid, number, flow_slug FROM agent_offers ORDER BY call_sid, number');
  t.same(rows, [
    { call_sid: 'old', number: a, flow_slug: '' },
    { call_sid: 'p1', number: a, flow_slug: 'agents' },
    { call_sid: 'p1', number: b, flow_slug: 'support' },
  ]);
  // an instance of the version before ends b's offer by a dial event (thirteen parameters, no flow)
  const { rows: ended } = await pool.query(`SELECT dial_agent_event($1, 'p1', false, false, false, true, NULL, now(), 'support', 35, 0, 0, 0) AS effect`, [b]);
  t.same(ended, [{ effect: { outcome: 'no-answer' } }], "the agent's latest offer in the call");
  t.equal((await pool.query(`SELECT count(*)::int AS n FROM agent_offers WHERE number = $1`, [b])).rows[0].n, 1);
});
