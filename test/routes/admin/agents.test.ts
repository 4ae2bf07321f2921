import t from 'tap';
import type { Test } from 'tap';
import { DateTime } from 'luxon';
import { buildSecondInstance, buildTestApp, type TestApp, zoneAtNoon } from '../../helper.js';

const A = '+919811100001';
const B = '+919811100002';
const C = '+919811100003';
const D = '+919811100004';
const NOT_AN_AGENT = '+919822200000';

async function until(ok: () => boolean, what = 'snapshot did not catch up') {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error(what);
}

/** Groups sales (A, B, C) and support (C, and D on a shift that is never open). */
async function setup(t: Test): Promise<TestApp> {
  const ctx = await buildTestApp(t);
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'never', name: 'Never', weekly: [] } })).statusCode, 201);
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
            { number: '09811100001', name: 'Asha', priority: 1 },
            { number: '09811100002', priority: 2 },
            { number: '09811100003', priority: 3 },
          ],
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
            { number: '09811100003', name: 'Chitra' },
            { number: '09811100004', schedule: 'never' },
          ],
        },
      })
    ).statusCode,
    201,
  );
  await until(() => ctx.app.rules.current?.dialGroups.size === 2 && ctx.app.rules.current.schedules.has('never'));
  return ctx;
}

const agents = async (ctx: TestApp) => {
  const res = await ctx.admin({ method: 'GET', url: '/admin/agents' });
  t.equal(res.statusCode, 200);
  return new Map((res.json() as Array<{ number: string }>).map((a) => [a.number, a as Record<string, unknown>]));
};

t.test("GET /admin/agents: every member once, with its groups, its state now and today's offers", async (t) => {
  const ctx = await setup(t);
  const now = Date.now();
  const ago = (s: number) => new Date(now - s * 1000);
  const ahead = (s: number) => new Date(now + s * 1000);
  await ctx.db.pool.query(
    `INSERT INTO agent_states (number, busy, busy_since, busy_call_sid, wrap_up_until, paused_until, paused_reason, updated_at)
     VALUES ($1, true, $3, 'call-7', NULL, NULL, NULL, now()), ($2, false, NULL, NULL, $4, NULL, NULL, now())`,
    [A, B, ago(30), ahead(20)],
  );
  // B's offers before today: a miss, an answer, then two misses in a row
  await ctx.db.pool.query(
    `INSERT INTO agent_offers (call_sid, number, group_slug, offered_at, outcome, ended_at)
     SELECT 'b' || i, $1, 'sales', $2::timestamptz - make_interval(days => 5 - i::int), o, $2::timestamptz - make_interval(days => 5 - i::int)
       FROM unnest(ARRAY['no-answer', 'answered', 'busy', 'no-answer']) WITH ORDINALITY AS x(o, i)`,
    [B, ago(0)],
  );
  // A's three offers today in Asia/Kolkata (the default zone of "today") at any hour the test runs:
  // half of today so far (a second ago fell in yesterday when run just after midnight IST, 18:30 UTC).
  const startOfToday = DateTime.fromMillis(now, { zone: 'Asia/Kolkata' }).startOf('day').toMillis();
  await ctx.db.pool.query(
    `INSERT INTO agent_offers (call_sid, number, group_slug, offered_at, outcome, ended_at) VALUES
       ('c1', $1, 'sales', $2, 'answered', $2), ('c2', $1, 'sales', $2, 'no-answer', $2), ('c3', $1, 'sales', $2, NULL, NULL),
       ('old', $1, 'sales', $3, 'busy', $3)`,
    [A, new Date(startOfToday + (now - startOfToday) / 2), new Date(now - 3 * 86_400_000)],
  );
  const list = await agents(ctx);
  t.same([...list.keys()], [A, B, C, D], 'every member number once, in number order');
  t.match(
    list.get(A),
    {
      name: 'Asha',
      state: 'on_call',
      onCall: { callSid: 'call-7', since: ago(30).toISOString() },
      groups: [{ slug: 'sales', active: true, schedule: null, onShift: true }],
      today: { offers: 3, answers: 1, misses: 1 },
    },
    'on a call since when, which call; today only (the offer of three days ago is not counted)',
  );
  t.match(
    list.get(B),
    { state: 'wrapping_up', wrapUpUntil: ahead(20).toISOString(), missedOffers: 2, today: { offers: 0, answers: 0, misses: 0 } },
    'missed offers: those since the last answered one',
  );
  t.match(list.get(C), { name: 'Chitra', state: 'available', groups: [{ slug: 'sales' }, { slug: 'support' }] }, 'C is in two groups');
  t.match(list.get(D), { state: 'off_shift', groups: [{ slug: 'support', schedule: 'never', onShift: false }] });

  await ctx.db.pool.query(`UPDATE agent_states SET wrap_up_until = NULL, paused_until = $2, paused_reason = '3 missed offers' WHERE number = $1`, [
    B,
    ahead(60),
  ]);
  t.match((await agents(ctx)).get(B), { state: 'paused', paused: { until: ahead(60).toISOString(), reason: '3 missed offers' } });
  t.equal((await ctx.admin({ method: 'PATCH', url: '/admin/dial-groups/support/members/09811100004', payload: { active: false } })).statusCode, 200);
  t.match((await agents(ctx)).get(D), { state: 'inactive' }, 'switched off in its only group');
  await ctx.db.pool.query(`UPDATE agent_states SET busy_since = $2 WHERE number = $1`, [A, new Date(now - 2 * 3_600_000)]);
  t.match((await agents(ctx)).get(A), { state: 'available', onCall: null }, 'busy longer than AGENT_BUSY_TTL_SECONDS counts as free');
});

