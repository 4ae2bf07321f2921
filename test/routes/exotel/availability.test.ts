import t from 'tap';
import type { Test } from 'tap';
import pg from 'pg';
import { buildSecondInstance, buildTestApp, lockWaiters, type TestApp } from '../../helper.js';
import { SPOOL_RESERVE_MS } from '../../../src/config.js';

const AGENT = '+919811100001';
const STRANGER = '+919822200000';

async function until(ok: () => boolean) {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('snapshot did not catch up');
}

/** A dial group with AGENT, and passthru flows that toggle / set the caller's availability. */
async function setup(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  const ctx = await buildTestApp(t, env);
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: {
          slug: 'sales',
          name: 'Sales',
          strategy: 'sequential',
          members: [{ number: '09811100001' }],
        },
      })
    ).statusCode,
    201,
  );
  for (const [slug, then] of [
    ['presence', { availability: 'toggle' }],
    ['break', { availability: 'away', reason: 'tea break' }],
  ] as const) {
    t.equal(
      (
        await ctx.admin({
          method: 'POST',
          url: '/admin/flows',
          payload: {
            slug,
            name: slug,
            type: 'passthru',
            rules: [],
            otherwise: then,
            onError: { branch: 'B' },
          },
        })
      ).statusCode,
      201,
    );
  }
  await until(() => ctx.app.rules.current?.flows.has('break') === true && ctx.app.rules.current.dialGroups.has('sales'));
  return ctx;
}

const call = (ctx: TestApp, flow: string, sid: string, from = '09811100001') =>
  ctx.app.inject({ method: 'GET', url: `/exotel/passthru/${flow}?CallSid=${sid}&CallFrom=${from}&CallTo=08047115777` });
const stored = async (ctx: TestApp) => (await ctx.db.pool.query('SELECT status, reason, set_by FROM agent_availability WHERE number = $1', [AGENT])).rows[0];

t.test('toggle by phone: away (branch B), then available (branch A); the CDR and the audit say who changed what', async (t) => {
  const ctx = await setup(t);
  const first = await call(ctx, 'presence', 'p1');
  t.equal(first.statusCode, 302, 'now away: branch B');
  t.same(await stored(ctx), { status: 'away', reason: null, set_by: 'phone:p1' });
  await until(() => ctx.app.rules.current?.availability.get(AGENT)?.status === 'away');
  const second = await call(ctx, 'presence', 'p2');
  t.equal(second.statusCode, 200, 'now available: branch A');
  t.same(await stored(ctx), { status: 'available', reason: null, set_by: 'phone:p2' });

  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'p1' } });
  t.match(cdr, {
    outcome: 'answered',
    httpStatus: 302,
    decision: {
      action: { availability: 'toggle' },
      decidedBy: 'otherwise',
      availability: { agent: AGENT, from: 'available', to: 'away', why: `${AGENT}: available → away (toggle, set by phone)` },
    },
  });
  const audit = (await ctx.admin({ method: 'GET', url: '/admin/audit?entity=agent' })).json().items;
  t.match(audit, [
    {
      action: 'set-availability',
      entityId: AGENT,
      apiKeyId: null,
      before: { status: 'away', setBy: 'phone:p1' },
      after: { status: 'available', setBy: 'phone:p2' },
    },
    { action: 'set-availability', entityId: AGENT, apiKeyId: null, before: null, after: { status: 'away', setBy: 'phone:p1' } },
  ]);
});

t.test('an explicit away (with a reason) and available; a repeat is answered from what is stored', async (t) => {
  const ctx = await setup(t);
  t.equal((await call(ctx, 'break', 'b1')).statusCode, 302);
  t.same(await stored(ctx), { status: 'away', reason: 'tea break', set_by: 'phone:b1' });
  await until(() => ctx.app.rules.current?.availability.get(AGENT)?.status === 'away');
  t.equal((await call(ctx, 'break', 'b2')).statusCode, 302, 'away again: still B');
  t.match((await ctx.admin({ method: 'GET', url: `/admin/agents/${encodeURIComponent(AGENT)}` })).json(), {
    state: 'away',
    away: { reason: 'tea break', setBy: 'phone:b2' },
  });
});

