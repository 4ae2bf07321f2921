import t from 'tap';
import { createHash } from 'node:crypto';
import type { Test } from 'tap';
import pg from 'pg';
import { buildTestApp, capturedLog, seeded, type TestApp } from '../../helper.js';
import { SPOOL_RESERVE_MS } from '../../../src/config.js';

const A = '+919811100001';
const B = '+919811100002';
const C = '+919811100003';

async function until(ok: () => boolean) {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('snapshot did not catch up');
}

/** The group's round-robin position: the next value of its sequence, dial_group_rr_<md5 of its slug>. */
async function rrPosition(ctx: TestApp, slug = 'sales'): Promise<number> {
  const { rows } = await ctx.db.pool.query<{ next: string }>(`SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next
    FROM dial_group_rr_${createHash('md5').update(slug).digest('hex')}`);
  return Number(rows[0]!.next);
}

/** A dial group `sales` (A, B, C by priority) and a dial flow `agents` that always rings it. */
async function setup(t: Test, group: Record<string, unknown> = {}, env: Record<string, string> = {}, random?: () => number) {
  const ctx = await buildTestApp(t, { PUBLIC_URL: 'https://exo.example.com', ...env }, random ? { random } : {});
  const res = await ctx.admin({
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
      ...group,
    },
  });
  t.equal(res.statusCode, 201, 'group created');
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: {
      slug: 'agents',
      name: 'Agents',
      type: 'dial',
      rules: [],
      otherwise: { dialGroup: 'sales' },
      onError: { numbers: ['+919800000099'] },
    },
  });
  t.equal(flow.statusCode, 201, 'flow created');
  await until(() => ctx.app.rules.current?.flows.has('agents') === true && ctx.app.rules.current.dialGroups.has('sales'));
  return ctx;
}

const dialWhom = async (ctx: TestApp, query: string) => {
  const res = await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/agents?${query}` });
  return { status: res.statusCode, type: res.headers['content-type'], body: res.body };
};
const first = (body: string) => body.split(',')[0];

t.test('sequential: Dial Whom answers every member in priority order as text/plain E.164', async (t) => {
  const ctx = await setup(t);
  const r = await dialWhom(ctx, 'CallSid=s1&CallFrom=09800000001&CallTo=08047115777&Direction=incoming');
  t.equal(r.status, 200);
  t.match(r.type, /text\/plain/);
  t.equal(r.body, `${A},${B},${C}`);
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 's1' } });
  t.match(cdr, { endpoint: 'dial-whom', flowSlug: 'agents', outcome: 'answered', httpStatus: 200, responseBody: `${A},${B},${C}` });
});

t.test('re-fetch: each attempt answers only untried numbers, down to an empty answer', async (t) => {
  const ctx = await setup(t);
  t.equal((await dialWhom(ctx, 'CallSid=r1')).body, `${A},${B},${C}`);
  t.equal((await dialWhom(ctx, `CallSid=r1&DialCallStatus=no-answer&DialWhomNumber=09811100001`)).body, `${B},${C}`);
  t.equal((await dialWhom(ctx, `CallSid=r1&DialCallStatus=busy&DialWhomNumber=09811100002`)).body, C);
  const last = await dialWhom(ctx, `CallSid=r1&DialCallStatus=no-answer&DialWhomNumber=09811100003`);
  t.equal(last.status, 200);
  t.equal(last.body, '', 'nobody left: empty body');
  t.equal((await dialWhom(ctx, `CallSid=r1&DialCallStatus=busy&DialWhomNumber=09811100002`)).body, C, 'a repeated attempt gets its first answer again');
  t.equal(await ctx.db.prisma.cdr.count({ where: { callSid: 'r1' } }), 5);
});

t.test('concurrent identical polls of one attempt all get the same answer', async (t) => {
  const ctx = await setup(t, { strategy: 'random' }, {}, seeded(7));
  const answers = await Promise.all(Array.from({ length: 20 }, () => dialWhom(ctx, 'CallSid=c1')));
  t.equal(new Set(answers.map((a) => a.body)).size, 1, answers[0]!.body);
  const refetch = await Promise.all(
    Array.from({ length: 10 }, () => dialWhom(ctx, `CallSid=c1&DialCallStatus=no-answer&DialWhomNumber=${encodeURIComponent(first(answers[0]!.body)!)}`)),
  );
  t.equal(new Set(refetch.map((a) => a.body)).size, 1);
  t.equal(refetch[0]!.body, answers[0]!.body.split(',').slice(1).join(','), 'the re-fetch continues the order of the first answer');
});

t.test('round robin: the first number rotates across separate calls', async (t) => {
  const ctx = await setup(t, { strategy: 'round_robin' });
  const firsts = [];
  for (let i = 0; i < 6; i++) firsts.push(first((await dialWhom(ctx, `CallSid=rr${i}`)).body));
  t.same(firsts, [A, B, C, A, B, C]);
  t.equal((await dialWhom(ctx, 'CallSid=rr1')).body, `${B},${C},${A}`, 'a repeat of a call keeps its own rotation');
  t.equal(await rrPosition(ctx), 6, 'the position lives in Postgres');
});

t.test('weighted: first offers follow the weights over many calls (seeded random)', async (t) => {
  const ctx = await setup(
    t,
    {
      strategy: 'weighted',
      members: [
        { number: A, weight: 6 },
        { number: B, weight: 3 },
        { number: C, weight: 1 },
      ],
    },
    {},
    seeded(42),
  );
  const counts = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const f = first((await dialWhom(ctx, `CallSid=w${i}`)).body)!;
    counts.set(f, (counts.get(f) ?? 0) + 1);
  }
  const share = (n: string) => (counts.get(n) ?? 0) / 400;
  t.ok(Math.abs(share(A) - 0.6) < 0.08, `A first ${share(A)}`);
  t.ok(Math.abs(share(B) - 0.3) < 0.08, `B first ${share(B)}`);
  t.ok(Math.abs(share(C) - 0.1) < 0.06, `C first ${share(C)}`);
});

t.test('busy agents are skipped until free, and busy expires without a free event', async (t) => {
  const ctx = await setup(t);
  const event = (q: string) => ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallSid=e1&CallFrom=09800000001&Direction=outbound-dial&${q}` });
  const busy = await event('DialWhomNumber=09811100001&Status=busy&EventType=Dial');
  t.equal(busy.statusCode, 200);
  t.equal((await dialWhom(ctx, 'CallSid=b1')).body, `${B},${C}`, 'A is on a call');
  t.equal((await event('DialWhomNumber=09811100001&Status=free&EventType=Terminal')).statusCode, 200);
  t.equal((await dialWhom(ctx, 'CallSid=b2')).body, `${A},${B},${C}`, 'A is free again');
  await event('DialWhomNumber=09811100002&Status=busy&EventType=Dial');
  t.equal((await dialWhom(ctx, 'CallSid=b3')).body, `${A},${C}`);
  await ctx.db.pool.query(`UPDATE agent_states SET busy_since = now() - interval '2 hours' WHERE number = $1`, [B]);
  t.equal((await dialWhom(ctx, 'CallSid=b4')).body, `${A},${B},${C}`, 'busy older than AGENT_BUSY_TTL_SECONDS (1 h) has expired');
  t.equal(await ctx.db.prisma.cdr.count({ where: { endpoint: 'dial-events' } }), 3, 'each event is a CDR');
  const missing = await ctx.app.inject({ method: 'GET', url: '/exotel/dial-events?CallSid=e2&Status=busy' });
  t.equal(missing.statusCode, 400);
});