t.test('GET /admin/agents: today is the day since local midnight in Asia/Kolkata (or ?timezone=), and the answer says which: today.since', async (t) => {
  const ctx = await setup(t);
  const midnight = DateTime.now().setZone('Asia/Kolkata').startOf('day');
  // At 09:00 IST (03:30 UTC) as at any hour: an offer a second before midnight IST is yesterday's, one at midnight today's.
  await ctx.db.pool.query(
    `INSERT INTO agent_offers (call_sid, number, group_slug, offered_at, outcome, ended_at) VALUES
       ('late', $1, 'sales', $2, 'answered', $2), ('early', $1, 'sales', $3, 'no-answer', $3)`,
    [A, midnight.minus({ seconds: 1 }).toJSDate(), midnight.toJSDate()],
  );
  const india = (await agents(ctx)).get(A);
  t.match(india, { today: { since: midnight.toISO({ suppressMilliseconds: true }), offers: 1, answers: 0, misses: 1 } }, 'since 00:00+05:30 today');
  t.match(india, { today: { since: /T00:00:00\+05:30$/ } });
  const zone = zoneAtNoon();
  const there = (await ctx.admin({ method: 'GET', url: `/admin/agents/${encodeURIComponent(A)}?timezone=${encodeURIComponent(zone)}` })).json();
  t.equal(there.today.since, DateTime.now().setZone(zone).startOf('day').toISO({ suppressMilliseconds: true }), `since midnight in ${zone}, with its offset`);
});