t.test('concurrent polls of one call toggle once: every poll gets the same branch', async (t) => {
  const ctx = await setup(t);
  const answers = await Promise.all(Array.from({ length: 8 }, () => call(ctx, 'presence', 'same')));
  t.same(
    answers.map((a) => a.statusCode),
    Array(8).fill(302),
    'all B: away, once',
  );
  t.same(await stored(ctx), { status: 'away', reason: null, set_by: 'phone:same' });
  t.equal((await ctx.db.pool.query(`SELECT 1 FROM audit_entries WHERE entity = 'agent'`)).rowCount, 1, 'one change, one audit entry');
  t.equal(await ctx.db.prisma.cdr.count({ where: { callSid: 'same' } }), 8, 'one CDR per poll');
  const repeats = await ctx.db.prisma.cdr.findMany({ where: { callSid: 'same' } });
  t.equal(repeats.filter((c) => /as this call already set it/.test(JSON.stringify(c.decision))).length, 7, 'the repeats say so');
  // two different calls at the same moment flip twice
  const both = await Promise.all([call(ctx, 'presence', 'x1'), call(ctx, 'presence', 'x2')]);
  t.same(both.map((a) => a.statusCode).sort(), [200, 302], 'one turned it available, the other away again');
  t.equal((await stored(ctx))?.status, 'away');
});

t.test('toggles by several calls at once: each CDR and audit entry says what that toggle changed', async (t) => {
  const ctx = await setup(t);
  const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => call(ctx, 'presence', `many${i}`)));
  t.same(answers.map((a) => a.statusCode).sort(), [200, 200, 200, 302, 302, 302], 'six flips');
  const cdrs = await ctx.db.prisma.cdr.findMany({ where: { flowSlug: 'presence' } });
  const said = cdrs.map((c) => (c.decision as { availability: { from: string; to: string } }).availability);
  t.same(
    said.filter((a) => a.from === a.to),
    [],
    'no toggle says it went from a status to the same one',
  );
  const { rows } = await ctx.db.pool.query<{ before: string; after: string }>(
    `SELECT COALESCE(before ->> 'status', 'available') AS before, after ->> 'status' AS after FROM audit_entries WHERE entity = 'agent' ORDER BY id`,
  );
  t.equal(rows.length, 6, 'six changes audited');
  t.same(
    rows.map((r, i) => [r.before, r.after, i === 0 ? 'available' : rows[i - 1]!.after]).filter(([before, after, prev]) => before === after || before !== prev),
    [],
    'each entry starts from the one before it, and changes it',
  );
});

t.test("a call's repeat after another call changed it: changes nothing, and gets that call's branch again", async (t) => {
  const ctx = await setup(t);
  t.equal((await call(ctx, 'presence', 'r1')).statusCode, 302, 'r1: away');
  await until(() => ctx.app.rules.current?.availability.get(AGENT)?.status === 'away');
  t.equal((await call(ctx, 'presence', 'r2')).statusCode, 200, 'r2: available');
  await until(() => ctx.app.rules.current?.availability.get(AGENT)?.status === 'available');
  const repeat = await call(ctx, 'presence', 'r1');
  t.equal(repeat.statusCode, 302, "r1's repeat: B, as r1 answered");
  t.same(await stored(ctx), { status: 'available', reason: null, set_by: 'phone:r2' }, 'still as r2 set it');
  t.equal((await ctx.db.pool.query(`SELECT 1 FROM audit_entries WHERE entity = 'agent'`)).rowCount, 2, 'no third change');
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'r1' }, orderBy: { receivedAt: 'desc' } });
  t.match(JSON.stringify(cdr.decision), /away, as this call already set it/);
  // an explicit away by phone, repeated after an API change: the repeat changes nothing either
  t.equal((await call(ctx, 'break', 'r3')).statusCode, 302);
  const put = await ctx.admin({ method: 'PUT', url: `/admin/agents/${encodeURIComponent(AGENT)}/availability`, payload: { status: 'available' } });
  t.equal(put.statusCode, 200);
  t.equal((await call(ctx, 'break', 'r3')).statusCode, 302, "r3's repeat: B, as r3 answered");
  t.equal((await stored(ctx))?.status, 'available', 'the API change stands');
});

t.test('one call may set away and then available (two menus of one call); each repeated is a repeat', async (t) => {
  const ctx = await setup(t);
  const url = (flow: string) => `/exotel/passthru/${flow}?CallSid=menu1&CallFrom=09811100001&CallTo=08047115777`;
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/flows',
        payload: { slug: 'back', name: 'back', type: 'passthru', rules: [], otherwise: { availability: 'available' }, onError: { branch: 'B' } },
      })
    ).statusCode,
    201,
  );
  await until(() => ctx.app.rules.current?.flows.has('back') === true);
  t.equal((await ctx.app.inject({ method: 'GET', url: url('break') })).statusCode, 302, 'away');
  t.equal((await ctx.app.inject({ method: 'GET', url: url('break') })).statusCode, 302, 'away, repeated');
  t.equal((await ctx.app.inject({ method: 'GET', url: url('back') })).statusCode, 200, 'then available, in the same call');
  t.same(await stored(ctx), { status: 'available', reason: null, set_by: 'phone:menu1' });
  t.equal((await ctx.app.inject({ method: 'GET', url: url('back') })).statusCode, 200, 'available, repeated');
  t.equal((await ctx.db.pool.query(`SELECT 1 FROM audit_entries WHERE entity = 'agent'`)).rowCount, 2, 'two changes');
});