t.test(
  'a flow that goes back to its Connect after nobody was available (a hold loop): agents free by then are offered, not the stored empty answer',
  async (t) => {
    // Exotel's flow: Connect → "We didn't dial anyone" → a Greeting ("all agents are busy, please
    // hold") → the same Connect. Nobody was dialled, so that request carries what the first did (no
    // DialWhomNumber, no DialCallStatus): it is no repeated poll, and must not get its empty answer.
    const ctx = await setup(t);
    const event = (q: string) => ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallSid=other&CallFrom=09800000002&Direction=outbound-dial&${q}` });
    for (const n of ['09811100001', '09811100002', '09811100003']) t.equal((await event(`DialWhomNumber=${n}&Status=busy&EventType=Dial`)).statusCode, 200);
    const connect = async () =>
      JSON.parse((await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents?CallSid=hold1&CallFrom=09800000001' })).body).destination.numbers;
    t.same(await connect(), [], 'everyone is on a call: nobody to ring');
    t.same(await connect(), [], 'asked again at once, still nobody');
    await event('DialWhomNumber=09811100002&Status=free&EventType=Terminal');
    t.same(await connect(), [B], 'back from the hold loop: B, free now, is offered');
    t.same(await connect(), [B], 'and a repeated poll of that answer gets it again');
    t.same(
      JSON.parse(
        (
          await ctx.app.inject({
            method: 'GET',
            url: `/exotel/connect/agents?CallSid=hold1&CallFrom=09800000001&DialCallStatus=no-answer&DialWhomNumber=09811100002`,
          })
        ).body,
      ).destination.numbers,
      [],
      'B tried: nobody left',
    );
  },
);

t.test('least_recent: the member dialed longest ago comes first', async (t) => {
  const ctx = await setup(t, { strategy: 'least_recent' });
  for (const n of ['09811100003', '09811100001']) {
    await ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallSid=l0&DialWhomNumber=${n}&Status=busy&EventType=Dial` });
    await ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallSid=l0&DialWhomNumber=${n}&Status=free&EventType=Terminal` });
    await new Promise((r) => setTimeout(r, 5));
  }
  t.equal((await dialWhom(ctx, 'CallSid=l1')).body, `${B},${C},${A}`, 'never dialed, then dialed earliest, then latest');
});

t.test("sticky: a caller's last connected agent goes first, within the lookback", async (t) => {
  const ctx = await setup(t, { strategy: 'sequential', sticky: { enabled: true, lookbackDays: 7 } });
  await ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallSid=k0&CallFrom=09800000005&DialWhomNumber=09811100003&Status=busy&EventType=Answered` });
  await ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallSid=k0&CallFrom=09800000005&DialWhomNumber=09811100003&Status=free&EventType=Terminal` });
  t.equal((await dialWhom(ctx, 'CallSid=k1&CallFrom=09800000005')).body, `${C},${A},${B}`);
  t.equal((await dialWhom(ctx, 'CallSid=k2&CallFrom=09800000006')).body, `${A},${B},${C}`, 'other callers are not affected');
  await ctx.db.pool.query(`UPDATE caller_agents SET connected_at = now() - interval '8 days'`);
  t.equal((await dialWhom(ctx, 'CallSid=k3&CallFrom=09800000005')).body, `${A},${B},${C}`, 'older than lookbackDays: not sticky');
});

t.test('shifts and switched-off members are not offered', async (t) => {
  const ctx = await setup(t);
  await ctx.admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'night', name: 'Night', weekly: [] } });
  const patched = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100002', payload: { schedule: 'night' } });
  t.equal(patched.statusCode, 200);
  const off = await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/+919811100003', payload: { active: false } });
  t.equal(off.statusCode, 200);
  await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.find((m) => m.number === C)?.active === false);
  t.equal((await dialWhom(ctx, 'CallSid=sh1')).body, A, 'B is off shift (schedule never open), C inactive');
});

t.test('connect: Connect parameters v1.0 with the group settings in snake_case and the dial events URL', async (t) => {
  const secret = 'connect-secret-123';
  const ctx = await setup(
    t,
    {
      strategy: 'parallel',
      connect: {
        record: true,
        recordingChannels: 'dual',
        maxRingingDuration: 45,
        maxConversationDuration: 3600,
        musicOnHold: { type: 'operator_tone' },
        outgoingPhoneNumber: '+918047115777',
        fetchAfterAttempt: false,
        maxParallelAttempts: 3,
        startCallPlayback: { playbackTo: 'both', type: 'text', value: 'This call is recorded' },
      },
    },
    { EXOTEL_CALLBACK_SECRET: secret },
  );
  const res = await ctx.app.inject({
    method: 'GET',
    url: `/exotel/connect/agents?CallSid=cn1&CallFrom=09800000001&token=${secret}`,
    headers: { 'exotel-version': '1.0' },
  });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /application\/json/);
  t.same(res.json(), {
    fetch_after_attempt: false,
    destination: { numbers: [A, B, C] },
    record: true,
    recording_channels: 'dual',
    max_ringing_duration: 45,
    max_conversation_duration: 3600,
    music_on_hold: { type: 'operator_tone' },
    outgoing_phone_number: '+918047115777',
    parallel_ringing: { activate: true, max_parallel_attempts: 3 },
    dial_passthru_event_url: `https://exo.example.com/exotel/dial-events?token=${secret}&group=sales&flow=agents`,
    start_call_playback: { playback_to: 'both', type: 'text', value: 'This call is recorded' },
  });
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'cn1' } });
  t.notOk(JSON.stringify(cdr, (_k, v) => (typeof v === 'bigint' ? String(v) : v)).includes(secret), 'the secret in the answer is not stored');
  t.match(cdr.responseBody, /token=\[redacted\]/);

  const odd = await ctx.app.inject({ method: 'GET', url: `/exotel/connect/agents?CallSid=cn2&token=${secret}`, headers: { 'exotel-version': '2.0' } });
  t.equal(odd.statusCode, 200, 'an unknown Exotel-Version is still answered (1.0)');
  t.match((await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'cn2' } })).decision, { warnings: [/Exotel-Version 2.0/] });
});