t.test('GET /admin/agents?state=&group=: a supervisor lists only the agents in a state, or the members of a group; an unknown group is 404', async (t) => {
  const ctx = await setup(t);
  await ctx.db.pool.query(`INSERT INTO agent_states (number, busy, busy_since, busy_call_sid, updated_at) VALUES ($1, true, now(), 'call-1', now())`, [A]);
  const list = async (query: string) => {
    const res = await ctx.admin({ method: 'GET', url: `/admin/agents?${query}` });
    t.equal(res.statusCode, 200, query);
    return (res.json() as Array<{ number: string; groups: Array<{ slug: string }> }>).map((a) => a.number);
  };
  t.same(await list('state=off_shift'), [D], 'D: its only shift never opens');
  t.same(await list('state=on_call'), [A]);
  t.same(await list('group=support'), [C, D], 'the members of support');
  t.same(await list('group=sales&state=available'), [B, C], 'both filters hold');
  t.same(await list('group=support&state=on_call'), [], 'nobody of support is on a call');
  t.match(
    (await ctx.admin({ method: 'GET', url: '/admin/agents?group=support' })).json()[0],
    { number: C, groups: [{ slug: 'sales' }, { slug: 'support' }] },
    'each with all its groups',
  );
  const unknown = await ctx.admin({ method: 'GET', url: '/admin/agents?group=suport' });
  t.equal(unknown.statusCode, 404, 'a misspelt group is no empty list');
  t.match(unknown.json().message, "dial-group 'suport' does not exist");
  const bad = await ctx.admin({ method: 'GET', url: '/admin/agents?state=busy' });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /^querystring\/state: /);
});

t.test('GET /admin/agents/:number: one agent with its recent offers; 404 for a number in no group, 400 for no number', async (t) => {
  const ctx = await setup(t);
  // Both offers today in Asia/Kolkata, the default zone of "today", at any hour the test runs (fixed
  // minutes ago fell in yesterday just after midnight IST): a quarter and half of today so far.
  await ctx.db.pool.query(
    `WITH today AS (SELECT date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata' AS start)
     INSERT INTO agent_offers (call_sid, number, group_slug, offered_at, outcome, ended_at)
     SELECT 'c1', $1, 'sales', start + (now() - start) / 4, 'answered', now() FROM today
     UNION ALL SELECT 'c2', $1, 'support', start + (now() - start) / 2, NULL, NULL FROM today`,
    [C],
  );
  const res = await ctx.admin({ method: 'GET', url: '/admin/agents/09811100003' });
  t.equal(res.statusCode, 200);
  t.match(
    res.json(),
    {
      number: C,
      state: 'available',
      today: { offers: 2, answers: 1 },
      recentOffers: [
        { callSid: 'c2', group: 'support', outcome: null, endedAt: null },
        { callSid: 'c1', group: 'sales', outcome: 'answered' },
      ],
    },
    'newest first',
  );
  const unknown = await ctx.admin({ method: 'GET', url: `/admin/agents/${encodeURIComponent(NOT_AN_AGENT)}` });
  t.equal(unknown.statusCode, 404);
  t.match(unknown.json().message, `${NOT_AN_AGENT} is no member of any dial group`);
  const bad = await ctx.admin({ method: 'GET', url: '/admin/agents/abc' });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /^params\/number: 'abc' is not a valid phone number/);
});