t.test('a caller who is no agent gets branch B and changes nothing', async (t) => {
  const ctx = await setup(t);
  const res = await call(ctx, 'presence', 'n1', STRANGER);
  t.equal(res.statusCode, 302);
  t.equal((await ctx.db.pool.query('SELECT 1 FROM agent_availability')).rowCount, 0);
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'n1' } });
  t.match(cdr.decision, { availability: { agent: null, to: null, why: `${STRANGER} is no member of any dial group; nothing changed` } });
  const anonymous = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/presence?CallSid=n2' });
  t.equal(anonymous.statusCode, 302, 'no CallFrom: no agent');
});

t.test("HEAD on the flow's URL (a link checker, an uptime monitor) toggles nobody: 405 with Allow: GET, POST, and one CDR saying so", async (t) => {
  const ctx = await setup(t);
  const head = await ctx.app.inject({ method: 'HEAD', url: '/exotel/passthru/presence?CallSid=h1&CallFrom=09811100001&CallTo=08047115777' });
  t.equal(head.statusCode, 405);
  t.equal(head.headers.allow, 'GET, POST');
  t.equal((await ctx.db.pool.query('SELECT 1 FROM agent_availability')).rowCount, 0, 'no availability written');
  t.match(await ctx.db.prisma.cdr.findMany({ where: { callSid: 'h1' } }), [
    { endpoint: 'passthru', flowSlug: 'presence', outcome: 'rejected', httpStatus: 405, decision: null },
  ]);
  t.equal((await call(ctx, 'presence', 'p1')).statusCode, 302, "the agent's first real call still toggles them away");
});

t.test('simulate shows what the action would do and changes nothing', async (t) => {
  const ctx = await setup(t);
  const sim = await ctx.admin({
    method: 'POST',
    url: '/admin/flows/presence/simulate',
    payload: { endpoint: 'passthru', params: { CallSid: 's1', CallFrom: '09811100001' } },
  });
  t.equal(sim.statusCode, 200);
  t.match(sim.json(), { answer: { statusCode: 302 }, availability: { agent: AGENT, from: 'available', to: 'away' } });
  t.equal((await ctx.db.pool.query('SELECT 1 FROM agent_availability')).rowCount, 0, 'nothing written');
  t.equal(await ctx.db.prisma.cdr.count(), 0, 'no CDR');
});

t.test('an availability action only in passthru flows, never as onError', async (t) => {
  const ctx = await setup(t);
  const onError = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: {
      slug: 'x',
      name: 'x',
      type: 'passthru',
      rules: [],
      otherwise: { branch: 'A' },
      onError: { availability: 'toggle' },
    },
  });
  t.equal(onError.statusCode, 400);
  t.match(onError.json().message, /^body\/onError: is answered when the database cannot be reached/);
  const dial = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: {
      slug: 'y',
      name: 'y',
      type: 'dial',
      rules: [],
      otherwise: { availability: 'toggle' },
      onError: { numbers: ['+919811100001'] },
    },
  });
  t.equal(dial.statusCode, 400);
  t.match(dial.json().message, /^body\/otherwise: a dial flow's action is/);
  const blank = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'z', name: 'z', type: 'passthru', rules: [], otherwise: { availability: 'away', reason: '  ' }, onError: { branch: 'A' } },
  });
  t.equal(blank.statusCode, 400, 'a reason of spaces says nothing in the audit');
  t.match(blank.json().message, /^body\/otherwise\/reason: must be some text, not only spaces/);
});

t.test("the write fails: the flow's onError, and the CDR says why", async (t) => {
  const ctx = await setup(t);
  await ctx.db.pool.query('ALTER TABLE agent_availability RENAME TO agent_availability_gone');
  const res = await call(ctx, 'presence', 'f1');
  t.equal(res.statusCode, 302, 'onError: branch B');
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'f1' } });
  t.match(cdr, { outcome: 'on-error', reason: /^availability not saved: /, decision: { decidedBy: 'onError' } });
  await ctx.db.pool.query('ALTER TABLE agent_availability_gone RENAME TO agent_availability');
});