t.test('simulate covers dial-whom and connect without changing dial state or writing CDRs', async (t) => {
  const ctx = await setup(t, { strategy: 'round_robin' });
  const sim = await ctx.admin({ method: 'POST', url: '/admin/flows/agents/simulate', payload: { endpoint: 'dial-whom', params: { CallSid: 'sim1' } } });
  t.equal(sim.statusCode, 200);
  t.match(sim.json(), { answer: { statusCode: 200, body: `${A},${B},${C}` }, numbers: [A, B, C], decidedBy: 'otherwise' });
  const again = await ctx.admin({ method: 'POST', url: '/admin/flows/agents/simulate', payload: { endpoint: 'connect', params: { CallSid: 'sim1' } } });
  t.match(JSON.parse(again.json().answer.body), { destination: { numbers: [A, B, C] } }, 'the rotation did not move');
  t.equal(await ctx.db.prisma.cdr.count(), 0);
  t.equal(await ctx.db.prisma.dialCall.count(), 0);
  t.equal((await dialWhom(ctx, 'CallSid=real1')).body, `${A},${B},${C}`, 'the first real call takes the position the simulation showed');
});

t.test('a dial flow with a numbers action, and the dial endpoints refuse other flow types', async (t) => {
  const ctx = await setup(t);
  await ctx.admin({
    method: 'PUT',
    url: '/admin/flows/agents',
    payload: {
      name: 'x',
      type: 'dial',
      rules: [{ name: 'escalate', when: { digits: { equals: '9' } }, then: { numbers: ['08047110000', '+919812345678'] } }],
      otherwise: { dialGroup: 'sales' },
      onError: { numbers: ['+919800000099'] },
    },
  });
  await until(() => ctx.app.rules.current?.flows.get('agents')?.name === 'x');
  t.equal((await dialWhom(ctx, 'CallSid=n1&digits=%229%22')).body, '+918047110000,+919812345678');
  await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'pt', name: 'p', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } },
  });
  await until(() => ctx.app.rules.current?.flows.has('pt') === true);
  const wrong = await ctx.app.inject({ method: 'GET', url: '/exotel/dial-whom/pt?CallSid=n2' });
  t.equal(wrong.statusCode, 404);
  t.equal((await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents' })).statusCode, 400, 'CallSid missing');
});