t.test('PUT availability: away with a reason and until, audited; back to available clears a missed-offer pause', async (t) => {
  const ctx = await setup(t);
  const until = new Date(Date.now() + 3_600_000).toISOString();
  const res = await ctx.admin({ method: 'PUT', url: '/admin/agents/09811100002/availability', payload: { status: 'away', reason: 'lunch', until } });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { status: 'away', reason: 'lunch', until, setBy: /^api-key:/ });
  t.match((await agents(ctx)).get(B), { state: 'away', away: { reason: 'lunch', until }, availability: { status: 'away' } });
  await until_(ctx, (s) => s.availability.get(B)?.status === 'away');

  await ctx.db.pool.query(
    `INSERT INTO agent_states (number, paused_until, paused_reason, updated_at)
    VALUES ($1, now() + interval '5 minutes', '3 missed offers', now())`,
    [B],
  );
  await ctx.db.pool.query(
    `INSERT INTO agent_offers (call_sid, number, group_slug, offered_at, outcome, ended_at)
     SELECT 'm' || i, $1, 'sales', now() - make_interval(mins => 10 - i), 'no-answer', now() - make_interval(mins => 10 - i) FROM generate_series(1, 2) AS i`,
    [B],
  );
  t.match((await agents(ctx)).get(B), { state: 'away', missedOffers: 2 });
  const back = await ctx.admin({ method: 'PUT', url: '/admin/agents/%2B919811100002/availability', payload: { status: 'available' } });
  t.equal(back.statusCode, 200);
  t.match(back.json(), { status: 'available', reason: null, until: null });
  const { rows } = await ctx.db.pool.query('SELECT paused_until FROM agent_states WHERE number = $1', [B]);
  t.same(rows, [{ paused_until: null }], 'set available: the pause is gone');
  t.match((await agents(ctx)).get(B), { state: 'available', away: null, paused: null, missedOffers: 0 }, 'and the count starts again');
  // an agent set available who never had a state row gets one, so that earlier misses no longer count
  await ctx.db.pool.query(
    `INSERT INTO agent_offers (call_sid, number, group_slug, offered_at, outcome, ended_at) VALUES ('c-miss', $1, 'sales', now() - interval '1 minute', 'busy', now() - interval '1 minute')`,
    [C],
  );
  t.match((await agents(ctx)).get(C), { missedOffers: 1 });
  t.equal((await ctx.admin({ method: 'PUT', url: `/admin/agents/${encodeURIComponent(C)}/availability`, payload: { status: 'available' } })).statusCode, 200);
  t.match((await agents(ctx)).get(C), { missedOffers: 0 });

  const audit = await ctx.admin({ method: 'GET', url: `/admin/audit?entity=agent&entityId=${encodeURIComponent(B)}` });
  t.match(
    audit.json().items,
    [
      { action: 'set-availability', apiKeyId: /./, before: { status: 'away', reason: 'lunch' }, after: { status: 'available', setBy: /^api-key:/ } },
      { action: 'set-availability', before: null, after: { status: 'away', reason: 'lunch' } },
    ],
    'who changed what, newest first',
  );
});

t.test('PUT available: the audit entry says what it ended (a pause, a wrap-up, an on-call state) and who ended it', async (t) => {
  const ctx = await setup(t);
  const now = Date.now();
  const pausedUntil = new Date(now + 300_000);
  const wrapUpUntil = new Date(now + 20_000);
  const busySince = new Date(now - 90_000);
  await ctx.db.pool.query(
    `INSERT INTO agent_states (number, busy, busy_since, busy_call_sid, wrap_up_until, paused_until, paused_reason, updated_at)
     VALUES ($1, true, $2, 'call-lost-free', $3, $4, '3 missed offers', now()),
            ($5, false, NULL, NULL, now() - interval '1 minute', now() - interval '1 minute', 'an old pause', now())`,
    [A, busySince, wrapUpUntil, pausedUntil, B],
  );
  const put = (number: string, payload: unknown) => ctx.admin({ method: 'PUT', url: `/admin/agents/${encodeURIComponent(number)}/availability`, payload });
  const back = await put(A, { status: 'available' });
  t.equal(back.statusCode, 200, back.body);
  t.same(Object.keys(back.json()).sort(), ['reason', 'setAt', 'setBy', 'status', 'until'], 'the answer is the availability, as before');
  const trail = async (number: string) =>
    (await ctx.admin({ method: 'GET', url: `/admin/audit?entity=agent&entityId=${encodeURIComponent(number)}` })).json().items as Array<{
      apiKeyId: string | null;
      before: unknown;
      after: { status: string; setBy: string; ended?: unknown };
    }>;
  const [entry] = await trail(A);
  t.match(entry, { apiKeyId: /./, before: null, after: { status: 'available', setBy: /^api-key:/ } }, 'who: the key, as before');
  const ended = entry!.after.ended as { paused: { until: string; reason: string }; wrapUpUntil: string; onCall: { since: string; callSid: string } };
  t.ok(ended, 'the entry says what it ended');
  t.same(
    {
      paused: { until: Date.parse(ended.paused.until), reason: ended.paused.reason },
      wrapUpUntil: Date.parse(ended.wrapUpUntil),
      onCall: { since: Date.parse(ended.onCall.since), callSid: ended.onCall.callSid },
    },
    {
      paused: { until: pausedUntil.getTime(), reason: '3 missed offers' },
      wrapUpUntil: wrapUpUntil.getTime(),
      onCall: { since: busySince.getTime(), callSid: 'call-lost-free' },
    },
    'the pause (until, reason), the wrap-up and the call whose end never came, named as GET /admin/agents names them',
  );
  t.match((await agents(ctx)).get(A), { state: 'available', paused: null, wrapUpUntil: null, onCall: null }, 'and they are over');

  t.equal((await put(B, { status: 'available' })).statusCode, 200);
  t.notOk('ended' in (await trail(B))[0]!.after, 'a pause and a wrap-up already over are not said to be ended');
  t.equal((await put(C, { status: 'away', reason: 'lunch' })).statusCode, 200);
  t.equal((await put(C, { status: 'available' })).statusCode, 200);
  t.same(
    (await trail(C)).map((e) => 'ended' in e.after),
    [false, false],
    'nothing in force, nothing said to be ended; away ends none of them',
  );
});

