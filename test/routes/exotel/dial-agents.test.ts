/**
 * Agents as people in dialing (issue 26), through the real app on a real Postgres: away agents,
 * wrap-up after a call, a pause after missed offers, overflow tiers, and what the traces say.
 */
import t from 'tap';
import type { Test } from 'tap';
import pg from 'pg';
import { buildSecondInstance, buildTestApp, lockWaiters, type TestApp, zoneAtNoon } from '../../helper.js';
import { SPOOL_RESERVE_MS } from '../../../src/config.js';

const A = '+919811100001';
const B = '+919811100002';
const C = '+919811100003';
const D = '+919811100004';
const enc = encodeURIComponent;

async function until(ok: () => boolean) {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('snapshot did not catch up');
}

/** Group `sales` (A, B, C by priority), group `support` (C, D), and a dial flow `agents` with the action given. */
async function setup(
  t: Test,
  opts: { sales?: Record<string, unknown>; support?: Record<string, unknown>; action?: Record<string, unknown>; env?: Record<string, string> } = {},
) {
  const ctx = await buildTestApp(t, { PUBLIC_URL: 'https://exo.example.com', ...opts.env });
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: {
          slug: 'sales',
          name: 'Sales',
          strategy: 'sequential',
          members: [
            { number: '09811100001', priority: 1 },
            { number: '09811100002', priority: 2 },
            { number: '09811100003', priority: 3 },
          ],
          ...opts.sales,
        },
      })
    ).statusCode,
    201,
  );
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: {
          slug: 'support',
          name: 'Support',
          strategy: 'sequential',
          members: [
            { number: '09811100003', priority: 1 },
            { number: '09811100004', priority: 2 },
          ],
          ...opts.support,
        },
      })
    ).statusCode,
    201,
  );
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/flows',
        payload: {
          slug: 'agents',
          name: 'Agents',
          type: 'dial',
          rules: [],
          otherwise: opts.action ?? { dialGroup: 'sales' },
          onError: { numbers: ['+919800000099'] },
        },
      })
    ).statusCode,
    201,
  );
  await until(() => ctx.app.rules.current?.flows.has('agents') === true && ctx.app.rules.current.dialGroups.size === 2);
  return ctx;
}

const dialWhom = async (ctx: TestApp, query: string) =>
  (await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/agents?CallFrom=09800000001&${query}` })).body;
const event = (ctx: TestApp, query: string) => ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallFrom=09800000001&${query}` });
const cdrDecision = async (ctx: TestApp, callSid: string) =>
  (await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid, endpoint: 'dial-whom' }, orderBy: { id: 'desc' } })).decision as Record<string, unknown>;
/** The agent as GET /admin/agents/:number shows it, "today" counted where it is noon (tests move offers minutes back). */
const agent = async (ctx: TestApp, number: string) =>
  (await ctx.admin({ method: 'GET', url: `/admin/agents/${enc(number)}?timezone=${enc(zoneAtNoon())}` })).json();
const away = (ctx: TestApp, number: string, payload: unknown = { status: 'away', reason: 'lunch' }) =>
  ctx.admin({ method: 'PUT', url: `/admin/agents/${enc(number)}/availability`, payload });

/** A second dial flow, `agents2`, that rings `support`; and Dial Whom on it. */
async function supportFlow(t: Test, ctx: TestApp) {
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'agents2', name: 'Support', type: 'dial', rules: [], otherwise: { dialGroup: 'support' }, onError: { numbers: ['+919800000099'] } },
  });
  t.equal(flow.statusCode, 201);
  await until(() => ctx.app.rules.current?.flows.has('agents2') === true);
}
const support = async (ctx: TestApp, query: string) =>
  (await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/agents2?CallFrom=09800000001&${query}` })).body;

t.test('an away agent is offered by no group, and the trace says so; set back, offered again', async (t) => {
  const ctx = await setup(t);
  t.equal((await away(ctx, B)).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(B)?.status === 'away');
  t.equal(await dialWhom(ctx, 'CallSid=w1'), `${A},${C}`);
  t.match(await cdrDecision(ctx, 'w1'), { dial: { tier: 'sales', skipped: [{ number: B, group: 'sales', why: 'away' }] } });
  const sim = await ctx.admin({ method: 'POST', url: '/admin/flows/agents/simulate', payload: { endpoint: 'dial-whom', params: { CallSid: 'sim1' } } });
  t.match(sim.json(), { numbers: [A, C], dial: { skipped: [{ number: B, why: 'away' }] } }, 'simulate shows it');
  t.equal((await away(ctx, B, { status: 'available' })).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(B)?.status === 'available');
  t.equal(await dialWhom(ctx, 'CallSid=w2'), `${A},${B},${C}`);
});

t.test('two instances: an agent sent away through one is not offered by the other', async (t) => {
  const one = await setup(t);
  const two = await buildSecondInstance(t, one, { PUBLIC_URL: 'https://exo.example.com' });
  await until(() => two.app.rules.current?.flows.has('agents') === true);
  t.equal((await away(one, A)).statusCode, 200);
  await until(() => two.app.rules.current?.availability.get(A)?.status === 'away');
  t.equal(await dialWhom(two, 'CallSid=i1'), `${B},${C}`);
});

t.test(
  "two instances: one that froze mid-way through a write holding an agent's lock holds up the other's dial events of that agent for seconds, not hours",
  async (t) => {
    const one = await setup(t);
    const two = await buildSecondInstance(t, one, { PUBLIC_URL: 'https://exo.example.com' });
    // As instance two leaves it when its process stops (or its network goes) between the statements
    // of an availability write: the agent's lock taken (src/store/agents.ts), no COMMIT coming.
    const frozen = await two.db.pool.connect();
    frozen.on('error', () => {});
    t.teardown(() => frozen.release(new Error('done')));
    await frozen.query('BEGIN');
    await frozen.query('SELECT pg_advisory_xact_lock(1634168436, hashtext($1))', [A]);
    const started = Date.now();
    t.equal((await event(one, 'CallSid=fz1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales&flow=agents')).statusCode, 200);
    await lockWaiters(t, one.db.pool, 1);
    const recorded = async () => (await one.db.pool.query(`SELECT 1 FROM agent_offers WHERE call_sid = 'fz1' AND number = $1`, [A])).rowCount === 1;
    let done = await recorded();
    while (!done && Date.now() - started < 30_000) {
      await new Promise((r) => setTimeout(r, 100));
      done = await recorded();
    }
    t.ok(done, `the event is recorded once Postgres has ended the frozen transaction (${Date.now() - started} ms)`);
    t.ok(Date.now() - started < 20_000, 'within seconds');
  },
);

t.test("a waiting call offers an agent once they are back from away, or switched on again, in their place in the call's order", async (t) => {
  const ctx = await setup(t);
  t.equal((await away(ctx, B)).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(B)?.status === 'away');
  t.equal(await dialWhom(ctx, 'CallSid=back1'), `${A},${C}`);
  t.equal((await away(ctx, B, { status: 'available' })).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(B)?.status === 'available');
  t.equal(await dialWhom(ctx, 'CallSid=back1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C}`, 'B is back: offered, by priority');
  t.match(await cdrDecision(ctx, 'back1'), { dial: { tier: 'sales', skipped: [{ number: A, why: 'tried' }] } });

  const off = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100003', payload: { active: false } });
  t.equal(off.statusCode, 200);
  await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === C)?.active === false);
  t.equal(await dialWhom(ctx, 'CallSid=back2'), `${A},${B}`);
  const on = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100003', payload: { active: true } });
  t.equal(on.statusCode, 200);
  await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === C)?.active === true);
  t.equal(await dialWhom(ctx, 'CallSid=back2&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C}`, 'switched on again: offered');
});

t.test('round robin with an agent away: the others take turns evenly; back mid-call, the agent is offered after them', async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'round_robin' } });
  t.equal((await away(ctx, B)).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(B)?.status === 'away');
  const answers: string[] = [];
  for (let i = 1; i <= 4; i++) answers.push(await dialWhom(ctx, `CallSid=rr${i}`));
  t.same(answers, [`${A},${C}`, `${C},${A}`, `${A},${C}`, `${C},${A}`], 'A and C first in turn (the turn B would take is not given to C)');
  t.equal((await away(ctx, B, { status: 'available' })).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(B)?.status === 'available');
  t.equal(await dialWhom(ctx, 'CallSid=rr4&DialCallStatus=no-answer&DialWhomNumber=09811100003'), `${A},${B}`, 'B, back, after the members who took turns');
  // rr4's turn was C's: the rotation goes on after C, with B in it again
  t.equal(await dialWhom(ctx, 'CallSid=rr5'), `${A},${B},${C}`, 'and takes turns again in new calls');
  t.equal(await dialWhom(ctx, 'CallSid=rr6'), `${B},${C},${A}`, 'B first in its turn');
});

t.test('round robin with an agent busy, wrapping up or paused: the others take turns evenly; free again mid-call, offered after them', async (t) => {
  // Only away, off-shift and switched-off members were left out of the turns: one on a call (or
  // wrapping up, or paused) kept their turn, and the member after them was offered first in their
  // place, so with A on a long call B was first in two calls of three and C in one.
  const ctx = await setup(t, { sales: { strategy: 'round_robin' } });
  t.equal((await event(ctx, 'CallSid=long&DialWhomNumber=09811100001&Status=busy&EventType=Dial')).statusCode, 200);
  const firsts: string[] = [];
  for (let i = 1; i <= 6; i++) firsts.push((await dialWhom(ctx, `CallSid=rb${i}`)).split(',')[0]!);
  t.same(firsts, [B, C, B, C, B, C], 'B and C first in turn while A is on a call');
  const tr = await cdrDecision(ctx, 'rb6');
  t.match(tr, { dial: { skipped: [{ number: A, why: 'busy' }] } }, 'the trace says why A is not offered');
  await event(ctx, 'CallSid=long&DialWhomNumber=09811100001&Status=free&EventType=Terminal');
  t.equal(await dialWhom(ctx, 'CallSid=rb6&DialCallStatus=no-answer&DialWhomNumber=09811100003'), `${B},${A}`, 'A, free, after the members who took turns');
  const hold = (column: string, number: string) =>
    ctx.db.pool.query(
      `INSERT INTO agent_states (number, ${column}, updated_at) VALUES ($1, now() + interval '1 hour', now())
        ON CONFLICT (number) DO UPDATE SET ${column} = EXCLUDED.${column}`,
      [number],
    );
  await hold('wrap_up_until', B);
  await hold('paused_until', C);
  const more: string[] = [];
  for (let i = 7; i <= 9; i++) more.push(await dialWhom(ctx, `CallSid=rb${i}`));
  t.same(more, [A, A, A], 'B wrapping up and C paused: A, the only one left, is offered, in every call');
  await ctx.db.pool.query('UPDATE agent_states SET wrap_up_until = NULL, paused_until = NULL');
  const again: string[] = [];
  for (let i = 10; i <= 12; i++) again.push((await dialWhom(ctx, `CallSid=rb${i}`)).split(',')[0]!);
  t.same(new Set(again).size, 3, `all three take turns again: ${again.join(' ')}`);
});

t.test('round robin over a steady stream of calls, each caller still talking when the next calls: every agent takes turns', async (t) => {
  // A position counted among the members offerable at the call alone: with the agent of the call
  // before always on the phone, the members offerable alternated between two sets, and the
  // positions with them, so that B was first in no call at all (A, C, A, C, …).
  const ctx = await setup(t, { sales: { strategy: 'round_robin' } });
  const firsts: string[] = [];
  for (let i = 1; i <= 9; i++) {
    const first = (await dialWhom(ctx, `CallSid=st${i}`)).split(',')[0]!;
    firsts.push(first);
    t.equal((await event(ctx, `CallSid=st${i}&DialWhomNumber=${enc(first)}&Status=busy&EventType=Dial`)).statusCode, 200);
    if (i > 1) await event(ctx, `CallSid=st${i - 1}&DialWhomNumber=${enc(firsts[i - 2]!)}&Status=free&EventType=Terminal`);
  }
  t.same(firsts, [A, B, C, A, B, C, A, B, C], 'each agent first in one call of three');
});