t.test('concurrent first polls of a new call: one answer, and the rotation moves once for the call', async (t) => {
  const ctx = await setup(t, { strategy: 'round_robin' });
  const answers = await Promise.all(Array.from({ length: 12 }, () => dialWhom(ctx, 'CallSid=cc1')));
  t.same([...new Set(answers.map((a) => a.body))], [`${A},${B},${C}`]);
  t.equal(await rrPosition(ctx), 1);
  t.equal(first((await dialWhom(ctx, 'CallSid=cc2')).body), B, 'the next call starts one further');
});

t.test('a connected attempt (DialCallStatus=completed) makes the agent sticky for the caller', async (t) => {
  const ctx = await setup(t, { strategy: 'sequential', sticky: { enabled: true, lookbackDays: 7 } });
  t.equal((await dialWhom(ctx, 'CallSid=sc1&CallFrom=09800000007')).body, `${A},${B},${C}`);
  t.equal((await dialWhom(ctx, 'CallSid=sc1&CallFrom=09800000007&DialCallStatus=completed&DialWhomNumber=09811100002')).body, `${A},${C}`);
  t.equal((await dialWhom(ctx, 'CallSid=sc2&CallFrom=09800000007')).body, `${B},${A},${C}`);
});

t.test('one round trip to Postgres per dial callback (besides its CDR)', async (t) => {
  const ctx = await setup(t, { strategy: 'round_robin', sticky: { enabled: true, lookbackDays: 7 } });
  const { pool } = ctx.db;
  const seen: string[] = [];
  const query = pool.query.bind(pool);
  pool.query = ((config: unknown, ...rest: unknown[]) => {
    const text = typeof config === 'string' ? config : (config as { text: string }).text;
    if (!/\bcdrs\b/.test(text)) seen.push(text);
    return (query as (...args: unknown[]) => unknown)(config, ...rest);
  }) as typeof pool.query;
  t.teardown(() => {
    pool.query = query;
  });

  await dialWhom(ctx, 'CallSid=o1&CallFrom=09800000001');
  await ctx.app.inject({ method: 'GET', url: '/exotel/connect/agents?CallSid=o1&CallFrom=09800000001' });
  await dialWhom(ctx, 'CallSid=o1&CallFrom=09800000001&DialCallStatus=no-answer&DialWhomNumber=09811100001');
  await dialWhom(ctx, 'CallSid=o1&CallFrom=09800000001&DialCallStatus=no-answer&DialWhomNumber=09811100001');
  await dialWhom(ctx, 'CallSid=o1&CallFrom=09800000001&DialCallStatus=completed&DialWhomNumber=09811100002');
  t.equal(seen.length, 5, seen.join('\n'));
  t.ok(
    seen.every((s) => /dial_offer\(/.test(s)),
    'each the one dial_offer() call',
  );
});

t.test("a dial callback's CDR and simulate say what the dialing did: strategy, who was skipped and why, sticky", async (t) => {
  const ctx = await setup(t, { strategy: 'round_robin', sticky: { enabled: true, lookbackDays: 30 } });
  t.equal((await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/sales/members/09811100002', payload: { active: false } })).statusCode, 200);
  await until(() => ctx.app.rules.current?.dialGroups.get('sales')?.members.some((m) => !m.active) === true);
  await ctx.app.inject({ method: 'GET', url: '/exotel/dial-events?CallSid=tr0&DialWhomNumber=09811100003&Status=busy&EventType=Dial' });
  const r = await dialWhom(ctx, 'CallSid=tr1&CallFrom=09800000001');
  t.equal(r.body, A);
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'tr1' } });
  t.match(cdr.decision, {
    dial: {
      tier: 'sales',
      strategy: 'round_robin',
      sticky: 'last 30 days',
      skipped: [
        { number: B, why: 'inactive' },
        { number: C, why: 'busy' },
      ],
    },
  });
  const sim = await ctx.admin({ method: 'POST', url: '/admin/flows/agents/simulate', payload: { endpoint: 'dial-whom', params: { CallSid: 'tr2' } } });
  t.match(sim.json().dial, { tier: 'sales', strategy: 'round_robin', skipped: [{ number: B }, { number: C }] });
});