async function until_(ctx: TestApp, ok: (s: NonNullable<TestApp['app']['rules']['current']>) => boolean) {
  await until(() => ctx.app.rules.current !== null && ok(ctx.app.rules.current));
}

t.test('PUT availability refuses: until in the past or unparseable (400 naming body/until), until when available, a number in no group (404)', async (t) => {
  const ctx = await setup(t);
  const put = (number: string, payload: unknown) => ctx.admin({ method: 'PUT', url: `/admin/agents/${encodeURIComponent(number)}/availability`, payload });
  const past = await put(A, { status: 'away', until: '2020-01-01T00:00:00Z' });
  t.equal(past.statusCode, 400);
  t.match(past.json().message, /^body\/until: 2020-01-01T00:00:00Z is not in the future/);
  const garbage = await put(A, { status: 'away', until: 'tomorrow at noon' });
  t.equal(garbage.statusCode, 400);
  t.match(garbage.json().message, /^body\/until: must be an ISO 8601 instant with its offset/);
  const leap = await put(A, { status: 'away', until: '2030-12-31T23:59:60Z' });
  t.equal(leap.statusCode, 400, 'a leap second, which JavaScript cannot read: 400, not 500');
  t.match(leap.json().message, /^body\/until: must be an ISO 8601 instant with its offset/);
  const both = await put(A, { status: 'available', until: new Date(Date.now() + 60_000).toISOString() });
  t.equal(both.statusCode, 400);
  t.match(both.json().message, /^body\/until: only an away status has an until/);
  const status = await put(A, { status: 'gone' });
  t.equal(status.statusCode, 400);
  t.match(status.json().message, /^body\/status/);
  const nobody = await put(NOT_AN_AGENT, { status: 'away' });
  t.equal(nobody.statusCode, 404);
  t.match(nobody.json().message, /is no member of any dial group/);
  t.equal((await ctx.db.pool.query('SELECT * FROM agent_availability')).rowCount, 0, 'nothing written');
  const viewer = await ctx.admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'v', role: 'viewer' } });
  const denied = await ctx.app.inject({
    method: 'PUT',
    url: `/admin/agents/${encodeURIComponent(A)}/availability`,
    payload: { status: 'away' },
    headers: { authorization: `Bearer ${viewer.json().key}` },
  });
  t.equal(denied.statusCode, 403, 'a viewer key may not change it');
});