const E = '+919811100005';
/** The dial flow's action replaced by `otherwise`, once the snapshot has it. */
const putAction = async (t: Test, ctx: TestApp, otherwise: Record<string, unknown>) => {
  const flow = await ctx.admin({
    method: 'PUT',
    url: '/admin/flows/agents',
    payload: { name: 'Agents', type: 'dial', rules: [], otherwise, onError: { numbers: ['+919800000099'] } },
  });
  t.equal(flow.statusCode, 200);
  const want = JSON.stringify(otherwise);
  await until(() => JSON.stringify(ctx.app.rules.current?.flows.get('agents')?.otherwise) === want);
};
const stored = async (ctx: TestApp, sid: string) => (await ctx.db.pool.query('SELECT "order", tier_ends FROM dial_calls WHERE call_sid = $1', [sid])).rows[0];
/** A group's members replaced (by priority, in the order given), once `instances` have them. */
async function setMembers(t: Test, ctx: TestApp, slug: string, numbers: string[], instances: TestApp[] = [ctx]) {
  const members = numbers.map((number, i) => ({ number, priority: i + 1 }));
  t.equal((await ctx.admin({ method: 'PATCH', url: `/admin/dial-groups/${slug}`, payload: { members } })).statusCode, 200);
  await until(() => instances.every((i) => i.app.rules.current?.dialGroups.get(slug)?.members.length === numbers.length));
}

t.test('a member added to a group during a call is offered to that call, at the end of its tier', async (t) => {
  const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] } });
  t.equal(await dialWhom(ctx, 'CallSid=add1'), `${A},${B},${C}`);
  await setMembers(t, ctx, 'sales', ['09811100005', '09811100001', '09811100002', '09811100003']);
  t.equal(
    await dialWhom(ctx, 'CallSid=add1&DialCallStatus=no-answer&DialWhomNumber=09811100001'),
    `${B},${C},${E}`,
    'E, added, after the members already in line',
  );
  t.equal(await dialWhom(ctx, 'CallSid=add1&DialCallStatus=no-answer&DialWhomNumber=09811100002'), `${C},${E}`);
  const row = await ctx.db.pool.query('SELECT "order", tier_ends FROM dial_calls WHERE call_sid = $1', ['add1']);
  t.same(row.rows[0], { order: [A, B, C, E, D], tier_ends: [4, 5] }, 'stored in its tier, before the next tier');
  t.equal(await dialWhom(ctx, 'CallSid=add1&DialCallStatus=no-answer&DialWhomNumber=09811100003&Legs[0][Number]=09811100002'), E);
  t.equal(await dialWhom(ctx, 'CallSid=add2'), `${E},${A},${B},${C}`, 'a new call orders E by priority');
});

t.test('a tier the dial action gains during a call is offered to that call once the first has nobody left', async (t) => {
  const ctx = await setup(t);
  t.equal(await dialWhom(ctx, 'CallSid=gain1'), `${A},${B},${C}`);
  const flow = await ctx.admin({
    method: 'PUT',
    url: '/admin/flows/agents',
    payload: { name: 'Agents', type: 'dial', rules: [], otherwise: { dialGroups: ['sales', 'support'] }, onError: { numbers: ['+919800000099'] } },
  });
  t.equal(flow.statusCode, 200);
  await until(() => {
    const otherwise = ctx.app.rules.current?.flows.get('agents')?.otherwise;
    return otherwise !== undefined && 'dialGroups' in otherwise;
  });
  t.equal(await dialWhom(ctx, 'CallSid=gain1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C}`);
  t.equal(await dialWhom(ctx, 'CallSid=gain1&DialCallStatus=no-answer&DialWhomNumber=09811100003&Legs[0][Number]=09811100002'), D, 'support, the tier gained');
  t.match(await cdrDecision(ctx, 'gain1'), { dial: { tier: 'support', tierIndex: 1 } });
});

t.test("a group put in front of the waiting call's group in the action is offered first to the waiting call, as a tier of its own", async (t) => {
  const ctx = await setup(t, { action: { dialGroup: 'support' } });
  t.equal(await dialWhom(ctx, 'CallSid=front1'), `${C},${D}`);
  await putAction(t, ctx, { dialGroups: ['sales', 'support'] });
  t.equal(await dialWhom(ctx, 'CallSid=front1&DialCallStatus=no-answer&DialWhomNumber=09811100003'), `${A},${B}`, 'sales alone, now first');
  t.match(await cdrDecision(ctx, 'front1'), { dial: { tier: 'sales', tierIndex: 0 } });
  t.equal(
    await dialWhom(ctx, 'CallSid=front1&DialCallStatus=no-answer&DialWhomNumber=09811100002&Legs[0][Number]=09811100001'),
    D,
    'then support, without C (tried)',
  );
  t.match(await cdrDecision(ctx, 'front1'), { dial: { tier: 'support', tierIndex: 1 } });
  t.same(await stored(ctx, 'front1'), { order: [C, A, B, D], tier_ends: [3, 4] }, "C keeps its place first in the call's order, now in sales");
});

t.test("a group removed from the action: a member added to the remaining group joins that group's tier", async (t) => {
  const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] } });
  t.equal(await dialWhom(ctx, 'CallSid=rm1'), `${A},${B},${C}`);
  await putAction(t, ctx, { dialGroup: 'support' });
  await setMembers(t, ctx, 'support', ['09811100003', '09811100004', '09811100005']);
  const got = await dialWhom(ctx, 'CallSid=rm1&DialCallStatus=no-answer&DialWhomNumber=09811100001');
  t.equal(got, `${C},${D},${E}`, "support's members in its order, E after D");
});

t.test(
  "a number in two tiers placed in the second at the call's start, switched on in the first during the call: paced by the tier that offered it",
  async (t) => {
    const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] }, support: { wrapUpSeconds: 60 } });
    const off = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100003', payload: { active: false } });
    t.equal(off.statusCode, 200);
    await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === C)?.active === false);
    t.equal(await dialWhom(ctx, 'CallSid=mv1'), `${A},${B}`);
    t.equal(await dialWhom(ctx, 'CallSid=mv1&DialCallStatus=no-answer&DialWhomNumber=09811100002&Legs[0][Number]=09811100001'), `${C},${D}`);
    t.match(await cdrDecision(ctx, 'mv1'), { dial: { tier: 'support', tierIndex: 1 } }, 'C offered by support');
    const on = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100003', payload: { active: true } });
    t.equal(on.statusCode, 200);
    await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === C)?.active === true);
    t.equal(await dialWhom(ctx, 'CallSid=mv1&DialCallStatus=completed&DialWhomNumber=09811100003'), D);
    const offer = (await ctx.db.pool.query(`SELECT group_slug, outcome FROM agent_offers WHERE call_sid = 'mv1' AND number = $1`, [C])).rows;
    t.same(offer, [{ group_slug: 'support', outcome: 'answered' }], "the offer is support's");
    t.match(await agent(ctx, C), { state: 'wrapping_up' }, "support's wrapUpSeconds (60)");
  },
);

t.test(
  "a number in the first tier at the call's start, switched off there during the call: offered, traced and paced by the tier it is on duty in",
  async (t) => {
    const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] }, support: { wrapUpSeconds: 60 } });
    t.equal(await dialWhom(ctx, 'CallSid=mv2'), `${A},${B},${C}`);
    const off = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100003', payload: { active: false } });
    t.equal(off.statusCode, 200);
    await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === C)?.active === false);
    t.equal(await dialWhom(ctx, 'CallSid=mv2&DialCallStatus=no-answer&DialWhomNumber=09811100001'), B, 'not offered as sales any more');
    t.equal(await dialWhom(ctx, 'CallSid=mv2&DialCallStatus=no-answer&DialWhomNumber=09811100002&Legs[0][Number]=09811100001'), `${C},${D}`);
    t.match(await cdrDecision(ctx, 'mv2'), { dial: { tier: 'support', tierIndex: 1 } }, 'C offered as support');
    t.equal(await dialWhom(ctx, 'CallSid=mv2&DialCallStatus=completed&DialWhomNumber=09811100003'), D);
    const offer = (await ctx.db.pool.query(`SELECT group_slug FROM agent_offers WHERE call_sid = 'mv2' AND number = $1`, [C])).rows;
    t.same(offer, [{ group_slug: 'support' }], "the offer is support's, the tier that offered it");
    t.match(await agent(ctx, C), { state: 'wrapping_up' }, "support's wrapUpSeconds (60)");
  },
);

t.test('two numbers in two tiers that swap tiers at once during a call: each is offered, traced and paced by its tier now', async (t) => {
  // sales and support both hold C and D; D is switched off in sales, so sales offers C and support D
  const both = (active: Record<string, boolean>) => ({
    members: [
      { number: '09811100003', priority: 1, active: active.C },
      { number: '09811100004', priority: 2, active: active.D },
    ],
  });
  const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] }, sales: both({ C: true, D: false }), support: { wrapUpSeconds: 60 } });
  t.equal(await dialWhom(ctx, 'CallSid=swap1'), C);
  t.match(await cdrDecision(ctx, 'swap1'), { dial: { tier: 'sales', tierIndex: 0 } });
  // one edit swaps them: C off in sales (now in support's tier), D on in sales; the tiers keep their sizes
  t.equal((await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales', payload: both({ C: false, D: true }) })).statusCode, 200);
  await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === D)?.active === true);
  t.equal(await dialWhom(ctx, 'CallSid=swap1&DialCallStatus=no-answer&DialWhomNumber=09811100003'), D);
  t.match(await cdrDecision(ctx, 'swap1'), { dial: { tier: 'sales', tierIndex: 0 } }, 'D offered by sales, where it is on duty now');
  t.same(await stored(ctx, 'swap1'), { order: [D, C], tier_ends: [1, 2] }, 'each in the tier it is in now');
  t.equal(await dialWhom(ctx, 'CallSid=swap1&DialCallStatus=completed&DialWhomNumber=09811100004&Legs[0][Number]=09811100003'), '');
  const offers = (await ctx.db.pool.query(`SELECT number, group_slug, outcome FROM agent_offers WHERE call_sid = 'swap1' ORDER BY number`)).rows;
  t.same(
    offers,
    [
      { number: C, group_slug: 'sales', outcome: 'no-answer' },
      { number: D, group_slug: 'sales', outcome: 'answered' },
    ],
    'each offer is the group that offered it',
  );
  t.match(await agent(ctx, D), { state: 'available' }, "sales' pacing (no wrap-up), not support's 60 s");
});

t.test('two instances, three attempts of one call at once, all seeing a member added: it joins the order once', async (t) => {
  const one = await setup(t);
  const two = await buildSecondInstance(t, one, { PUBLIC_URL: 'https://exo.example.com' });
  await until(() => two.app.rules.current?.flows.has('agents') === true);
  t.equal(await dialWhom(one, 'CallSid=cc1'), `${A},${B},${C}`);
  await setMembers(t, one, 'sales', ['09811100001', '09811100002', '09811100003', '09811100005'], [one, two]);
  const got = await Promise.all([
    dialWhom(one, 'CallSid=cc1&DialCallStatus=no-answer&DialWhomNumber=09811100001'),
    dialWhom(two, 'CallSid=cc1&DialCallStatus=busy&DialWhomNumber=09811100002'),
    dialWhom(two, 'CallSid=cc1&DialCallStatus=no-answer&DialWhomNumber=09811100001'),
  ]);
  t.equal(got[0], got[2], 'the two polls of one attempt get one answer');
  t.ok(
    got.every((numbers) => numbers.endsWith(E)),
    `E last in every answer (${got.join(' / ')})`,
  );
  t.same(await stored(one, 'cc1'), { order: [A, B, C, E], tier_ends: null });
});

t.test('simulate of a waiting call with a member added shows them and writes nothing', async (t) => {
  const ctx = await setup(t);
  t.equal(await dialWhom(ctx, 'CallSid=pv1'), `${A},${B},${C}`);
  await setMembers(t, ctx, 'sales', ['09811100001', '09811100002', '09811100003', '09811100005']);
  const sim = await ctx.admin({
    method: 'POST',
    url: '/admin/flows/agents/simulate',
    payload: { endpoint: 'dial-whom', params: { CallSid: 'pv1', DialCallStatus: 'no-answer', DialWhomNumber: '09811100001' } },
  });
  t.match(sim.json(), { numbers: [B, C, E] });
  t.same(await stored(ctx, 'pv1'), { order: [A, B, C], tier_ends: null }, 'nothing stored');
  t.equal(await dialWhom(ctx, 'CallSid=pv1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C},${E}`);
  t.equal(await dialWhom(ctx, 'CallSid=pv1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C},${E}`, 'repeated poll');
});

t.test('round robin: a member added during a call goes after the rotated order', async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'round_robin' } });
  t.equal(await dialWhom(ctx, 'CallSid=rrx0'), `${A},${B},${C}`);
  t.equal(await dialWhom(ctx, 'CallSid=rrx1'), `${B},${C},${A}`);
  await setMembers(t, ctx, 'sales', ['09811100001', '09811100002', '09811100003', '09811100005']);
  t.equal(await dialWhom(ctx, 'CallSid=rrx1&DialCallStatus=no-answer&DialWhomNumber=09811100002'), `${C},${A},${E}`);
});

