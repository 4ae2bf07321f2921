/**
 * What re-fetches and dial events report about an agent's offer, through the real app on a real
 * Postgres: the two arriving together for one agent (one lock order, no deadlock), also spread over
 * three instances, a re-fetch naming an agent the call never offered, `completed` after an Answered
 * event, and `failed`.
 */
import t from 'tap';
import type { Test } from 'tap';
import pg from 'pg';
import { buildSecondInstance, buildTestApp, type TestApp, zoneAtNoon } from '../../helper.js';

const A = '+919811100001';
const B = '+919811100002';
const C = '+919811100003';
const enc = encodeURIComponent;
/** The agent's advisory lock in prisma/functions/dial_answer.sql ('agnt'). */
const AGENT_LOCK = 'SELECT pg_advisory_xact_lock(1634168436, hashtext($1))';

async function until(ok: () => boolean) {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('snapshot did not catch up');
}

/** Group `sales` (A, B, C by priority) and a dial flow `agents` that dials it. */
async function setup(t: Test, sales: Record<string, unknown> = {}) {
  const ctx = await buildTestApp(t, { PUBLIC_URL: 'https://exo.example.com' });
  const members = [A, B, C].map((number, i) => ({ number, priority: i + 1 }));
  t.equal(
    (await ctx.admin({ method: 'POST', url: '/admin/dial-groups', payload: { slug: 'sales', name: 'Sales', strategy: 'sequential', members, ...sales } }))
      .statusCode,
    201,
  );
  const flow = { slug: 'agents', name: 'Agents', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { numbers: ['+919800000099'] } };
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/flows', payload: flow })).statusCode, 201);
  await until(() => ctx.app.rules.current?.flows.has('agents') === true && ctx.app.rules.current.dialGroups.size === 1);
  return ctx;
}

const dialWhom = async (ctx: TestApp, query: string) =>
  (await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/agents?CallFrom=09800000001&${query}` })).body;
const event = (ctx: TestApp, query: string) => ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallFrom=09800000001&${query}` });
/** The agent as GET /admin/agents/:number shows it, "today" counted where it is noon (tests move offers minutes back). */
const agent = async (ctx: TestApp, number: string) =>
  (await ctx.admin({ method: 'GET', url: `/admin/agents/${enc(number)}?timezone=${enc(zoneAtNoon())}` })).json();
const lastCdr = (ctx: TestApp, callSid: string) => ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid, endpoint: 'dial-whom' }, orderBy: { id: 'desc' } });
const offers = async (ctx: TestApp, number: string) =>
  (await ctx.db.pool.query('SELECT call_sid, outcome, ended_at IS NOT NULL AS ended FROM agent_offers WHERE number = $1 ORDER BY call_sid', [number])).rows;