t.test("Postgres holding a dial callback past the budget: onError is answered before the CDR's reserve, not after the budget", async (t) => {
  // The dial state used to be waited for until the budget's end: the CDR's commit deadline was then
  // <= 0 and its fsync to the spool came after the budget (302-310 ms measured for 300 ms). Now the
  // wait ends SPOOL_RESERVE_MS earlier, which the fsync has. Asserted on what the CDR records (how
  // long the dial state was waited for, when the CDR was made), not on a wall clock.
  const budget = 300;
  const ctx = await setup(t, {}, { DECISION_BUDGET_MS: String(budget) });
  const holder = await ctx.db.pool.connect();
  t.teardown(() => holder.release());
  for (const [i, endpoint] of ['dial-whom', 'connect'].entries()) {
    const sid = `slow${i}`;
    // the call's advisory lock, as dial_offer() takes it
    await holder.query('SELECT pg_advisory_lock(1684627820, hashtext($1))', [sid]);
    const res = await ctx.app.inject({ method: 'GET', url: `/exotel/${endpoint}/agents?CallSid=${sid}` });
    await holder.query('SELECT pg_advisory_unlock(1684627820, hashtext($1))', [sid]);
    t.equal(res.statusCode, 200);
    const numbers = endpoint === 'connect' ? res.json().destination.numbers.join(',') : res.body;
    t.equal(numbers, '+919800000099', `${endpoint}: onError answered`);
    // its commit had no time left: spooled (fsynced) before the answer, and replayed from there
    let cdr = await ctx.db.prisma.cdr.findFirst({ where: { callSid: sid } });
    for (let n = 0; n < 300 && !cdr; n++) {
      await new Promise((r) => setTimeout(r, 20));
      cdr = await ctx.db.prisma.cdr.findFirst({ where: { callSid: sid } });
    }
    if (!cdr) throw new Error(`no CDR for ${sid}`);
    t.equal(cdr.outcome, 'on-error');
    const waited = Number(/^no answer within the ([\d.]+) ms left of the budget$/.exec(cdr.reason ?? '')?.[1]);
    t.ok(waited <= budget - SPOOL_RESERVE_MS, `${endpoint}: waited ${waited} ms for the dial state, at most the budget less the CDR's ${SPOOL_RESERVE_MS} ms`);
    t.ok(cdr.handlingMs < budget, `${endpoint}: the CDR was made after ${cdr.handlingMs.toFixed(0)} ms, within the ${budget} ms budget`);
  }
});