t.test('a list of numbers edited during a call: a number added is offered to it, one removed no longer', async (t) => {
  const ctx = await setup(t, { action: { numbers: [A, B] } });
  t.equal(await dialWhom(ctx, 'CallSid=nm1'), `${A},${B}`);
  await putAction(t, ctx, { numbers: [A, B, D] });
  t.equal(await dialWhom(ctx, 'CallSid=nm1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${D}`);
  t.same(await stored(ctx, 'nm1'), { order: [A, B, D], tier_ends: null });
  await putAction(t, ctx, { numbers: [D, A] });
  t.equal(await dialWhom(ctx, 'CallSid=nm1&DialCallStatus=busy&DialWhomNumber=09811100001'), D, 'B removed; D keeps its place after A');
  t.same(await stored(ctx, 'nm1'), { order: [A, D], tier_ends: null });
});

t.test('a call whose action turns from a group to a list of numbers (a rule on DialCallStatus, or the flow edited) is offered those numbers', async (t) => {
  // A re-fetch whose flow now answers a list (a rule `dialCallStatus: no-answer` → a supervisor's
  // number, or the flow edited mid-call) was answered from the group's stored order among the
  // list's numbers, which share none: empty, and Exotel left the Connect without ringing anyone.
  const S = '+919800000077';
  const ctx = await setup(t);
  const rule = { name: 'to the supervisor', when: { dialCallStatus: ['no-answer', 'busy'] }, then: { numbers: [S] } };
  const flow = await ctx.admin({
    method: 'PUT',
    url: '/admin/flows/agents',
    payload: { name: 'Agents', type: 'dial', rules: [rule], otherwise: { dialGroup: 'sales' }, onError: { numbers: ['+919800000099'] } },
  });
  t.equal(flow.statusCode, 200);
  await until(() => ctx.app.rules.current?.flows.get('agents')?.rules.length === 1);
  t.equal(await dialWhom(ctx, 'CallSid=gn1'), `${A},${B},${C}`);
  t.equal(await dialWhom(ctx, 'CallSid=gn1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), S, 'A did not answer: the supervisor');
  t.equal(await dialWhom(ctx, 'CallSid=gn1&DialCallStatus=no-answer&DialWhomNumber=09800000077'), '', 'the supervisor did not answer either: nobody left');
  const connect = await ctx.app.inject({
    method: 'GET',
    url: `/exotel/connect/agents?CallSid=gn2&CallFrom=09800000001&DialCallStatus=busy&DialWhomNumber=09811100002`,
  });
  t.same(connect.json().destination.numbers, [S], 'Connect alike');

  await putAction(t, ctx, { dialGroup: 'sales' });
  t.equal(await dialWhom(ctx, 'CallSid=gn3'), `${A},${B},${C}`);
  await putAction(t, ctx, { numbers: [D, A] });
  t.equal(
    await dialWhom(ctx, 'CallSid=gn3&DialCallStatus=failed&DialWhomNumber=09811100002'),
    `${A},${D}`,
    'the flow edited mid-call: its numbers, A in its place',
  );
  t.same(await stored(ctx, 'gn3'), { order: [A, D], tier_ends: null });
});

t.test('overflow: when the first tier is all away the second is offered; an agent of the first back mid-call is offered next', async (t) => {
  const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] } });
  for (const n of [A, B, C]) t.equal((await away(ctx, n)).statusCode, 200);
  await until(() => [A, B, C].every((n) => ctx.app.rules.current?.availability.get(n)?.status === 'away'));
  t.equal(await dialWhom(ctx, 'CallSid=ov1'), D);
  t.match(await cdrDecision(ctx, 'ov1'), { dial: { tier: 'support', tierIndex: 1 } });
  t.equal((await away(ctx, A, { status: 'available' })).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(A)?.status === 'available');
  t.equal(await dialWhom(ctx, 'CallSid=ov1&DialCallStatus=no-answer&DialWhomNumber=09811100004'), A, 'A is back: the first tier again');
  t.match(await cdrDecision(ctx, 'ov1'), { dial: { tier: 'sales', tierIndex: 0 } });
});

t.test('tiers: an agent switched off in the first tier, away when the call came in, is offered once back by the tier it is on duty in', async (t) => {
  const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] } });
  const off = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100003', payload: { active: false } });
  t.equal(off.statusCode, 200);
  await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === C)?.active === false);
  t.equal((await away(ctx, C)).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(C)?.status === 'away');
  t.equal(await dialWhom(ctx, 'CallSid=x1'), `${A},${B}`);
  t.equal((await away(ctx, C, { status: 'available' })).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(C)?.status === 'available');
  t.equal(await dialWhom(ctx, 'CallSid=x1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), B, 'switched off in sales: not offered as sales');
  t.match(await cdrDecision(ctx, 'x1'), { dial: { tier: 'sales', skipped: [{ number: C, group: 'sales', why: 'inactive' }] } });
  t.equal(await dialWhom(ctx, 'CallSid=x1&DialCallStatus=no-answer&DialWhomNumber=09811100002'), `${C},${D}`, 'but as support, once sales has nobody left');
  t.match(await cdrDecision(ctx, 'x1'), { dial: { tier: 'support' } });
});

t.test('a number in two tiers, offered as the second, is paced by the second: its wrap-up, and its group in the trace', async (t) => {
  const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] }, support: { wrapUpSeconds: 60 } });
  const off = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100003', payload: { active: false } });
  t.equal(off.statusCode, 200);
  await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === C)?.active === false);
  t.equal(await dialWhom(ctx, 'CallSid=pace1'), `${A},${B}`);
  t.equal(await dialWhom(ctx, 'CallSid=pace1&DialCallStatus=no-answer&DialWhomNumber=09811100002&Legs[0][Number]=09811100001'), `${C},${D}`);
  t.equal(await dialWhom(ctx, 'CallSid=pace1&DialCallStatus=completed&DialWhomNumber=09811100003'), D);
  t.match(await agent(ctx, C), { state: 'wrapping_up', today: { offers: 1, answers: 1 } }, "support's wrapUpSeconds");
  t.equal(await dialWhom(ctx, 'CallSid=pace3'), `${A},${B}`);
  t.equal(await dialWhom(ctx, 'CallSid=pace3&DialCallStatus=no-answer&DialWhomNumber=09811100002&Legs[0][Number]=09811100001'), D);
  const trace = (await cdrDecision(ctx, 'pace3')) as { dial: { tier: string; skipped: Array<{ number: string }> } };
  t.equal(trace.dial.tier, 'support');
  t.same(
    trace.dial.skipped.filter((s) => s.number === C),
    [
      { number: C, group: 'sales', why: 'inactive' },
      { number: C, group: 'support', why: 'wrap-up' },
    ],
    'wrapping up in support, the tier it is offered by',
  );
});

t.test("sticky: when the caller's last agent is away, the one they talked to before goes first", async (t) => {
  const ctx = await setup(t, { sales: { sticky: { enabled: true, lookbackDays: 30 } } });
  await ctx.db.pool.query(
    `INSERT INTO caller_agents (caller, agent, connected_at) VALUES ($1, $2, now() - interval '2 days'), ($1, $3, now() - interval '1 day')`,
    ['+919800000001', B, C],
  );
  t.equal(await dialWhom(ctx, 'CallSid=st1'), `${C},${A},${B}`, 'C, the last, first');
  t.equal((await away(ctx, C)).statusCode, 200);
  await until(() => ctx.app.rules.current?.availability.get(C)?.status === 'away');
  t.equal(await dialWhom(ctx, 'CallSid=st2'), `${B},${A}`, 'C away: B, the one before, first');
});

/** Sticky per tier: support rings D then E; sales' A, B and C are busy on other calls (or free again). */
const SUPPORT_D_E = {
  members: [
    { number: '09811100004', priority: 1 },
    { number: '09811100005', priority: 2 },
  ],
};
const salesBusy = async (ctx: TestApp, busy: boolean) => {
  for (const n of ['09811100001', '09811100002', '09811100003'])
    await event(ctx, `CallSid=busy-${n}&DialWhomNumber=${n}&Status=${busy ? 'busy&EventType=Dial' : 'free&EventType=Terminal'}`);
};
const callOrder = async (ctx: TestApp, callSid: string) =>
  (await ctx.db.pool.query<{ order: string[] }>('SELECT "order" FROM dial_calls WHERE call_sid = $1', [callSid])).rows[0]?.order;
const simulate = async (ctx: TestApp, callSid: string) =>
  (
    await ctx.admin({
      method: 'POST',
      url: '/admin/flows/agents/simulate',
      payload: { endpoint: 'dial-whom', params: { CallSid: callSid, CallFrom: '09800000001' } },
    })
  ).json();

t.test('sticky per tier: a caller who overflows to a sticky tier behind a non-sticky one meets their last agent first there', async (t) => {
  const ctx = await setup(t, { support: { ...SUPPORT_D_E, sticky: { enabled: true, lookbackDays: 30 } }, action: { dialGroups: ['sales', 'support'] } });
  await salesBusy(ctx, true);
  t.equal(await dialWhom(ctx, 'CallSid=sp1'), `${D},${E}`, 'sales all busy: support, nobody connected yet');
  await dialWhom(ctx, 'CallSid=sp1&DialCallStatus=completed&DialWhomNumber=09811100005');
  t.equal(await dialWhom(ctx, 'CallSid=sp2'), `${E},${D}`, "the caller's last agent, E, first in support");
  t.match(await cdrDecision(ctx, 'sp2'), { dial: { tier: 'support', tierIndex: 1, sticky: 'last 30 days' } }, 'as the trace says');
  t.match(await simulate(ctx, 'sp-sim'), { numbers: [E, D], dial: { tier: 'support', sticky: 'last 30 days' } }, 'simulate agrees');
  t.equal(
    (await ctx.app.inject({ method: 'GET', url: '/exotel/dial-whom/agents?CallSid=sp3&CallFrom=09800000002' })).body,
    `${D},${E}`,
    'another caller: support by priority',
  );
  await salesBusy(ctx, false);
  t.same(await callOrder(ctx, 'sp2'), [A, B, C, E, D], "sales, not sticky, in its own order; the call's order keeps E first in support");
});

t.test("sticky per tier: a tier whose group is not sticky is arranged without sticky, and the sticky tier's agent goes first in it", async (t) => {
  const ctx = await setup(t, { sales: { sticky: { enabled: true, lookbackDays: 7 } }, support: SUPPORT_D_E, action: { dialGroups: ['sales', 'support'] } });
  t.equal(await dialWhom(ctx, 'CallSid=so1'), `${A},${B},${C}`);
  await dialWhom(ctx, 'CallSid=so1&DialCallStatus=completed&DialWhomNumber=09811100002');
  await ctx.db.pool.query(`UPDATE caller_agents SET connected_at = now() - interval '1 day' WHERE agent = $1`, [B]);
  await salesBusy(ctx, true);
  t.equal(await dialWhom(ctx, 'CallSid=so2'), `${D},${E}`);
  await dialWhom(ctx, 'CallSid=so2&DialCallStatus=completed&DialWhomNumber=09811100005');
  t.equal(await dialWhom(ctx, 'CallSid=so3'), `${D},${E}`, "E, the caller's last agent, is not moved first in support (not sticky)");
  t.match(await cdrDecision(ctx, 'so3'), { dial: { tier: 'support', sticky: null } });
  t.match(await simulate(ctx, 'so-sim'), { numbers: [D, E], dial: { tier: 'support', sticky: null } }, 'simulate agrees');
  await salesBusy(ctx, false);
  t.equal(await dialWhom(ctx, 'CallSid=so4'), `${B},${A},${C}`, "sales' own sticky agent, B (a day ago, within 7), first in sales");
  t.match(await cdrDecision(ctx, 'so4'), { dial: { tier: 'sales', sticky: 'last 7 days' } });
  t.same(await callOrder(ctx, 'so4'), [B, A, C, D, E], 'and support as its strategy orders it');
  t.match(await simulate(ctx, 'so-sim2'), { numbers: [B, A, C], dial: { tier: 'sales', sticky: 'last 7 days' } }, 'simulate agrees');
});