const metric = async (ctx: TestApp, name: string) =>
  Number(new RegExp(`^${name}\\{group="sales"\\} (\\d+)$`, 'm').exec((await ctx.app.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? 0);

/** Until `n` backends of this database wait for a lock. */
async function lockWaiters(ctx: TestApp, n: number) {
  for (let i = 0; i < 500; i++) {
    const { rows } = await ctx.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (rows[0]!.n >= n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${n} lock waiters expected`);
}

/** A connection of its own, in a transaction, closed at the end of the test. */
async function client(t: Test, ctx: TestApp) {
  const c = new pg.Client({ connectionString: ctx.db.url });
  await c.connect();
  t.teardown(() => c.end());
  await c.query('BEGIN');
  return c;
}

for (const ended of ['d1', 'd2'] as const) {
  const what = ended === 'd1' ? 'the offer the re-fetch reports' : "the agent's offer in another call";
  t.test(`a miss reported by a re-fetch and a dial event ending ${what}, at once: both complete, no deadlock`, async (t) => {
    // maxMissedOffers 1: each miss takes the agent's lock and pauses, writing agent_states
    const ctx = await setup(t, { maxMissedOffers: 1 });
    t.equal(await dialWhom(ctx, 'CallSid=d1'), `${A},${B},${C}`);
    t.equal((await event(ctx, `CallSid=${ended}&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales`)).statusCode, 200);
    // Both stopped at the agent's lock, held here as another miss of the agent being counted would.
    const holder = await client(t, ctx);
    await holder.query(AGENT_LOCK, [A]);
    const refetch = ctx.app.inject({
      method: 'GET',
      url: '/exotel/dial-whom/agents?CallFrom=09800000001&CallSid=d1&DialCallStatus=no-answer&DialWhomNumber=09811100001',
    });
    await lockWaiters(ctx, 1);
    const terminal = event(ctx, `CallSid=${ended}&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales`);
    await lockWaiters(ctx, 2);
    await holder.query('COMMIT');
    const [answer, ev] = await Promise.all([refetch, terminal]);
    const cdr = await lastCdr(ctx, 'd1');
    t.equal(answer.body, `${B},${C}`, 'the re-fetch is answered from Postgres, not onError');
    t.equal(cdr.outcome, 'answered');
    t.notMatch(cdr.reason ?? '', /deadlock/);
    t.equal(ev.statusCode, 200);
    t.match(await agent(ctx, A), { state: 'paused', onCall: null }, 'paused by its miss; the event set it free');
    const want =
      ended === 'd1'
        ? [{ call_sid: 'd1', outcome: 'no-answer', ended: true }]
        : [
            { call_sid: 'd1', outcome: 'no-answer', ended: true },
            { call_sid: 'd2', outcome: 'no-answer', ended: true },
          ];
    t.same(await offers(ctx, A), want);
  });
}

t.test('a re-fetch reporting completed while a Terminal event of that offer is under way: both complete, no deadlock, one wrap-up', async (t) => {
  const ctx = await setup(t, { wrapUpSeconds: 60 });
  t.equal(await dialWhom(ctx, 'CallSid=d1'), `${A},${B},${C}`);
  await event(ctx, 'CallSid=d1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  // no Answered events on this account: a leg of three minutes was picked up (the call began before it)
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '3 minutes' WHERE call_sid = 'd1'`);
  await ctx.db.pool.query(`UPDATE dial_calls SET created_at = now() - interval '4 minutes' WHERE call_sid = 'd1'`);
  // The event's first steps (dial_agent_event): the agent's lock, then its agent_states row.
  const e = await client(t, ctx);
  await e.query(AGENT_LOCK, [A]);
  await e.query('UPDATE agent_states SET updated_at = now() WHERE number = $1', [A]);
  const refetch = ctx.app.inject({
    method: 'GET',
    url: '/exotel/dial-whom/agents?CallFrom=09800000001&CallSid=d1&DialCallStatus=completed&DialWhomNumber=09811100001',
  });
  await lockWaiters(ctx, 1);
  // the rest of the event (Status=free, Terminal)
  let eventError: string | null = null;
  try {
    await e.query(`SELECT dial_agent_event($1, 'd1', false, false, false, true, '+919800000001', now(), 'sales', 35, 60, 0, 0)`, [A]);
    await e.query('COMMIT');
  } catch (err) {
    eventError = (err as Error).message;
    await e.query('ROLLBACK');
  }
  const answer = await refetch;
  const cdr = await lastCdr(ctx, 'd1');
  t.equal(eventError, null, 'the event is not aborted');
  t.equal(answer.body, `${B},${C}`, 'the re-fetch is answered from Postgres, not onError');
  t.notMatch(cdr.reason ?? '', /deadlock/);
  const a = await agent(ctx, A);
  t.match(a, { state: 'wrapping_up', onCall: null, today: { offers: 1, answers: 1, misses: 0 } });
  t.ok(Date.parse(a.wrapUpUntil) - Date.now() > 50_000, 'for wrapUpSeconds');
  t.same(await offers(ctx, A), [{ call_sid: 'd1', outcome: 'answered', ended: true }]);
});

t.test('a re-fetch naming an agent the call never offered counts nothing; one it offered does', async (t) => {
  // B switched off: never offered
  const ctx = await setup(t, { maxMissedOffers: 1, members: [A, B, C].map((number, i) => ({ number, priority: i + 1, active: number !== B })) });
  t.equal(await dialWhom(ctx, 'CallSid=n1'), `${A},${C}`);
  t.equal(await dialWhom(ctx, 'CallSid=n1&DialCallStatus=no-answer&DialWhomNumber=09811100002'), `${A},${C}`, 'B was never tried');
  t.equal(await dialWhom(ctx, 'CallSid=n9&DialCallStatus=busy&DialWhomNumber=09811100001'), C, 'an unknown call');
  t.equal(await dialWhom(ctx, 'CallSid=n2'), `${A},${C}`, 'A was not paused by a call that never offered it');
  t.equal(await dialWhom(ctx, 'CallSid=n2&DialCallStatus=no-answer&DialWhomNumber=09811100003'), A, 'C: offered in n2');
  t.match(await agent(ctx, B), { state: 'inactive', paused: null, missedOffers: 0, today: { offers: 0, misses: 0 } });
  t.match(await agent(ctx, A), { paused: null, missedOffers: 0, today: { offers: 0, misses: 0 } });
  t.match(await agent(ctx, C), { state: 'paused', today: { offers: 1, misses: 1 } });
  t.same(await offers(ctx, B), []);
  t.same(await offers(ctx, A), []);
  t.equal(await metric(ctx, 'exoroute_agent_misses_total'), 1, 'only the miss of an offer made');
});

t.test('a re-fetch reporting completed after an Answered event ends the offer and starts the wrap-up, once', async (t) => {
  const ctx = await setup(t, { wrapUpSeconds: 60 });
  await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents?CallSid=c1' });
  await event(ctx, 'CallSid=c1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  await event(ctx, 'CallSid=c1&DialWhomNumber=09811100001&Status=busy&EventType=Answered&group=sales');
  t.same(await offers(ctx, A), [{ call_sid: 'c1', outcome: 'answered', ended: false }], 'on the call');
  await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents?CallSid=c1&DialCallStatus=completed&DialWhomNumber=09811100001' });
  t.same(await offers(ctx, A), [{ call_sid: 'c1', outcome: 'answered', ended: true }], 'ended by the re-fetch');
  const wrapping = await agent(ctx, A);
  t.ok(Date.parse(wrapping.wrapUpUntil) - Date.now() > 50_000, 'wrap-up for wrapUpSeconds');
  // the free event after it changes neither the wrap-up nor the counts
  await new Promise((r) => setTimeout(r, 20));
  await event(ctx, 'CallSid=c1&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales');
  t.match(await agent(ctx, A), { state: 'wrapping_up', onCall: null, wrapUpUntil: wrapping.wrapUpUntil, today: { offers: 1, answers: 1, misses: 0 } });
  t.equal(await metric(ctx, 'exoroute_agent_answers_total'), 1, 'the answer counted once');
});

t.test('failed is not a miss: it ends the offer, neither counts nor breaks the run of misses', async (t) => {
  const ctx = await setup(t, { maxMissedOffers: 2, missedPauseSeconds: 600 });
  t.equal(await dialWhom(ctx, 'CallSid=f1'), `${A},${B},${C}`);
  t.equal(await dialWhom(ctx, 'CallSid=f1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C}`);
  t.equal(await dialWhom(ctx, 'CallSid=f2'), `${A},${B},${C}`);
  t.equal(await dialWhom(ctx, 'CallSid=f2&DialCallStatus=failed&DialWhomNumber=09811100001'), `${B},${C}`);
  t.match(await agent(ctx, A), { state: 'available', paused: null, missedOffers: 1, today: { offers: 2, answers: 0, misses: 1 } });
  t.equal(await dialWhom(ctx, 'CallSid=f3'), `${A},${B},${C}`, 'not paused by the failure');
  t.equal(await metric(ctx, 'exoroute_agent_misses_total'), 1);
  t.equal(await dialWhom(ctx, 'CallSid=f3&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C}`);
  t.match(await agent(ctx, A), { state: 'paused', paused: { reason: '2 offers in a row not answered (the last: no-answer, call f3)' } });
  t.same(await offers(ctx, A), [
    { call_sid: 'f1', outcome: 'no-answer', ended: true },
    { call_sid: 'f2', outcome: 'failed', ended: true },
    { call_sid: 'f3', outcome: 'no-answer', ended: true },
  ]);
});

t.test('three instances: polls of one attempt, re-fetches reporting misses and dial events of the same agents, all at once', async (t) => {
  // maxMissedOffers 50: every miss takes the agent's lock and counts the run, and nobody is paused
  const one = await setup(t, { maxMissedOffers: 50 });
  const instances = [
    one,
    await buildSecondInstance(t, one, { PUBLIC_URL: 'https://exo.example.com' }),
    await buildSecondInstance(t, one, { PUBLIC_URL: 'https://exo.example.com' }),
  ];
  await until(() => instances.every((i) => i.app.rules.current?.flows.has('agents') === true));
  const calls = Array.from({ length: 9 }, (_, i) => `tri${i}`);
  const first = await Promise.all(calls.flatMap((c) => instances.map((i) => dialWhom(i, `CallSid=${c}`))));
  t.same(new Set(first), new Set([`${A},${B},${C}`]), 'every first poll, on any instance, gets the one order');
  const dialed = await Promise.all(
    calls.map((c, n) => event(instances[(n + 1) % 3]!, `CallSid=${c}&DialWhomNumber=09811100002&Status=busy&EventType=Dial&group=sales&flow=agents`)),
  );
  t.same(
    dialed.map((r) => r.statusCode),
    calls.map(() => 200),
  );
  // per call: the re-fetch reporting A's no-answer polled on all three instances, and B's leg ending
  const refetches = calls.map((c) => Promise.all(instances.map((i) => dialWhom(i, `CallSid=${c}&DialCallStatus=no-answer&DialWhomNumber=09811100001`))));
  const ends = calls.map((c, n) =>
    event(instances[(n + 2) % 3]!, `CallSid=${c}&DialWhomNumber=09811100002&Status=free&EventType=Terminal&group=sales&flow=agents`),
  );
  const answers = await Promise.all(refetches);
  t.same(
    (await Promise.all(ends)).map((r) => r.statusCode),
    calls.map(() => 200),
    'every event answered',
  );
  for (const [n, polls] of answers.entries()) {
    t.equal(new Set(polls).size, 1, `${calls[n]}: the three polls of the attempt get one answer`);
    t.ok([`${B},${C}`, C].includes(polls[0]!), `${calls[n]}: B offered unless still on the leg (${polls[0]})`);
  }
  const cdrs = await one.db.prisma.cdr.findMany({ where: { callSid: { in: calls }, endpoint: 'dial-whom' }, select: { outcome: true, reason: true } });
  t.equal(cdrs.length, calls.length * 6, 'one CDR per poll');
  t.same(
    cdrs.filter((c) => c.outcome !== 'answered'),
    [],
    'all answered from Postgres: no deadlock, no onError',
  );
  const count = async (number: string) =>
    (await one.db.pool.query('SELECT outcome, count(*)::int AS n FROM agent_offers WHERE number = $1 GROUP BY outcome', [number])).rows;
  t.same(await count(A), [{ outcome: 'no-answer', n: 9 }], 'A: one miss per call, however many polls reported it');
  t.same(await count(B), [{ outcome: 'no-answer', n: 9 }], 'B: one offer per call, ended by its event');
  t.match(await agent(one, A), { state: 'available', missedOffers: 9, today: { offers: 9, misses: 9 } });
  t.match(await agent(one, B), { state: 'available', onCall: null, today: { offers: 9, misses: 9 } });
});