t.test("a write that cannot be made within the budget is not made: the flow's onError is what happened", async (t) => {
  const ctx = await setup(t, { DECISION_BUDGET_MS: '300' });
  await ctx.db.pool.query(`INSERT INTO agent_availability (number, status, set_by, set_at) VALUES ($1, 'available', 'seed', now())`, [AGENT]);
  // another session holds the agent's row until after the callback has been answered
  const blocker = new pg.Client({ connectionString: ctx.db.url });
  await blocker.connect();
  t.teardown(() => blocker.end());
  await blocker.query('BEGIN');
  await blocker.query('SELECT 1 FROM agent_availability WHERE number = $1 FOR UPDATE', [AGENT]);
  // the statement timeouts the write sets (src/store/agents.ts, within()): how long Postgres may take
  const timeouts: number[] = [];
  const seen = new WeakSet<pg.PoolClient>();
  ctx.db.pool.on('acquire', (client) => {
    if (seen.has(client)) return;
    seen.add(client);
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    client.query = ((text: unknown, ...rest: unknown[]) => {
      // a string, or a config with its query_timeout
      const sql = typeof text === 'string' ? text : (text as { text?: unknown } | null)?.text;
      const m = typeof sql === 'string' ? /^SET LOCAL statement_timeout = (\d+)$/.exec(sql) : null;
      if (m) timeouts.push(Number(m[1]));
      return query(text, ...rest);
    }) as typeof client.query;
  });
  const res = await call(ctx, 'presence', 'late1');
  t.equal(res.statusCode, 302, 'onError: branch B');
  t.ok(
    timeouts.length > 0 && timeouts[0]! <= 300 - SPOOL_RESERVE_MS,
    `Postgres given ${timeouts[0]} ms: the budget less the ${SPOOL_RESERVE_MS} ms kept for the CDR`,
  );
  await blocker.query('COMMIT');
  await new Promise((r) => setTimeout(r, 300));
  t.same(await stored(ctx), { status: 'available', reason: null, set_by: 'seed' }, 'not written afterwards either');
  t.equal((await ctx.db.pool.query(`SELECT 1 FROM audit_entries WHERE entity = 'agent'`)).rowCount, 0, 'no audit entry');
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'late1' } });
  t.match(cdr, { outcome: 'on-error', reason: /availability not saved: .*statement timeout/ });
});

t.test("the time a write waits for the agent's lock counts in its budget: answered onError, it is not made afterwards", async (t) => {
  const ctx = await setup(t);
  await ctx.db.pool.query(`INSERT INTO agent_availability (number, status, set_by, set_at) VALUES ($1, 'available', 'seed', now())`, [AGENT]);
  // one session holds the agent's lock, another the agent's row
  const [lock, row] = [new pg.Client({ connectionString: ctx.db.url }), new pg.Client({ connectionString: ctx.db.url })];
  for (const c of [lock, row]) {
    await c.connect();
    t.teardown(() => c.end());
    await c.query('BEGIN');
  }
  await lock.query('SELECT pg_advisory_xact_lock(1634168436, hashtext($1))', [AGENT]);
  await row.query('SELECT 1 FROM agent_availability WHERE number = $1 FOR UPDATE', [AGENT]);
  const start = performance.now();
  const answer = call(ctx, 'presence', 'late2');
  // The write waits for the agent's lock until 1.25 s into the callback, within DECISION_BUDGET_MS
  // (1500), then for the row until after it: neither wait alone is past the budget, both are.
  await lockWaiters(t, ctx.db.pool, 1, { query: '%pg_advisory_xact_lock%' });
  await new Promise((r) => setTimeout(r, 1250 - (performance.now() - start)));
  await lock.query('COMMIT');
  await new Promise((r) => setTimeout(r, 2250 - (performance.now() - start)));
  await row.query('COMMIT');
  t.equal((await answer).statusCode, 302, 'onError: branch B');
  await new Promise((r) => setTimeout(r, 300));
  t.same(await stored(ctx), { status: 'available', reason: null, set_by: 'seed' }, 'not written afterwards');
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'late2' } });
  t.match(cdr, { outcome: 'on-error', reason: /^availability not saved: / });
});

t.test('two instances: an agent who calls in through one is away on the other', async (t) => {
  const one = await setup(t);
  const two = await buildSecondInstance(t, one);
  await until(() => two.app.rules.current?.flows.has('presence') === true);
  t.equal((await call(two, 'presence', 'i1')).statusCode, 302);
  await until(() => one.app.rules.current?.availability.get(AGENT)?.status === 'away');
  t.equal((await call(one, 'presence', 'i2')).statusCode, 200, 'the other instance toggles it back');
});