t.test("sticky per tier: each tier looks back its own group's lookbackDays", async (t) => {
  const ctx = await setup(t, {
    sales: { sticky: { enabled: true, lookbackDays: 7 } },
    support: { ...SUPPORT_D_E, sticky: { enabled: true, lookbackDays: 60 } },
    action: { dialGroups: ['sales', 'support'] },
  });
  await dialWhom(ctx, 'CallSid=lb1&DialCallStatus=completed&DialWhomNumber=09811100002');
  await dialWhom(ctx, 'CallSid=lb2&DialCallStatus=completed&DialWhomNumber=09811100005');
  await ctx.db.pool.query(`UPDATE caller_agents SET connected_at = now() - interval '20 days'`);
  await dialWhom(ctx, 'CallSid=lb3');
  t.same(await callOrder(ctx, 'lb3'), [A, B, C, E, D], "B 20 days ago: past sales' 7; E 20 days ago: within support's 60");
  await ctx.db.pool.query(`UPDATE caller_agents SET connected_at = now() - interval '3 days' WHERE agent = $1`, [B]);
  t.equal(await dialWhom(ctx, 'CallSid=lb4'), `${B},${A},${C}`, 'B 3 days ago: first in sales');
  t.same(await callOrder(ctx, 'lb4'), [B, A, C, E, D], 'and E, older, still first in support');
  await salesBusy(ctx, true);
  t.match(await simulate(ctx, 'lb-sim'), { numbers: [E, D], dial: { tier: 'support', sticky: 'last 60 days' } }, 'simulate agrees');
  await ctx.db.pool.query(`UPDATE caller_agents SET connected_at = now() - interval '61 days' WHERE agent = $1`, [E]);
  t.equal(await dialWhom(ctx, 'CallSid=lb5'), `${D},${E}`, "E 61 days ago: past support's 60");
});

t.test('missed offers pause an agent: re-fetches naming them with no-answer or busy; the pause lasts, or ends when set available', async (t) => {
  const ctx = await setup(t, { sales: { maxMissedOffers: 2, missedPauseSeconds: 600 } });
  t.equal(await dialWhom(ctx, 'CallSid=m1'), `${A},${B},${C}`);
  t.equal(await dialWhom(ctx, `CallSid=m1&DialCallStatus=no-answer&DialWhomNumber=09811100001`), `${B},${C}`);
  t.match(await agent(ctx, A), { state: 'available', missedOffers: 1, today: { offers: 1, misses: 1 } });
  t.equal(await dialWhom(ctx, 'CallSid=m2'), `${A},${B},${C}`, 'one miss: still offered');
  t.equal(await dialWhom(ctx, `CallSid=m2&DialCallStatus=busy&DialWhomNumber=09811100001`), `${B},${C}`);
  const paused = await agent(ctx, A);
  t.match(paused, { state: 'paused', paused: { reason: /^2 offers in a row not answered \(the last: busy, call m2\)$/ } });
  t.ok(Date.parse(paused.paused.until) - Date.now() > 590_000, 'for missedPauseSeconds');
  t.equal(await dialWhom(ctx, 'CallSid=m3'), `${B},${C}`, 'paused: not offered');
  t.match(await cdrDecision(ctx, 'm3'), { dial: { skipped: [{ number: A, group: 'sales', why: 'paused' }] } });
  t.equal((await away(ctx, A, { status: 'available' })).statusCode, 200);
  t.equal(await dialWhom(ctx, 'CallSid=m4'), `${A},${B},${C}`, 'set available: offered again at once');
});

t.test('concurrent polls of one attempt count its miss once', async (t) => {
  const ctx = await setup(t, { sales: { maxMissedOffers: 2 } });
  await dialWhom(ctx, 'CallSid=c1');
  const answers = await Promise.all(Array.from({ length: 10 }, () => dialWhom(ctx, 'CallSid=c1&DialCallStatus=no-answer&DialWhomNumber=09811100001')));
  t.same(new Set(answers), new Set([`${B},${C}`]), 'every poll gets one answer');
  t.match(await agent(ctx, A), { state: 'available', missedOffers: 1, today: { offers: 1, misses: 1 } }, 'one miss, not ten: not paused');
});

t.test('dial events: an answered call resets the misses and starts the wrap-up; an offer that ends unanswered is a miss', async (t) => {
  const ctx = await setup(t, { sales: { wrapUpSeconds: 60, maxMissedOffers: 3 } });
  const url = (await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents?CallSid=e0' })).json().dial_passthru_event_url as string;
  t.match(url, /\/exotel\/dial-events\?group=sales&flow=agents$/, 'the events URL names the group offered and the flow');
  // two unanswered offers: Dial, then free without Answered, within the ringing time
  for (const sid of ['e1', 'e2']) {
    t.equal((await event(ctx, `CallSid=${sid}&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales`)).statusCode, 200);
    t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: sid } });
    t.equal((await event(ctx, `CallSid=${sid}&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales`)).statusCode, 200);
  }
  t.match(await agent(ctx, A), { state: 'available', missedOffers: 2, today: { offers: 2, misses: 2, answers: 0 } });
  // an answered call
  await event(ctx, 'CallSid=e3&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  await event(ctx, 'CallSid=e3&DialWhomNumber=09811100001&Status=busy&EventType=Answered&group=sales');
  t.match(await agent(ctx, A), { state: 'on_call', missedOffers: 0, today: { answers: 1 } }, 'answered: the count is reset');
  t.equal(await dialWhom(ctx, 'CallSid=e4'), `${B},${C}`, 'on the call: not offered (busy)');
  await event(ctx, 'CallSid=e3&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales');
  const wrapping = await agent(ctx, A);
  t.match(wrapping, { state: 'wrapping_up' });
  t.ok(Date.parse(wrapping.wrapUpUntil) - Date.now() > 50_000, 'for wrapUpSeconds after the call ended');
  t.equal(await dialWhom(ctx, 'CallSid=e5'), `${B},${C}`);
  t.match(await cdrDecision(ctx, 'e5'), { dial: { skipped: [{ number: A, why: 'wrap-up' }] } });
  // repeated events change nothing more
  await event(ctx, 'CallSid=e3&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales');
  t.match(await agent(ctx, A), { today: { offers: 3, answers: 1, misses: 2 } });
  const { rows } = await ctx.db.pool.query('SELECT call_sid, outcome FROM agent_offers WHERE number = $1 ORDER BY call_sid', [A]);
  t.same(rows, [
    { call_sid: 'e1', outcome: 'no-answer' },
    { call_sid: 'e2', outcome: 'no-answer' },
    { call_sid: 'e3', outcome: 'answered' },
  ]);
});

t.test('an agent offered again in the same call by a second flow: a second offer, whose answer, wrap-up and miss count', async (t) => {
  const ctx = await setup(t, { sales: { maxMissedOffers: 3 }, support: { wrapUpSeconds: 60, maxMissedOffers: 3 } });
  await supportFlow(t, ctx);
  const eventsUrl = async (path: string) =>
    new URL((await ctx.app.inject({ method: 'GET', url: `${path}&CallFrom=09800000001` })).json().dial_passthru_event_url as string).search.slice(1);
  // Connect: sales offers C, who does not answer (events of flow agents)
  const first = await eventsUrl('/exotel/connect/agents?CallSid=f1');
  t.equal(first, 'group=sales&flow=agents');
  await event(ctx, `CallSid=f1&DialWhomNumber=09811100003&Status=busy&EventType=Dial&${first}`);
  await event(ctx, `CallSid=f1&DialWhomNumber=09811100003&Status=free&EventType=Terminal&${first}`);
  t.match(await agent(ctx, C), { missedOffers: 1, today: { offers: 1, answers: 0, misses: 1 } });
  // then, in the same call, a Connect to support offers C again, who answers
  const second = await eventsUrl('/exotel/connect/agents2?CallSid=f1');
  t.equal(second, 'group=support&flow=agents2');
  await event(ctx, `CallSid=f1&DialWhomNumber=09811100003&Status=busy&EventType=Dial&${second}`);
  await event(ctx, `CallSid=f1&DialWhomNumber=09811100003&Status=busy&EventType=Answered&${second}`);
  t.match(await agent(ctx, C), { state: 'on_call', missedOffers: 0, today: { offers: 2, answers: 1, misses: 1 } }, 'the answer counts');
  await event(ctx, `CallSid=f1&DialWhomNumber=09811100003&Status=free&EventType=Terminal&${second}`);
  const after = await agent(ctx, C);
  t.match(after, { state: 'wrapping_up' }, "support's wrap-up starts");
  t.match(after.recentOffers, [
    { callSid: 'f1', flow: 'agents2', group: 'support', outcome: 'answered' },
    { callSid: 'f1', flow: 'agents', group: 'sales', outcome: 'no-answer' },
  ]);
  // plain Dial Whom, re-fetches only: the second flow's miss counts too
  await ctx.db.pool.query('UPDATE agent_states SET wrap_up_until = NULL WHERE number = $1', [C]);
  t.equal(await dialWhom(ctx, 'CallSid=f2'), `${A},${B},${C}`);
  await dialWhom(ctx, 'CallSid=f2&DialCallStatus=no-answer&DialWhomNumber=09811100003');
  t.equal(await support(ctx, 'CallSid=f2'), `${C},${D}`, "support's own order for the call");
  t.equal(await support(ctx, 'CallSid=f2&DialCallStatus=no-answer&DialWhomNumber=09811100003'), D);
  t.match(await agent(ctx, C), { missedOffers: 2, today: { offers: 4, answers: 1, misses: 3 } }, 'both misses of f2 count');
});

t.test("events whose URL names no flow (handed out before an upgrade): the offer they record is the first reporting flow's, once", async (t) => {
  const ctx = await setup(t, { sales: { maxMissedOffers: 3 }, support: { maxMissedOffers: 3 } });
  await supportFlow(t, ctx);
  t.equal(await dialWhom(ctx, 'CallSid=u1'), `${A},${B},${C}`);
  await event(ctx, 'CallSid=u1&DialWhomNumber=09811100003&Status=busy&EventType=Dial&group=sales');
  await event(ctx, 'CallSid=u1&DialWhomNumber=09811100003&Status=free&EventType=Terminal&group=sales');
  await dialWhom(ctx, 'CallSid=u1&DialCallStatus=no-answer&DialWhomNumber=09811100003');
  t.match(await agent(ctx, C), { today: { offers: 1, misses: 1 } }, 'the events and the re-fetch report one offer');
  t.equal(await support(ctx, 'CallSid=u1'), `${C},${D}`);
  t.equal(await support(ctx, 'CallSid=u1&DialCallStatus=no-answer&DialWhomNumber=09811100003'), D);
  t.match(await agent(ctx, C), { missedOffers: 2, today: { offers: 2, misses: 2 } }, "the second flow's offer is its own");
  const { rows } = await ctx.db.pool.query('SELECT flow_slug, outcome FROM agent_offers WHERE number = $1 ORDER BY flow_slug', [C]);
  t.same(rows, [
    { flow_slug: 'agents', outcome: 'no-answer' },
    { flow_slug: 'agents2', outcome: 'no-answer' },
  ]);
});