t.test('Connect for a group of more than 50: the first 50 in the call order, a re-fetch offers the rest, the CDR says it was cut', async (t) => {
  // A group may have 500 members; a Connect answer carries at most 50. It used to fail its own check
  // and answer nobody ("dial state unavailable", default settings): Exotel's "we didn't dial anyone".
  const ctx = await setup(t);
  const many = Array.from({ length: 60 }, (_, i) => `+9198111${String(i).padStart(5, '0')}`);
  const g = await ctx.admin({
    method: 'POST',
    url: '/admin/dial-groups',
    payload: { slug: 'big', name: 'Big', strategy: 'sequential', members: many.map((number, priority) => ({ number, priority })), connect: { record: true } },
  });
  t.equal(g.statusCode, 201, 'a 60-member group is accepted');
  const f = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'big', name: 'Big', type: 'dial', rules: [], otherwise: { dialGroup: 'big' }, onError: { dialGroup: 'big' } },
  });
  t.equal(f.statusCode, 201);
  await until(() => ctx.app.rules.current?.flows.has('big') === true);
  const connect = (query: string) => ctx.app.inject({ method: 'GET', url: `/exotel/connect/big?CallSid=big1&${query}` });
  const cdrOf = async (attempt: string) =>
    (await ctx.db.prisma.cdr.findMany({ where: { callSid: 'big1' }, orderBy: { id: 'asc' } })).find((c) => (c.params as Record<string, string>).n === attempt);

  const res = await connect('n=1');
  t.equal(res.statusCode, 200);
  t.same(res.json().destination.numbers, many.slice(0, 50), 'the first 50 in priority order');
  t.equal(res.json().record, true, "the group's Connect settings");
  t.match(await cdrOf('1'), { outcome: 'answered', reason: null, decision: { dial: { tier: 'big', cut: 'first 50 of 60' } } });

  t.same((await connect('n=2')).json().destination.numbers, many.slice(0, 50), 'a repeated poll of the attempt: the same 50');
  const next = await connect(`n=3&DialCallStatus=no-answer&DialWhomNumber=${encodeURIComponent(many[0]!)}`);
  t.same(next.json().destination.numbers, many.slice(1, 51), 'the re-fetch: the 51st, never answered, is offered now');
  t.match(await cdrOf('3'), { outcome: 'answered', decision: { dial: { cut: 'first 50 of 59', skipped: [{ number: many[0], why: 'tried' }] } } });

  const sim = await ctx.admin({ method: 'POST', url: '/admin/flows/big/simulate', payload: { endpoint: 'connect', params: { CallSid: 'sim-big' } } });
  t.match(sim.json(), { numbers: many.slice(0, 50), dial: { cut: 'first 50 of 60' } }, 'simulate says so too');
  const whom = await ctx.app.inject({ method: 'GET', url: '/exotel/dial-whom/big?CallSid=big2' });
  t.same(whom.body.split(','), many, 'Dial Whom (plain text, no limit stated by Exotel) answers all 60');
});

t.test('a CallSid of more than 200 characters is a 400 naming it, with its CDR, on every endpoint; no error blamed on the dial state', async (t) => {
  const ctx = await setup(t);
  await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'main', name: 'Main', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'B' } },
  });
  await until(() => ctx.app.rules.current?.flows.has('main') === true);
  // Exotel's CallSids have 32 characters; 2,000 CJK ones would not fit the dial state's key.
  const huge = Array.from({ length: 2000 }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 0x5000))).join('');
  const q = new URLSearchParams({ CallSid: huge, CallFrom: '09800000001', DialWhomNumber: '09811100001', Status: 'busy' });
  for (const url of ['/exotel/dial-whom/agents', '/exotel/connect/agents', '/exotel/passthru/main', '/exotel/dial-events']) {
    const res = await ctx.app.inject({ method: 'GET', url: `${url}?${q}` });
    t.equal(res.statusCode, 400, url);
    t.match(res.json().message, 'CallSid has 2000 characters; at most 200', url);
  }
  const cdrs = await ctx.db.pool.query(`SELECT endpoint, outcome, reason FROM cdrs WHERE params ->> 'CallSid' = $1 ORDER BY id`, [huge]);
  t.same(
    cdrs.rows.map((r) => `${r.endpoint} ${r.outcome}`),
    ['dial-whom rejected', 'connect rejected', 'passthru rejected', 'dial-events rejected'],
    'one CDR each',
  );
  t.notOk(
    cdrs.rows.some((r) => /dial state|index/.test(r.reason)),
    'no reason blames the dial state',
  );
  const exactly = 'C'.repeat(200);
  t.equal((await dialWhom(ctx, `CallSid=${exactly}`)).body, `${A},${B},${C}`, '200 characters are still a call');
});