t.test('PUT availability takes its body as sent: a number for reason, a list for status, a number for until are a 400 naming the field', async (t) => {
  const ctx = await setup(t);
  const put = (payload: unknown) => ctx.admin({ method: 'PUT', url: `/admin/agents/${encodeURIComponent(A)}/availability`, payload });
  const cases: Array<[unknown, RegExp]> = [
    [{ status: 'away', reason: 5 }, /^body\/reason: must be string/],
    [{ status: ['away'] }, /^body\/status: must be string/],
    [{ status: 'away', until: 0 }, /^body\/until: /],
    [{ status: 'away', until: '' }, /^body\/until: must be an ISO 8601 instant with its offset/],
    [{ status: 'away', reason: ' \t ' }, /^body\/reason: must be some text, not only spaces/],
  ];
  for (const [payload, message] of cases) {
    const res = await put(payload);
    t.equal(res.statusCode, 400, JSON.stringify(payload));
    t.match(res.json().message, message, JSON.stringify(payload));
  }
  t.equal((await ctx.db.pool.query('SELECT * FROM agent_availability')).rowCount, 0, 'nothing written: the agent is not away');
});

t.test(
  'PUT availability with until null is away until set back, as an override with until null is until deleted: the availability a GET shows can be sent back',
  async (t) => {
    const ctx = await setup(t);
    const put = (payload: unknown) => ctx.admin({ method: 'PUT', url: `/admin/agents/${encodeURIComponent(A)}/availability`, payload });
    const away = await put({ status: 'away', reason: 'lunch', until: null });
    t.equal(away.statusCode, 200, away.body);
    t.match(away.json(), { status: 'away', reason: 'lunch', until: null });
    const shown = (await ctx.admin({ method: 'GET', url: `/admin/agents/${encodeURIComponent(A)}` })).json();
    t.match(shown, { state: 'away', availability: { until: null } });
    const back = await put({ status: 'available', until: null });
    t.equal(back.statusCode, 200, 'available with until null: no until, as without one');
    t.match(back.json(), { status: 'available', until: null });
    const override = await ctx.admin({ method: 'PUT', url: '/admin/schedules/never/override', payload: { open: false, reason: 'flood', until: null } });
    t.equal(override.statusCode, 200, 'the same null the override takes');
  },
);

t.test("an away agent's until passes: available again without anyone setting it", async (t) => {
  const ctx = await setup(t);
  t.equal(
    (
      await ctx.admin({
        method: 'PUT',
        url: `/admin/agents/${encodeURIComponent(A)}/availability`,
        payload: { status: 'away', until: new Date(Date.now() + 3_600_000).toISOString() },
      })
    ).statusCode,
    200,
  );
  t.equal((await agents(ctx)).get(A)!.state, 'away');
  await ctx.db.pool.query(`UPDATE agent_availability SET until = now() - interval '1 second' WHERE number = $1`, [A]); // an hour later
  t.match((await agents(ctx)).get(A), { state: 'available', away: null, availability: { status: 'away' } }, 'the setting stays, but it is over');
});

t.test("two instances: an agent sent away through one is in the other's snapshot at once (NOTIFY), which reloads only availability", async (t) => {
  const one = await setup(t);
  const two = await buildSecondInstance(t, one);
  await until_(two, (s) => s.dialGroups.size === 2);
  const before = two.app.rules.current!;
  t.equal(
    (await one.admin({ method: 'PUT', url: `/admin/agents/${encodeURIComponent(C)}/availability`, payload: { status: 'away', reason: 'training' } }))
      .statusCode,
    200,
  );
  // Announced by NOTIFY: without it the other instance would never reload (nothing polls).
  await until_(two, (s) => s.availability.get(C)?.status === 'away');
  const after = two.app.rules.current!;
  t.equal(after.vipLists, before.vipLists, 'VIP lists kept, not reloaded');
  t.equal(after.flows, before.flows, 'flows kept');
  t.ok(after.version > before.version, 'a new snapshot version');
  t.match((await two.admin({ method: 'GET', url: `/admin/agents/${encodeURIComponent(C)}` })).json(), { state: 'away', away: { reason: 'training' } });
});