t.test(
  'during an upgrade: an offer ended under an old events URL (no flow) is not taken by a second flow, whose offer, answer and wrap-up count',
  async (t) => {
    const ctx = await setup(t, { sales: { maxMissedOffers: 3 }, support: { wrapUpSeconds: 60, maxMissedOffers: 3 } });
    await supportFlow(t, ctx);
    // flow agents: a Connect answered by an instance of the version before (no flow in its events URL); C does not answer, and no re-fetch reports C
    t.equal(await dialWhom(ctx, 'CallSid=cl1'), `${A},${B},${C}`);
    await event(ctx, 'CallSid=cl1&DialWhomNumber=09811100003&Status=busy&EventType=Dial&group=sales');
    await event(ctx, 'CallSid=cl1&DialWhomNumber=09811100003&Status=free&EventType=Terminal&group=sales');
    await new Promise((r) => setTimeout(r, 1100)); // the call moves on (a second of slack is allowed for clocks)
    // then support (agents2), on this version: C answers
    const url = new URL(
      (await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents2?CallSid=cl1&CallFrom=09800000001' })).json().dial_passthru_event_url as string,
    ).search.slice(1);
    await event(ctx, `CallSid=cl1&DialWhomNumber=09811100003&Status=busy&EventType=Dial&${url}`);
    await event(ctx, `CallSid=cl1&DialWhomNumber=09811100003&Status=busy&EventType=Answered&${url}`);
    await ctx.app.inject({
      method: 'GET',
      url: '/exotel/connect/agents2?CallSid=cl1&CallFrom=09800000001&DialCallStatus=completed&DialWhomNumber=09811100003',
    });
    await event(ctx, `CallSid=cl1&DialWhomNumber=09811100003&Status=free&EventType=Terminal&${url}`);
    const c = await agent(ctx, C);
    t.match(c, { state: 'wrapping_up', today: { offers: 2, answers: 1, misses: 1 } });
    const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
    t.match(text, /exoroute_agent_answers_total\{group="support"\} 1\n/);
  },
);

t.test('without Answered events, a leg longer than the ringing time was answered: no miss, and a wrap-up', async (t) => {
  const ctx = await setup(t, { sales: { wrapUpSeconds: 30, maxMissedOffers: 1 } });
  await event(ctx, 'CallSid=l1&DialWhomNumber=09811100002&Status=busy&EventType=Dial&group=sales');
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '3 minutes' WHERE call_sid = 'l1'`);
  await event(ctx, 'CallSid=l1&DialWhomNumber=09811100002&Status=free&EventType=Terminal&group=sales');
  t.match(await agent(ctx, B), { state: 'wrapping_up', missedOffers: 0, paused: null, today: { answers: 1, misses: 0 } });
});

t.test('a re-fetch reporting a completed call starts the wrap-up', async (t) => {
  const ctx = await setup(t, { sales: { wrapUpSeconds: 45 } });
  await dialWhom(ctx, 'CallSid=r1');
  await dialWhom(ctx, 'CallSid=r1&DialCallStatus=completed&DialWhomNumber=09811100001');
  t.match(await agent(ctx, A), { state: 'wrapping_up', today: { offers: 1, answers: 1 } });
  t.equal(await dialWhom(ctx, 'CallSid=r2'), `${B},${C}`);
});

t.test('dial events for a number in no group still answer 200 and record busy state', async (t) => {
  const ctx = await setup(t);
  const res = await event(ctx, 'CallSid=x1&DialWhomNumber=09899999999&Status=busy&EventType=Dial');
  t.equal(res.statusCode, 200);
  t.equal((await ctx.db.pool.query(`SELECT busy FROM agent_states WHERE number = '+919899999999'`)).rows[0]?.busy, true);
  t.equal((await event(ctx, 'CallSid=x1&DialWhomNumber=09899999999&Status=free&EventType=Terminal')).statusCode, 200);
});

t.test('a dial event is answered within the budget when Postgres is slow; its state is recorded all the same', async (t) => {
  const ctx = await setup(t, { env: { DECISION_BUDGET_MS: '300' } });
  await event(ctx, 'CallSid=s0&DialWhomNumber=09811100001&Status=free&EventType=Terminal'); // A's agent_states row
  const other = new pg.Client({ connectionString: ctx.db.url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('BEGIN');
  await other.query('SELECT 1 FROM agent_states WHERE number = $1 FOR UPDATE', [A]);
  const started = performance.now();
  const res = await event(ctx, 'CallSid=s1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  const ms = performance.now() - started;
  t.equal(res.statusCode, 200);
  t.ok(ms < 1000, `answered in ${Math.round(ms)} ms, while the row stays locked`);
  await other.query('COMMIT');
  // With 100 ms left for it, the CDR may have gone to the spool (a new connection to open) and come back from there.
  let cdr = await ctx.db.prisma.cdr.findFirst({ where: { callSid: 's1' } });
  for (let i = 0; i < 300 && !cdr; i++) {
    await new Promise((r) => setTimeout(r, 20));
    cdr = await ctx.db.prisma.cdr.findFirst({ where: { callSid: 's1' } });
  }
  if (!cdr) throw new Error('no CDR for s1');
  t.match(cdr.reason, /agent state not recorded within the \d+ ms left of the budget; still being recorded/);
  const waited = Number(/within the (\d+) ms/.exec(cdr.reason ?? '')?.[1]);
  t.ok(waited <= 300 - SPOOL_RESERVE_MS, `waited ${waited} ms: the budget less the ${SPOOL_RESERVE_MS} ms kept for the CDR`);
  for (let i = 0; i < 100 && (await agent(ctx, A)).state !== 'on_call'; i++) await new Promise((r) => setTimeout(r, 20));
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 's1' } }, 'recorded once the row was free');
});

t.test('a late free for an earlier call leaves the agent busy on the current one', async (t) => {
  const ctx = await setup(t);
  await event(ctx, 'CallSid=o1&DialWhomNumber=09811100001&Status=busy&EventType=Dial');
  await event(ctx, 'CallSid=o2&DialWhomNumber=09811100001&Status=busy&EventType=Dial');
  await event(ctx, 'CallSid=o1&DialWhomNumber=09811100001&Status=free&EventType=Terminal');
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'o2' } }, "o1's end does not end o2");
  await event(ctx, 'CallSid=o2&DialWhomNumber=09811100001&Status=free&EventType=Terminal');
  t.match(await agent(ctx, A), { state: 'available', onCall: null }, "o2's does");
});

t.test(
  'two callers answered the same agent at once: the end of the later leg, which the agent did not take, leaves them busy on the earlier call',
  async (t) => {
    const ctx = await setup(t);
    const connect = async (sid: string) =>
      (await ctx.app.inject({ method: 'GET', url: `/exotel/connect/agents?CallFrom=09800000001&CallSid=${sid}` })).json().destination.numbers;
    // both callers get A first: neither Dial event has come yet
    t.same(await connect('ov1'), [A, B, C]);
    t.same(await connect('ov2'), [A, B, C]);
    const ev = (sid: string, rest: string) => event(ctx, `CallSid=${sid}&DialWhomNumber=09811100001&${rest}&group=sales&flow=agents`);
    await ev('ov1', 'Status=busy&EventType=Dial');
    await ev('ov2', 'Status=busy&EventType=Dial');
    // A, rung for ov1, does not take ov2 (no Answered events on this account): ov2's leg ends
    await ev('ov2', 'Status=free&EventType=Terminal');
    t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'ov1' } }, 'still on ov1');
    t.same(await connect('ov3'), [B, C], 'not offered to a third caller while on ov1');
    await ev('ov1', 'Status=free&EventType=Terminal');
    t.match(await agent(ctx, A), { state: 'available', onCall: null }, "ov1's end frees A");
    t.same(await connect('ov4'), [A, B, C]);
  },
);

t.test("a leg's events out of order (its free before its Dial): the agent is not left busy, and the offer ends once", async (t) => {
  const ctx = await setup(t, { sales: { wrapUpSeconds: 60, maxMissedOffers: 1 } });
  await supportFlow(t, ctx);
  const connect = async (query: string) =>
    (await ctx.app.inject({ method: 'GET', url: `/exotel/connect/agents?CallFrom=09800000001&${query}` })).json().destination?.numbers;
  const ev = (sid: string, rest: string) => event(ctx, `CallSid=${sid}&DialWhomNumber=09811100001&${rest}&group=sales&flow=agents`);
  // a leg declined at once: its Terminal arrives before its Dial
  t.equal((await ev('oo1', 'Status=free&EventType=Terminal')).statusCode, 200);
  t.equal((await ev('oo1', 'Status=busy&EventType=Dial')).statusCode, 200);
  t.equal((await ev('oo1', 'Status=busy&EventType=Ringing')).statusCode, 200);
  t.match(await agent(ctx, A), { state: 'available', onCall: null, paused: null, today: { offers: 1, answers: 0, misses: 0 } }, 'not busy: the leg is over');
  t.equal(await dialWhom(ctx, 'CallSid=oo2'), `${A},${B},${C}`, 'offered to the next caller');
  const offer = async (sid: string) =>
    (await ctx.db.pool.query('SELECT outcome, ended_at IS NOT NULL AS ended FROM agent_offers WHERE call_sid = $1 AND number = $2', [sid, A])).rows;
  t.same(await offer('oo1'), [{ outcome: null, ended: true }], 'one offer, ended, how not known: no miss counted');
  // a repeated end changes nothing (no miss from a "ringing time" the offer never had)
  await ev('oo1', 'Status=free&EventType=Terminal');
  t.same(await offer('oo1'), [{ outcome: null, ended: true }]);
  t.match(await agent(ctx, A), { paused: null, today: { offers: 1, misses: 0 } });
  // a re-fetch (Connect's fetch_after_attempt) that reports the attempt says how it ended
  t.match(await connect('CallSid=oo1'), [A, B, C]);
  await connect('CallSid=oo1&DialCallStatus=busy&DialWhomNumber=09811100001');
  t.same(await offer('oo1'), [{ outcome: 'busy', ended: true }]);
  t.match(await agent(ctx, A), { state: 'paused', today: { offers: 1, misses: 1 } }, 'the miss counts, once');
  await ctx.admin({ method: 'PUT', url: `/admin/agents/${enc(A)}/availability`, payload: { status: 'available' } });

  // a re-fetch reports a leg before its Dial event arrives: the leg's events still count (busy until its end)
  t.match(await connect('CallSid=oo3'), [A, B, C]);
  await connect('CallSid=oo3&DialCallStatus=failed&DialWhomNumber=09811100001');
  await ev('oo3', 'Status=busy&EventType=Dial');
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'oo3' } });
  await ev('oo3', 'Status=free&EventType=Terminal');
  t.match(await agent(ctx, A), { state: 'available', onCall: null });
  t.same(await offer('oo3'), [{ outcome: 'failed', ended: true }], 'as the re-fetch said');

  // a very short answered call whose Terminal came first: answered, and the wrap-up starts
  await ev('oo4', 'Status=free&EventType=Terminal');
  await ev('oo4', 'Status=busy&EventType=Dial');
  await ev('oo4', 'Status=busy&EventType=Answered');
  t.same(await offer('oo4'), [{ outcome: 'answered', ended: true }]);
  t.match(await agent(ctx, A), { state: 'wrapping_up', onCall: null, today: { answers: 1 } });

  // in order, the same events still make the agent busy, and another flow's offer in the same call is its own
  await ctx.db.pool.query('UPDATE agent_states SET wrap_up_until = NULL WHERE number = $1', [A]);
  await ev('oo5', 'Status=busy&EventType=Dial');
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'oo5' } });
  await ev('oo5', 'Status=free&EventType=Terminal');
  await event(ctx, 'CallSid=oo5&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales&flow=agents2');
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'oo5' } }, "a second flow's Dial in the call is not stale");
});

t.test("one flow asked at Dial Whom, then at a Connect of the same call: the Connect's Dial is a new offer, not a stale event", async (t) => {
  const ctx = await setup(t);
  t.equal(await dialWhom(ctx, 'CallSid=dc1'), `${A},${B},${C}`);
  await dialWhom(ctx, 'CallSid=dc1&DialCallStatus=no-answer&DialWhomNumber=09811100001');
  const connect = await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents?CallSid=dc1&CallFrom=09800000001' });
  t.match(connect.json().destination.numbers, [A, B, C], "the Connect's own order for the call");
  await event(ctx, 'CallSid=dc1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales&flow=agents');
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'dc1' } }, "the Connect's leg makes the agent busy");
});

t.test('parallel ringing: the legs Exotel ends when one agent answers are cancelled, not missed; a leg that rings out is a miss', async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'parallel', maxMissedOffers: 1, connect: { maxRingingDuration: 20 } } });
  const answer = (await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents?CallSid=pr1&CallFrom=09800000001' })).json();
  t.match(answer, { parallel_ringing: { activate: true }, destination: { numbers: [A, B, C] } });
  const ev = (sid: string, number: string, rest: string) => event(ctx, `CallSid=${sid}&DialWhomNumber=${number}&${rest}&group=sales&flow=agents`);
  for (const n of ['09811100001', '09811100002', '09811100003']) await ev('pr1', n, 'Status=busy&EventType=Dial');
  // A answers; Exotel ends B's and C's legs (their Terminal may come before or after A's Answered)
  await ev('pr1', '09811100002', 'Status=free&EventType=Terminal');
  await ev('pr1', '09811100001', 'Status=busy&EventType=Answered');
  await ev('pr1', '09811100003', 'Status=free&EventType=Terminal');
  for (const n of [B, C])
    t.match(await agent(ctx, n), { state: 'available', paused: null, missedOffers: 0, today: { offers: 1, misses: 0 } }, `${n} not paused`);
  const outcomes = await ctx.db.pool.query(`SELECT number, outcome FROM agent_offers WHERE call_sid = 'pr1' ORDER BY number`);
  t.same(outcomes.rows, [
    { number: A, outcome: 'answered' },
    { number: B, outcome: 'cancelled' },
    { number: C, outcome: 'cancelled' },
  ]);
  const metrics = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  t.notMatch(metrics, /exoroute_agent_misses_total\{group="sales"\} [1-9]/, 'no miss in the metrics');
  t.match(metrics, /exoroute_agent_answers_total\{group="sales"\} 1\n/);
  // nobody answers: every leg rings out (the ringing time, 20 s, passes) and each is a miss
  await ev('pr2', '09811100002', 'Status=busy&EventType=Dial');
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '21 seconds' WHERE call_sid = 'pr2'`);
  await ev('pr2', '09811100002', 'Status=free&EventType=Terminal');
  t.match(await agent(ctx, B), { state: 'paused', today: { offers: 2, misses: 1 } }, 'a leg that rang out is a miss');
  // in a sequential group, an early end is a miss as before
  await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/support', payload: { maxMissedOffers: 1 } });
  await until(() => ctx.app.rules.current?.dialGroups.get('support')?.maxMissedOffers === 1);
  await event(ctx, 'CallSid=pr3&DialWhomNumber=09811100004&Status=busy&EventType=Dial&group=support&flow=agents');
  await event(ctx, 'CallSid=pr3&DialWhomNumber=09811100004&Status=free&EventType=Terminal&group=support&flow=agents');
  t.match(await agent(ctx, D), { state: 'paused', today: { misses: 1 } });
});