t.test("a re-fetch without digits (Exotel sends them only with Dial Whom's first request) is decided by the digits of the call's first request", async (t) => {
  const ctx = await setup(t);
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: {
      slug: 'menu',
      name: 'Press 1 for sales',
      type: 'dial',
      rules: [{ name: 'sales', when: { digits: { equals: '1' } }, then: { dialGroup: 'sales' } }],
      otherwise: { numbers: ['+919800000077'] },
      onError: { numbers: ['+919800000099'] },
    },
  });
  t.equal(flow.statusCode, 201, 'flow created');
  await until(() => ctx.app.rules.current?.flows.has('menu') === true);
  const ask = async (query: string) => (await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/menu?${query}` })).body;

  t.equal(await ask('CallSid=dg1&CallFrom=09800000001&digits=%221%22'), `${A},${B},${C}`, 'pressed 1: sales');
  // Exotel's re-fetch after A did not answer: DialCallStatus and DialWhomNumber, no digits.
  t.equal(await ask('CallSid=dg1&CallFrom=09800000001&DialCallStatus=no-answer&DialWhomNumber=09811100001'), `${B},${C}`, 'still sales, minus A');
  t.equal(await ask('CallSid=dg1&CallFrom=09800000001&DialCallStatus=busy&DialWhomNumber=09811100002'), C);
  const cdrs = await ctx.db.prisma.cdr.findMany({ where: { callSid: 'dg1' }, orderBy: { id: 'asc' } });
  t.same(
    cdrs.map((c) => [c.digits, c.matchedRule]),
    [
      ['1', 'sales'],
      [null, 'sales'],
      [null, 'sales'],
    ],
    'the CDRs keep the digits as sent; the rule held on every request',
  );
  t.match(cdrs[1]!.decision, { trace: [{ conditions: [{ condition: 'digits', held: true, why: /first request/ }] }] });

  t.equal(await ask('CallSid=dg2&CallFrom=09800000001&digits=%222%22'), '+919800000077', 'pressed 2: otherwise');
  t.equal(await ask('CallSid=dg2&CallFrom=09800000001&DialCallStatus=no-answer&DialWhomNumber=09800000077'), '', 'nobody left, not sales');
});

t.test(
  'admin requests holding every database connection they can get leave the callbacks theirs: Dial Whom still answers the group, and its CDR is committed',
  async (t) => {
    // Admin requests and callbacks shared one pool of 10 connections. Ten admin requests that each
    // held one for long (slow CDR lists, stalled CSV downloads, VIP imports of one list taking turns
    // on its lock) left a dial callback waiting for a connection until its budget ran out: the
    // flow's onError answered instead of the group, its CDR spooled. Here the admin requests wait on
    // a lock held by another session, for as long as this test likes.
    const ctx = await setup(t);
    const locker = new pg.Client({ connectionString: ctx.db.url });
    await locker.connect();
    t.teardown(() => locker.end());
    // Its own session: one in a transaction reads pg_stat_activity as of its first read.
    const observer = new pg.Client({ connectionString: ctx.db.url });
    await observer.connect();
    t.teardown(() => observer.end());
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE vip_lists IN ACCESS EXCLUSIVE MODE');
    const requests = 10;
    const pending = Array.from({ length: requests }, () => ctx.admin({ method: 'GET', url: '/admin/vip-lists' }));
    // Every admin request holds a connection (waiting on the lock) or waits for one.
    const stuck = async () => {
      const { rows } = await observer.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%vip_lists%'`,
      );
      return rows[0]!.n + ctx.db.pool.waitingCount + ctx.db.adminPool.waitingCount;
    };
    for (let i = 0; i < 500 && (await stuck()) < requests; i++) await new Promise((r) => setTimeout(r, 10));
    t.equal(await stuck(), requests, 'the admin requests are all stuck');

    const r = await dialWhom(ctx, 'CallSid=during-admin&CallFrom=09800000001');
    t.equal(r.status, 200);
    t.equal(r.body, `${A},${B},${C}`, "the group is answered, not the flow's onError");
    t.equal(ctx.app.cdrWriter.spoolDepth, 0, 'its CDR was committed, not spooled');

    await locker.query('COMMIT');
    const answers = await Promise.all(pending);
    t.same(
      answers.map((a) => a.statusCode),
      Array(requests).fill(200),
      'the admin requests are answered once the lock is gone',
    );
  },
);

t.test(
  'dial callbacks that gave up waiting behind a stuck dial-state statement are not sent to Postgres later: no turn of the rotation for calls answered onError',
  async (t) => {
    // The dial state is asked one statement at a time; what arrives meanwhile queues in memory. When
    // one statement is held (a lock, a stalled Postgres), every dial callback after it answered the
    // flow's onError at its budget, but its request stayed queued, for as long as the hold lasted,
    // and was then sent anyway: each took a turn of the round robin (and wrote the call's dial state)
    // for a call that was never offered the group.
    const ctx = await setup(t, { strategy: 'round_robin' }, { DECISION_BUDGET_MS: '300' });
    const before = await rrPosition(ctx);
    const holder = new pg.Client({ connectionString: ctx.db.url });
    await holder.connect();
    t.teardown(() => holder.end());
    // the call's advisory lock, as dial_offer() takes it
    await holder.query('SELECT pg_advisory_lock(1684627820, hashtext($1))', ['held']);
    const held = await dialWhom(ctx, 'CallSid=held');
    t.equal(held.body, '+919800000099', 'the held call: onError');
    const queued = [];
    for (let i = 0; i < 5; i++) queued.push(await dialWhom(ctx, `CallSid=queued${i}`));
    t.same(
      queued.map((r) => r.body),
      Array(5).fill('+919800000099'),
      'the calls queued behind it: onError, each at its budget',
    );
    await holder.query('SELECT pg_advisory_unlock(1684627820, hashtext($1))', ['held']);
    // The next call is answered by the group once the held statement is done.
    let next = await dialWhom(ctx, 'CallSid=after');
    for (let i = 0; i < 50 && next.body === '+919800000099'; i++) next = await dialWhom(ctx, `CallSid=after${i}`);
    t.not(next.body, '+919800000099', 'the group answers again');
    const { rows } = await ctx.db.pool.query<{ call_sid: string }>("SELECT call_sid FROM dial_calls WHERE call_sid LIKE 'queued%'");
    t.same(rows, [], 'no dial state for the calls that gave up before their request was sent');
    t.equal(await rrPosition(ctx), before + 2, 'the rotation moved for the held call and the next, not for the abandoned ones');
  },
);