/** A Connect of `agents` offering A in call `sid`; its leg's Dial and Terminal events (no Answered); and the re-fetch reporting A's attempt. */
function guessThenReport(ctx: TestApp, sid: string) {
  const connect = (query: string) => ctx.app.inject({ method: 'GET', url: `/exotel/connect/agents?CallFrom=09800000001&CallSid=${sid}${query}` });
  return {
    offer: () => connect(''),
    events: async () => {
      await event(ctx, `CallSid=${sid}&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales&flow=agents`);
      await event(ctx, `CallSid=${sid}&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales&flow=agents`);
    },
    refetch: (status: string) => connect(`&DialCallStatus=${status}&DialWhomNumber=09811100001`),
  };
}
const outcomeOf = async (ctx: TestApp, sid: string, number = A) =>
  (await ctx.db.pool.query('SELECT outcome FROM agent_offers WHERE call_sid = $1 AND number = $2', [sid, number])).rows.map((r) => r.outcome);

t.test("a re-fetch's DialCallStatus replaces the outcome a dial event guessed, whichever comes first: a failed attempt is no miss", async (t) => {
  for (const order of ['events first', 're-fetch first']) {
    const ctx = await setup(t, { sales: { maxMissedOffers: 1, missedPauseSeconds: 600 } });
    const call = guessThenReport(ctx, 'gf1');
    await call.offer();
    if (order === 'events first') {
      await call.events();
      t.match(await agent(ctx, A), { state: 'paused', today: { misses: 1 } }, 'the events alone: a leg ended within the ringing time, taken for a miss');
      await call.refetch('failed');
    } else {
      await call.refetch('failed');
      await call.events();
    }
    t.same(await outcomeOf(ctx, 'gf1'), ['failed'], `${order}: Exotel's status`);
    t.match(
      await agent(ctx, A),
      { state: 'available', paused: null, missedOffers: 0, today: { offers: 1, answers: 0, misses: 0 } },
      `${order}: no miss, not paused`,
    );
    t.equal(await dialWhom(ctx, 'CallSid=gf2'), `${A},${B},${C}`, `${order}: A is offered`);
  }
});

t.test("a re-fetch's status over a guess: a parallel leg taken for cut short that Exotel reports no-answer is a miss", async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'parallel', maxMissedOffers: 1, connect: { maxRingingDuration: 20 } } });
  const call = guessThenReport(ctx, 'gp1');
  await call.offer();
  await call.events();
  t.same(await outcomeOf(ctx, 'gp1'), ['cancelled'], 'the events alone: cut short');
  await call.refetch('no-answer');
  t.same(await outcomeOf(ctx, 'gp1'), ['no-answer']);
  t.match(await agent(ctx, A), { state: 'paused', missedOffers: 0, today: { offers: 1, misses: 1 } }, 'a miss: paused (maxMissedOffers 1)');
  t.match((await ctx.app.inject({ method: 'GET', url: '/metrics' })).body, /exoroute_agent_misses_total\{group="sales"\} 1\n/);
});

t.test(
  "a re-fetch's status over a guess: a leg taken for answered (longer than the ringing time) that was not loses its wrap-up and counts a miss",
  async (t) => {
    const ctx = await setup(t, { sales: { wrapUpSeconds: 120 } });
    const call = guessThenReport(ctx, 'ga1');
    await call.offer();
    await event(ctx, 'CallSid=ga1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales&flow=agents');
    await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '3 minutes' WHERE call_sid = 'ga1'`);
    await event(ctx, 'CallSid=ga1&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales&flow=agents');
    t.match(await agent(ctx, A), { state: 'wrapping_up', today: { answers: 1 } }, 'the events alone: answered');
    await call.refetch('no-answer');
    t.same(await outcomeOf(ctx, 'ga1'), ['no-answer']);
    t.match(await agent(ctx, A), { state: 'available', wrapUpUntil: null, today: { offers: 1, answers: 0, misses: 1 } }, 'no wrap-up, a miss');
    t.equal(await dialWhom(ctx, 'CallSid=ga2'), `${A},${B},${C}`);
  },
);

t.test(
  "a re-fetch's status over a guess: completed after a leg taken for a miss lifts the pause it started; the wrap-up runs from the leg's end",
  async (t) => {
    const ctx = await setup(t, { sales: { wrapUpSeconds: 600, maxMissedOffers: 1, missedPauseSeconds: 600 } });
    const call = guessThenReport(ctx, 'gc1');
    await call.offer();
    await call.events();
    t.match(await agent(ctx, A), { state: 'paused' });
    await ctx.db.pool.query(`UPDATE agent_offers SET ended_at = now() - interval '20 seconds' WHERE call_sid = 'gc1'`);
    await ctx.db.pool.query(`UPDATE agent_states SET misses_since = now() - interval '20 seconds' WHERE number = $1`, [A]);
    await call.refetch('completed');
    t.same(await outcomeOf(ctx, 'gc1'), ['answered']);
    const a = await agent(ctx, A);
    t.match(a, { state: 'wrapping_up', paused: null, today: { offers: 1, answers: 1, misses: 0 } });
    // Exactly wrapUpSeconds from the end stored for the leg (20 s ago), however long the requests took.
    const ended = (await ctx.db.pool.query<{ ended_at: Date }>(`SELECT ended_at FROM agent_offers WHERE call_sid = 'gc1' AND number = $1`, [A])).rows[0]!;
    t.equal(Date.parse(a.wrapUpUntil) - ended.ended_at.getTime(), 600_000, "wrap-up from the leg's end, 20 s ago, not from the re-fetch");
  },
);

t.test("a re-fetch's miss over a guessed answer puts back the pause (another call's misses) the guess lifted", async (t) => {
  // The guess lifted the pause as any answer does, and the correction left it lifted: an agent who
  // had missed enough offers to be paused was offered at once, though they had answered nothing.
  const ctx = await setup(t, { sales: { maxMissedOffers: 1, missedPauseSeconds: 600 } });
  const call = guessThenReport(ctx, 'gl1');
  const other = guessThenReport(ctx, 'gl9');
  // Two calls offer A at once (no Dial event yet, so A is not busy for the second).
  await call.offer();
  await other.offer();
  await event(ctx, 'CallSid=gl1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales&flow=agents');
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '3 minutes' WHERE call_sid = 'gl1'`);
  await other.refetch('no-answer');
  const paused = (await agent(ctx, A)).paused;
  t.match(paused, { reason: /call gl9/ }, "paused by gl9's miss");
  await event(ctx, 'CallSid=gl1&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales&flow=agents');
  t.match(await agent(ctx, A), { state: 'available', paused: null, today: { answers: 1 } }, 'the events alone: answered, the pause lifted');
  await call.refetch('no-answer');
  t.same(await outcomeOf(ctx, 'gl1'), ['no-answer']);
  t.match(await agent(ctx, A), { state: 'paused', paused, today: { offers: 2, answers: 0, misses: 2 } }, "gl9's pause stands again, until it was to end");
  t.equal(await dialWhom(ctx, 'CallSid=gl2'), `${B},${C}`, 'A is not offered');
});

t.test("a re-fetch confirming a guess counts nothing again, and Exotel's word then stands", async (t) => {
  const ctx = await setup(t, { sales: { maxMissedOffers: 2, missedPauseSeconds: 600 } });
  const call = guessThenReport(ctx, 'gs1');
  await call.offer();
  await call.events();
  await call.refetch('no-answer');
  t.same(await outcomeOf(ctx, 'gs1'), ['no-answer']);
  t.match(await agent(ctx, A), { state: 'available', missedOffers: 1, today: { offers: 1, misses: 1 } });
  t.match((await ctx.app.inject({ method: 'GET', url: '/metrics' })).body, /exoroute_agent_misses_total\{group="sales"\} 1\n/, 'one miss');
  // a poll of the attempt with another status (not seen from Exotel) no longer replaces it
  await call.refetch('failed');
  t.same(await outcomeOf(ctx, 'gs1'), ['no-answer'], 'as the re-fetch reported it');
  t.match(await agent(ctx, A), { missedOffers: 1, today: { misses: 1 } });
});

t.test("a re-fetch's status over a guess: a decline Exotel reports busy, taken for no-answer, is a miss all the same: the pause it made stands", async (t) => {
  const ctx = await setup(t, { sales: { maxMissedOffers: 2, missedPauseSeconds: 600 } });
  const before = guessThenReport(ctx, 'gb0');
  await before.offer();
  await before.refetch('no-answer');
  const call = guessThenReport(ctx, 'gb1');
  await call.offer();
  await call.events();
  t.match(await agent(ctx, A), { state: 'paused' }, 'the events alone: a second miss in a row');
  await call.refetch('busy');
  t.same(await outcomeOf(ctx, 'gb1'), ['busy'], "Exotel's status");
  t.match(await agent(ctx, A), { state: 'paused', today: { offers: 2, misses: 2 } }, 'still paused: busy is a miss too');
  t.equal(await dialWhom(ctx, 'CallSid=gb2'), `${B},${C}`, 'A is not offered');
  t.match((await ctx.app.inject({ method: 'GET', url: '/metrics' })).body, /exoroute_agent_misses_total\{group="sales"\} 2\n/, 'two misses, each once');
});

t.test("a re-fetch's status over a guess: a failed attempt taken for the miss that paused the agent gives the misses in a row before it back", async (t) => {
  const ctx = await setup(t, { sales: { maxMissedOffers: 2, missedPauseSeconds: 600 } });
  const before = guessThenReport(ctx, 'gr0');
  await before.offer();
  await before.refetch('no-answer');
  t.match(await agent(ctx, A), { state: 'available', missedOffers: 1 });
  const call = guessThenReport(ctx, 'gr1');
  await call.offer();
  await call.events();
  t.match(await agent(ctx, A), { state: 'paused' }, 'the events alone: a second miss in a row');
  await call.refetch('failed');
  t.match(await agent(ctx, A), { state: 'available', paused: null, missedOffers: 1, today: { offers: 2, misses: 1 } }, "gr0's miss still counts");
  const after = guessThenReport(ctx, 'gr2');
  await after.offer();
  await after.refetch('no-answer');
  t.match(await agent(ctx, A), { state: 'paused', paused: { reason: /^2 offers in a row not answered/ } }, 'the next miss is the second in a row: paused');
});

/**
 * A Connect of `agents` (sales: A, B, C) that rang A, B and C one after another, nobody answering
 * (no re-fetch between them); `again()` is the Exotel flow going back to that Connect, which
 * reports only the last number dialed and so is answered A and B again: a second leg of A's offer.
 */
async function rungAgain(t: Test, sid: string, sales: Record<string, unknown> = {}) {
  const ctx = await setup(t, { sales: { connect: { fetchAfterAttempt: false }, ...sales } });
  const connect = async (query: string) =>
    (await ctx.app.inject({ method: 'GET', url: `/exotel/connect/agents?CallFrom=09800000001&CallSid=${sid}${query}` })).json().destination?.numbers;
  const ev = (who: string, rest: string) => event(ctx, `CallSid=${sid}&DialWhomNumber=${who}&${rest}&group=sales&flow=agents`);
  t.same(await connect(''), [A, B, C]);
  for (const who of ['09811100001', '09811100002', '09811100003']) {
    await ev(who, 'Status=busy&EventType=Dial');
    await ev(who, 'Status=free&EventType=Terminal');
  }
  const again = async () =>
    t.same(await connect('&DialCallStatus=no-answer&DialWhomNumber=09811100003'), [A, B], 'A and B offered again in the same call and flow');
  return { ctx, ev, again };
}

t.test(
  'an agent offered again by the same flow in one call (the Exotel flow goes back to its Connect): busy on the second leg; its answer counts and starts the wrap-up',
  async (t) => {
    const { ctx, ev, again } = await rungAgain(t, 'lb1', { wrapUpSeconds: 60 });
    await again();
    await ev('09811100001', 'Status=busy&EventType=Dial');
    t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'lb1' } }, 'A is being rung: busy');
    await ev('09811100001', 'Status=busy&EventType=Answered');
    t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'lb1' } }, 'A is talking: busy');
    t.equal(await dialWhom(ctx, 'CallSid=other1'), `${B},${C}`, 'A, on a call, is not offered to the next caller');
    await ev('09811100001', 'Status=free&EventType=Terminal');
    await ev('09811100001', 'Status=free&EventType=Terminal'); // repeated
    const a = await agent(ctx, A);
    t.match(a, { state: 'wrapping_up', onCall: null, today: { offers: 1, answers: 1 } }, 'the second leg was answered: its end starts the wrap-up');
    t.match(a.recentOffers, [{ callSid: 'lb1', outcome: 'answered' }]);
    t.ok(a.recentOffers[0].endedAt, 'ended');
    const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
    t.match(text, /exoroute_agent_answers_total\{group="sales"\} 1\n/);
  },
);

t.test('a re-fetch answered from onError (Postgres too slow) offers again an agent tried earlier in the call: busy on that leg', async (t) => {
  const ctx = await setup(t, { env: { DECISION_BUDGET_MS: '300' } });
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'agents3', name: 'Sales, onError sales', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { dialGroup: 'sales' } },
  });
  t.equal(flow.statusCode, 201);
  await until(() => ctx.app.rules.current?.flows.has('agents3') === true);
  const connect = async (query: string) =>
    (await ctx.app.inject({ method: 'GET', url: `/exotel/connect/agents3?CallFrom=09800000001&${query}` })).json().destination?.numbers;
  const ev = (who: string, rest: string) => event(ctx, `CallSid=fb1&DialWhomNumber=${who}&${rest}&group=sales&flow=agents3`);
  t.same(await connect('CallSid=fb1'), [A, B, C]);
  await ev('09811100001', 'Status=busy&EventType=Dial');
  await ev('09811100001', 'Status=free&EventType=Terminal');
  t.same(await connect('CallSid=fb1&DialCallStatus=no-answer&DialWhomNumber=09811100001'), [B, C]);
  await ev('09811100002', 'Status=busy&EventType=Dial');
  await ev('09811100002', 'Status=free&EventType=Terminal');
  // the next re-fetch waits on Postgres past the budget (the call's lock held elsewhere): answered from onError
  const holder = await ctx.db.pool.connect();
  await holder.query('SELECT pg_advisory_lock(1684627820, hashtext($1))', ['fb1']);
  const numbers = await connect('CallSid=fb1&DialCallStatus=no-answer&DialWhomNumber=09811100002');
  await holder.query('SELECT pg_advisory_unlock(1684627820, hashtext($1))', ['fb1']);
  holder.release();
  t.same(numbers, [A, C], "onError: the group less this request's tried: A again");
  await ev('09811100001', 'Status=busy&EventType=Dial');
  await ev('09811100001', 'Status=busy&EventType=Answered');
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'fb1' } }, 'A is talking: busy');
});

t.test(
  'a short answered call whose Answered arrives after its Terminal: answered after all, its miss and pause undone, the wrap-up from its end',
  async (t) => {
    const ctx = await setup(t, { sales: { wrapUpSeconds: 60, maxMissedOffers: 1 } });
    const ev = (rest: string) => event(ctx, `CallSid=la1&DialWhomNumber=09811100001&${rest}&group=sales&flow=agents`);
    await ev('Status=busy&EventType=Dial');
    await ev('Status=free&EventType=Terminal');
    t.match(await agent(ctx, A), { state: 'paused', today: { misses: 1 } }, 'the end alone looks like a miss');
    await ev('Status=busy&EventType=Answered');
    const a = await agent(ctx, A);
    t.match(a, { state: 'wrapping_up', onCall: null, paused: null, missedOffers: 0, today: { offers: 1, answers: 1, misses: 0 } });
    t.ok(Date.parse(a.wrapUpUntil) - Date.now() > 50_000, 'for wrapUpSeconds from the end');
    await ev('Status=busy&EventType=Answered'); // repeated: nothing more
    t.match(await agent(ctx, A), { today: { offers: 1, answers: 1, misses: 0 } });
    // a pause that another call's misses started is not lifted by this correction
    await event(ctx, 'CallSid=la2&DialWhomNumber=09811100002&Status=busy&EventType=Dial&group=sales&flow=agents');
    await event(ctx, 'CallSid=la2&DialWhomNumber=09811100002&Status=free&EventType=Terminal&group=sales&flow=agents');
    await ctx.db.pool.query(`UPDATE agent_offers SET outcome = NULL WHERE call_sid = 'la2'`); // as if its end were not known yet
    await ctx.db.pool.query(`UPDATE agent_states SET misses_since = now() + interval '1 second' WHERE number = $1`, [B]); // paused by a later miss
    await event(ctx, 'CallSid=la2&DialWhomNumber=09811100002&Status=busy&EventType=Answered&group=sales&flow=agents');
    t.match(await agent(ctx, B), { state: 'wrapping_up', paused: { reason: /not answered/ } }, "another miss's pause stays");
  },
);

t.test(
  'events whose URL names no flow keep the rules of the version before: an end before its Dial records nothing, the Dial makes the agent busy',
  async (t) => {
    const ctx = await setup(t);
    await event(ctx, 'CallSid=nf1&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales');
    t.same((await ctx.db.pool.query(`SELECT 1 FROM agent_offers WHERE call_sid = 'nf1'`)).rows, []);
    await event(ctx, 'CallSid=nf1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
    t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'nf1' } });
  },
);

t.test('a second leg of one offer whose Terminal comes before its Dial: the agent is not left busy', async (t) => {
  const { ctx, ev, again } = await rungAgain(t, 'lb2');
  await again();
  // A's second leg is declined at once; its Terminal arrives before its Dial
  await ev('09811100001', 'Status=free&EventType=Terminal');
  await ev('09811100001', 'Status=busy&EventType=Dial');
  t.match(await agent(ctx, A), { state: 'available', onCall: null }, 'the leg is over: not busy');
});

t.test('a flow that lists numbers (no group in the events URL) rings one at a time: an early end is a miss, not cancelled', async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'parallel', maxMissedOffers: 1, connect: { maxRingingDuration: 30 } } });
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'nums', name: 'Numbers', type: 'dial', rules: [], otherwise: { numbers: [A, D] }, onError: { numbers: ['+919800000099'] } },
  });
  t.equal(flow.statusCode, 201);
  await until(() => ctx.app.rules.current?.flows.has('nums') === true);
  const answer = (await ctx.app.inject({ method: 'GET', url: '/exotel/connect/nums?CallSid=rn1&CallFrom=09800000001' })).json();
  t.notOk(answer.parallel_ringing, 'no parallel_ringing in the Connect answer');
  t.notMatch(answer.dial_passthru_event_url, /group=/, 'the events URL names no group');
  await event(ctx, 'CallSid=rn1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&flow=nums');
  await event(ctx, 'CallSid=rn1&DialWhomNumber=09811100001&Status=free&EventType=Terminal&flow=nums');
  const outcome = await ctx.db.pool.query(`SELECT outcome FROM agent_offers WHERE call_sid = 'rn1' AND number = $1`, [A]);
  t.same(outcome.rows, [{ outcome: 'no-answer' }], 'not cancelled: Exotel rang A alone');
});

t.test('more orders of events: a late Ringing, an offer begun before the upgrade (no counts), Answered first; parallel without Answered events', async (t) => {
  const ctx = await setup(t, { sales: { strategy: 'parallel', wrapUpSeconds: 60, maxMissedOffers: 1, connect: { maxRingingDuration: 20 } } });
  const ev = (sid: string, who: string, rest: string) => event(ctx, `CallSid=${sid}&DialWhomNumber=${who}&${rest}&group=sales&flow=agents`);
  // Dial, Terminal, then a late Ringing: stale
  await ev('ok1', '09811100001', 'Status=busy&EventType=Dial');
  await ev('ok1', '09811100001', 'Status=free&EventType=Terminal');
  await ev('ok1', '09811100001', 'Status=busy&EventType=Ringing');
  t.match(await agent(ctx, A), { state: 'available', paused: null, today: { misses: 0 } }, 'late Ringing stale; early end cancelled');
  // a row from before the migration (counts 0/0) whose Dial came then: its Terminal and a late Ringing now
  await ctx.db.pool.query(
    `INSERT INTO agent_offers (call_sid, number, flow_slug, group_slug, offered_at) VALUES ('ok2', $1, 'agents', 'sales', now() - interval '21 seconds')`,
    [B],
  );
  await ctx.db.pool.query(`UPDATE agent_states SET busy = true, busy_since = now(), busy_call_sid = 'ok2' WHERE number = $1`, [B]);
  await ev('ok2', '09811100002', 'Status=free&EventType=Terminal');
  await ev('ok2', '09811100002', 'Status=busy&EventType=Ringing');
  t.match(await agent(ctx, B), { state: 'paused', onCall: null, today: { misses: 1 } }, 'rang out: a miss; late Ringing stale');
  // Answered first, then Terminal, then Dial
  await ev('ok3', '09811100003', 'Status=busy&EventType=Answered');
  await ev('ok3', '09811100003', 'Status=free&EventType=Terminal');
  await ev('ok3', '09811100003', 'Status=busy&EventType=Dial');
  t.match(await agent(ctx, C), { state: 'wrapping_up', onCall: null, today: { offers: 1, answers: 1 } });
  // parallel without Answered events: the answering leg lasts long (answered), the other is cut short (cancelled)
  await ctx.db.pool.query('UPDATE agent_states SET wrap_up_until = NULL, paused_until = NULL');
  await ev('ok4', '09811100001', 'Status=busy&EventType=Dial');
  await ev('ok4', '09811100003', 'Status=busy&EventType=Dial');
  await ev('ok4', '09811100003', 'Status=free&EventType=Terminal');
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '200 seconds' WHERE call_sid = 'ok4' AND number = $1`, [A]);
  await ev('ok4', '09811100001', 'Status=free&EventType=Terminal');
  const rows = await ctx.db.pool.query(`SELECT number, outcome, dial_events, end_events FROM agent_offers WHERE call_sid = 'ok4' ORDER BY number`);
  t.same(rows.rows, [
    { number: A, outcome: 'answered', dial_events: 1, end_events: 1 },
    { number: C, outcome: 'cancelled', dial_events: 1, end_events: 1 },
  ]);
});

t.test("a second leg answered whose Terminal arrives before its Answered: answered, the wrap-up from that leg's end", async (t) => {
  const { ctx, ev, again } = await rungAgain(t, 'sl1', { wrapUpSeconds: 60 });
  // the first legs ended two minutes ago (rang out, then a greeting, then back to the Connect)
  await ctx.db.pool.query(
    `UPDATE agent_offers SET offered_at = now() - interval '150 seconds', ended_at = now() - interval '120 seconds' WHERE call_sid = 'sl1'`,
  );
  await again();
  await ev('09811100001', 'Status=busy&EventType=Dial');
  await ev('09811100001', 'Status=free&EventType=Terminal');
  await ev('09811100001', 'Status=busy&EventType=Answered'); // answered and hung up at once: its Answered late
  const a = await agent(ctx, A);
  t.match(a, { state: 'wrapping_up', onCall: null, today: { offers: 1, answers: 1, misses: 0 } });
  t.ok(Date.now() - Date.parse(a.recentOffers[0].endedAt) < 10_000, "the offer's end is the second leg's");
});

t.test(
  'Dial, Answered, a re-fetch reporting the call completed (wrap-up), then the Answered again: the offer stays ended, the wrap-up runs once',
  async (t) => {
    const ctx = await setup(t, { sales: { wrapUpSeconds: 60 } });
    const ev = (rest: string) => event(ctx, `CallSid=rc1&DialWhomNumber=09811100001&${rest}&group=sales&flow=agents`);
    const connect = (query: string) => ctx.app.inject({ method: 'GET', url: `/exotel/connect/agents?CallSid=rc1&CallFrom=09800000001${query}` });
    t.same((await connect('')).json().destination?.numbers, [A, B, C]);
    await ev('Status=busy&EventType=Dial');
    await ev('Status=busy&EventType=Answered');
    await connect('&DialCallStatus=completed&DialWhomNumber=09811100001');
    const ended = (await agent(ctx, A)).recentOffers[0].endedAt;
    t.ok(ended, 'ended by the re-fetch');
    await ev('Status=busy&EventType=Answered'); // repeated, late
    const a = await agent(ctx, A);
    t.equal(a.recentOffers[0].endedAt, ended, 'still ended, at the same time');
    t.match(a, { state: 'on_call', today: { answers: 1 } }, 'busy until the leg ends');
    t.ok(a.wrapUpUntil, 'the wrap-up was started by the re-fetch');
    await ev('Status=free&EventType=Terminal');
    t.match(await agent(ctx, A), { state: 'wrapping_up', wrapUpUntil: a.wrapUpUntil }, 'and is not started again');
  },
);

t.test("a parallel ring's group named for an agent of another group: that group's ringing time tells a leg cut short", async (t) => {
  const ctx = await setup(t, {
    sales: { connect: { maxRingingDuration: 20 } },
    support: { strategy: 'parallel', connect: { maxRingingDuration: 60, maxParallelAttempts: 2 } },
  });
  // A (sales only) rung by support's parallel ring (say A was a member of support when the Connect answered)
  await event(ctx, 'CallSid=rv6&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=support&flow=agents');
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '40 seconds' WHERE call_sid = 'rv6'`);
  await event(ctx, 'CallSid=rv6&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=support&flow=agents');
  const { rows } = await ctx.db.pool.query(`SELECT outcome FROM agent_offers WHERE call_sid = 'rv6'`);
  t.same(rows, [{ outcome: 'cancelled' }], 'rang 40 s of 60 and was cut short: not picked up, not missed');
});