t.test("the Dial Whom URL given to Connect's dynamic URL field: the log names every flow so misconfigured, however many", async (t) => {
  // The warning stopped after 20 flows: the rest were never named in the log (only in their CDRs).
  const log = capturedLog('info');
  const ctx = await buildTestApp(t, {}, { logger: log.logger });
  const slugs = Array.from({ length: 25 }, (_, i) => `dial-${i + 1}`);
  for (const slug of slugs) {
    const created = await ctx.admin({
      method: 'POST',
      url: '/admin/flows',
      payload: { slug, name: slug, type: 'dial', rules: [], otherwise: { numbers: ['+919811100001'] }, onError: { numbers: ['+919811100001'] } },
    });
    t.equal(created.statusCode, 201, `${slug} created`);
  }
  for (let i = 0; i < 300 && ctx.app.rules.current?.flows.has('dial-25') !== true; i++) await new Promise((r) => setTimeout(r, 10));
  for (const slug of slugs) {
    for (const n of [1, 2]) {
      const res = await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/${slug}?CallSid=wf-${slug}-${n}`, headers: { 'exotel-version': '1.0' } });
      t.equal(res.statusCode, 200);
    }
  }
  const named = log.lines
    .filter((l) => l.includes("Connect's dynamic URL"))
    .map((l) => (JSON.parse(l) as { flow: string }).flow)
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  t.same(named, slugs, 'each of the 25 flows once');
});

t.test("the Dial Whom URL given to Connect's dynamic URL field (Exotel-Version sent): the CDR says which URL that field needs", async (t) => {
  // Exotel reads that field's answer as Connect JSON: it cannot act on a list of numbers, and the CDR
  // said only "answered". Only Connect's dynamic URL sends Exotel-Version.
  const ctx = await setup(t);
  const res = await ctx.app.inject({ method: 'GET', url: '/exotel/dial-whom/agents?CallSid=wrong-field', headers: { 'exotel-version': '1.0' } });
  t.equal(res.statusCode, 200);
  t.equal(res.body, `${A},${B},${C}`, 'answered as before');
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'wrong-field' } });
  t.match((cdr.decision as { warnings?: string[] }).warnings, [/Connect's dynamic URL.*\/exotel\/connect\/agents/]);
  await dialWhom(ctx, 'CallSid=right-field');
  const right = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'right-field' } });
  t.notOk((right.decision as { warnings?: string[] }).warnings, 'Dial Whom as Exotel calls it: no warning');
});

t.test(
  "a database migrated by a newer version that calls the dial functions otherwise (a rolling upgrade): Dial Whom answers onError and the CDR says to restart this instance on that version, as does a dial event's",
  async (t) => {
    const ctx = await setup(t);
    // What such a migration does to this version's calls: an attribute more in a type it sends by position, a function it calls by another name.
    await ctx.db.pool.query('ALTER TYPE dial_extra ADD ATTRIBUTE from_a_newer_version BOOLEAN');
    const r = await dialWhom(ctx, 'CallSid=nv1&CallFrom=09800000001');
    t.same([r.status, r.body], [200, '+919800000099'], "the flow's onError numbers");
    const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'nv1' } });
    t.match(cdr, { outcome: 'on-error' });
    t.match(
      cdr.reason,
      /^dial state unavailable: the dial functions in Postgres are not those this version of exoroute calls \(cannot cast type record to dial_extra\): another version migrated the database; restart this instance on that version/,
    );

    await ctx.db.pool.query('ALTER FUNCTION dial_agent_event RENAME TO dial_agent_event_of_a_newer_version');
    const ev = await ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallSid=nv1&DialWhomNumber=${encodeURIComponent(A)}&Status=busy&flow=agents` });
    t.equal(ev.statusCode, 200, 'the dial event is answered');
    const evCdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'nv1', endpoint: 'dial-events' } });
    t.match(
      evCdr.reason,
      /^agent state not updated: the dial functions in Postgres are not those this version of exoroute calls .*restart this instance on that version/,
    );
  },
);