t.test("an agent whose busy expired (its call's free lost) takes another call: busy on it from its start, and not offered", async (t) => {
  const ctx = await setup(t);
  await event(ctx, 'CallSid=lost1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  // lost1's free never arrives; AGENT_BUSY_TTL_SECONDS (3600) passes
  await ctx.db.pool.query(`UPDATE agent_states SET busy_since = now() - interval '2 hours' WHERE number = $1`, [A]);
  await ctx.db.pool.query(`UPDATE agent_offers SET offered_at = now() - interval '2 hours' WHERE call_sid = 'lost1'`);
  t.match(await agent(ctx, A), { state: 'available', onCall: null }, 'the stale busy has expired');
  await event(ctx, 'CallSid=lost2&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  const now = await agent(ctx, A);
  t.match(now, { state: 'on_call', onCall: { callSid: 'lost2' } }, 'on the new call');
  t.ok(Date.now() - Date.parse(now.onCall.since) < 60_000, 'since the new call began, not the lost one');
  t.equal(await dialWhom(ctx, 'CallSid=lost3'), `${B},${C}`, 'another caller is not offered A');
  await event(ctx, 'CallSid=lost2&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales');
  t.match(await agent(ctx, A), { state: 'available', onCall: null }, "the new call's free ends it");
  // the same when the call whose free was lost came without its sid
  await event(ctx, 'DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  await ctx.db.pool.query(`UPDATE agent_states SET busy_since = now() - interval '2 hours' WHERE number = $1`, [A]);
  await event(ctx, 'CallSid=lost4&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'lost4' } }, 'on the new call, after a busy without CallSid');
});

t.test('an agent busy for longer than AGENT_BUSY_TTL_SECONDS on a call its group allows (75 minutes): on the call, and not offered', async (t) => {
  const ctx = await setup(t, { sales: { connect: { maxConversationDuration: 4500 } } });
  await event(ctx, 'CallSid=long1&DialWhomNumber=09811100001&Status=busy&EventType=Answered&group=sales');
  const since = async (minutes: number) =>
    ctx.db.pool.query(`UPDATE agent_states SET busy_since = now() - make_interval(mins => $2) WHERE number = $1`, [A, minutes]);
  await since(70);
  t.match(await agent(ctx, A), { state: 'on_call', onCall: { callSid: 'long1' } }, 'past the TTL (60 minutes), within the call allowed');
  t.equal(await dialWhom(ctx, 'CallSid=long2'), `${B},${C}`);
  await since(77);
  t.match(await agent(ctx, A), { state: 'available', onCall: null }, 'past the longest call (30 + 4500 s) and a minute: its free was lost');
  t.equal(await dialWhom(ctx, 'CallSid=long3'), `${A},${B},${C}`);
});

t.test('a re-fetch reporting a number the flow lists itself (no member) counts in no agent metric', async (t) => {
  const ctx = await setup(t, { action: { numbers: ['09899999999'] } });
  t.equal(await dialWhom(ctx, 'CallSid=n1'), '+919899999999');
  await dialWhom(ctx, 'CallSid=n1&DialCallStatus=no-answer&DialWhomNumber=09899999999');
  const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  t.notMatch(text, /exoroute_agent_(offers|misses)_total\{/, 'no series at all');
});

t.test("a dial event's `group` is believed only when it is one of the agent's groups: no metric series or offer for any other name", async (t) => {
  const ctx = await setup(t);
  for (let i = 0; i < 3; i++) {
    t.equal((await event(ctx, `CallSid=g${i}&DialWhomNumber=09899999999&Status=busy&EventType=Dial&group=made-up-${i}`)).statusCode, 200, 'a stranger: 200');
  }
  // A is in sales only: an event naming another group counts for sales
  await event(ctx, 'CallSid=g9&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=made-up-9');
  const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  t.notMatch(text, /made-up/, 'no series for a name sent in the URL');
  t.match(text, /exoroute_agent_offers_total\{group="sales"\} 1\n/, "the member's offer, under its own group");
  const slugs = (await ctx.db.pool.query(`SELECT number, group_slug FROM agent_offers ORDER BY number`)).rows;
  t.same(
    slugs.find((r) => r.number === A),
    { number: A, group_slug: 'sales' },
    "the member's offer under its own group",
  );
  t.ok(
    slugs.every((r) => r.group_slug === null || r.group_slug === 'sales'),
    'no name sent in the URL is stored',
  );
});

t.test('overflow tiers: the second group only when the first has nobody left; each keeps its own strategy and rotation', async (t) => {
  const ctx = await setup(t, { support: { strategy: 'round_robin' }, action: { dialGroups: ['sales', 'support'] } });
  t.equal(await dialWhom(ctx, 'CallSid=t1'), `${A},${B},${C}`, 'sales has agents: sales only');
  t.match(await cdrDecision(ctx, 't1'), { dial: { tier: 'sales', tierIndex: 0 } });
  // sales tried out: the re-fetches move on to support (C was in sales, D is left)
  await dialWhom(ctx, 'CallSid=t1&DialCallStatus=no-answer&DialWhomNumber=09811100001');
  await dialWhom(ctx, 'CallSid=t1&DialCallStatus=no-answer&DialWhomNumber=09811100002');
  t.equal(await dialWhom(ctx, 'CallSid=t1&DialCallStatus=no-answer&DialWhomNumber=09811100003'), D, 'then support, without the number already tried');
  t.match(await cdrDecision(ctx, 't1'), { dial: { tier: 'support', tierIndex: 1 } });
  // everyone in sales busy: straight to support, whose rotation moves with its own calls
  for (const n of ['09811100001', '09811100002', '09811100003']) await event(ctx, `CallSid=busy-${n}&DialWhomNumber=${n}&Status=busy&EventType=Dial`);
  t.equal(await dialWhom(ctx, 'CallSid=t2'), D, 'C is busy too');
  t.match(await cdrDecision(ctx, 't2'), {
    dial: {
      tier: 'support',
      skipped: [
        { number: A, group: 'sales', why: 'busy' },
        { number: B, group: 'sales', why: 'busy' },
        { number: C, group: 'sales', why: 'busy' },
      ],
    },
  });
  await event(ctx, 'CallSid=busy-09811100003&DialWhomNumber=09811100003&Status=free&EventType=Terminal');
  t.equal(await dialWhom(ctx, 'CallSid=t3'), C, "sales' C is free again: tier one offers it");
  const sim = await ctx.admin({ method: 'POST', url: '/admin/flows/agents/simulate', payload: { endpoint: 'connect', params: { CallSid: 'sim' } } });
  t.match(sim.json(), { numbers: [C], dial: { tier: 'sales' } });
  t.match(JSON.parse(sim.json().answer.body), { dial_passthru_event_url: /group=sales/ });
});

t.test("a repeated Connect poll of an attempt the second tier answered rings with that tier's Connect settings, as the first poll did", async (t) => {
  // Exotel may poll one attempt twice (at once, or its fallback URL pointing here): the repeat got
  // the same numbers, but the first tier's settings and `group` in the events URL, so Exotel rang
  // support's agents one by one for sales' 20 s, unrecorded, and their dial events were paced as sales'.
  const ctx = await setup(t, {
    sales: { connect: { maxRingingDuration: 20 } },
    support: { strategy: 'parallel', connect: { record: true, maxRingingDuration: 45, maxParallelAttempts: 3 } },
    action: { dialGroups: ['sales', 'support'] },
  });
  for (const n of ['09811100001', '09811100002', '09811100003']) await event(ctx, `CallSid=busy-${n}&DialWhomNumber=${n}&Status=busy&EventType=Dial`);
  const poll = async () =>
    JSON.parse(
      (await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents?CallFrom=09800000001&CallSid=rep1', headers: { 'exotel-version': '1.0' } })).body,
    );
  const first = await poll();
  t.match(first, {
    destination: { numbers: [D] },
    record: true,
    max_ringing_duration: 45,
    parallel_ringing: { activate: true, max_parallel_attempts: 3 },
    dial_passthru_event_url: /group=support&/,
  });
  t.same(await poll(), first, 'the repeated poll gets the same answer, settings and all');
});

t.test('tiers at write time: a repeated group is 400, an unknown one 422; a group in use by tiers cannot be deleted (409)', async (t) => {
  const ctx = await setup(t, { action: { dialGroups: ['sales', 'support'] } });
  const flow = (otherwise: unknown) =>
    ctx.admin({
      method: 'POST',
      url: '/admin/flows',
      payload: {
        slug: 'x',
        name: 'x',
        type: 'dial',
        rules: [],
        otherwise,
        onError: { numbers: ['+919800000099'] },
      },
    });
  const repeated = await flow({ dialGroups: ['sales', 'support', 'sales'] });
  t.equal(repeated.statusCode, 400);
  t.match(repeated.json().message, /^body\/otherwise\/dialGroups\/2: 'sales' is already tier 0/);
  const unknown = await flow({ dialGroups: ['sales', 'nope'] });
  t.equal(unknown.statusCode, 422);
  t.match(unknown.json().message, "dial-group 'nope'");
  const del = await ctx.admin({ method: 'DELETE', url: '/admin/dial-groups/support' });
  t.equal(del.statusCode, 409);
  t.match(del.json().message, "dial-group 'support' is used by flow 'agents'");
});

t.test('a flow written while its group is being deleted waits, and is then refused (422): no flow names a deleted group', async (t) => {
  const ctx = await setup(t);
  const other = new pg.Client({ connectionString: ctx.db.url });
  await other.connect();
  t.teardown(() => other.end());
  // another instance deleting `support`: its row locked, deleted, not yet committed
  await other.query('BEGIN');
  await other.query(`SELECT 1 FROM dial_groups WHERE slug = 'support' FOR UPDATE`);
  await other.query(`DELETE FROM dial_groups WHERE slug = 'support'`);
  let settled = false;
  const post = ctx
    .admin({
      method: 'POST',
      url: '/admin/flows',
      payload: {
        slug: 'tiers',
        name: 'Tiers',
        type: 'dial',
        rules: [],
        otherwise: { dialGroups: ['sales', 'support'] },
        onError: { numbers: ['+919800000099'] },
      },
    })
    .finally(() => (settled = true));
  await lockWaiters(t, ctx.db.pool);
  t.notOk(settled, 'the write waits for the delete');
  await other.query('COMMIT');
  const res = await post;
  t.equal(res.statusCode, 422);
  t.match(res.json().message, /dial-group 'support'/);
  t.equal((await ctx.db.pool.query(`SELECT 1 FROM flows WHERE slug = 'tiers'`)).rowCount, 0);
});

t.test('metrics: offers, answers and misses by group, counted once by the instance that learned them', async (t) => {
  const ctx = await setup(t);
  await event(ctx, 'CallSid=k1&DialWhomNumber=09811100001&Status=busy&EventType=Dial&group=sales');
  await event(ctx, 'CallSid=k1&DialWhomNumber=09811100001&Status=busy&EventType=Answered&group=sales');
  await event(ctx, 'CallSid=k1&DialWhomNumber=09811100001&Status=free&EventType=Terminal&group=sales');
  await dialWhom(ctx, 'CallSid=k2');
  await dialWhom(ctx, 'CallSid=k2&DialCallStatus=no-answer&DialWhomNumber=09811100002');
  await dialWhom(ctx, 'CallSid=k2&DialCallStatus=no-answer&DialWhomNumber=09811100002');
  const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(text, /exoroute_agent_offers_total\{group="sales"\} 2\n/);
  t.match(text, /exoroute_agent_answers_total\{group="sales"\} 1\n/);
  t.match(text, /exoroute_agent_misses_total\{group="sales"\} 1\n/);
});
