import t from 'tap';
import type { Test } from 'tap';
import { buildSecondInstance, buildTestApp, type TestApp } from '../../helper.js';

async function until(ok: () => boolean) {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('snapshot did not catch up');
}

const ALL_WEEK = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((day) => ({ day, open: '00:00', close: '00:00' }));

/** A schedule open around the clock, and a passthru flow: closed → B, otherwise A. */
async function setup(t: Test): Promise<TestApp> {
  const ctx = await buildTestApp(t);
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'support', name: 'Support', weekly: ALL_WEEK } })).statusCode, 201);
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/flows',
        payload: {
          slug: 'queue',
          name: 'Queue',
          type: 'passthru',
          rules: [{ name: 'closed', when: { closedBy: 'support' }, then: { branch: 'B' } }],
          otherwise: { branch: 'A' },
          onError: { branch: 'A' },
        },
      })
    ).statusCode,
    201,
  );
  await until(() => ctx.app.rules.current?.flows.has('queue') === true);
  return ctx;
}

const override = (ctx: TestApp, payload: unknown) => ctx.admin({ method: 'PUT', url: '/admin/schedules/support/override', payload });
const passthru = (ctx: TestApp, sid: string) => ctx.app.inject({ method: 'GET', url: `/exotel/passthru/queue?CallSid=${sid}&CallFrom=09800000001` });

t.test('an emergency close: status, the passthru (branch B) and its trace say "override: … until …"; DELETE reopens; audited', async (t) => {
  const ctx = await setup(t);
  const end = new Date(Date.now() + 2 * 3_600_000);
  const set = await override(ctx, { open: false, reason: 'flooding', until: end.toISOString() });
  t.equal(set.statusCode, 200);
  t.match(set.json(), { slug: 'support', override: { open: false, reason: 'flooding', until: end.toISOString() } });
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).json(), { override: { reason: 'flooding' } }, 'shown with the schedule');

  const untilText = /override: flooding until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?\+05:30/;
  const status = (await ctx.admin({ method: 'GET', url: '/admin/schedules/support/status' })).json();
  t.match(status, { open: false, reason: untilText }, 'status says why');
  t.equal(Date.parse(status.nextChangeAt), end.getTime(), 'and that it opens again at until');

  await until(() => ctx.app.rules.current?.schedules.get('support')?.override?.reason === 'flooding');
  const res = await passthru(ctx, 'e1');
  t.equal(res.statusCode, 302, 'branch B');
  const cdr = await ctx.db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'e1' } });
  t.match(
    cdr,
    { matchedRule: 'closed', decision: { trace: [{ conditions: [{ condition: 'closedBy support', held: true, why: untilText }] }] } },
    "the CDR's trace names the override, its reason and its end",
  );
  const sim = await ctx.admin({ method: 'POST', url: '/admin/flows/queue/simulate', payload: { endpoint: 'passthru', params: { CallSid: 's' } } });
  t.match(sim.json(), { answer: { statusCode: 302 }, trace: [{ conditions: [{ why: untilText }] }] }, 'simulate too');

  t.equal((await ctx.admin({ method: 'DELETE', url: '/admin/schedules/support/override' })).statusCode, 204);
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support/status' })).json(), { open: true, reason: /^weekly window/ });
  await until(() => ctx.app.rules.current?.schedules.get('support')?.override === null);
  t.equal((await passthru(ctx, 'e2')).statusCode, 200, 'branch A again');
  const again = await ctx.admin({ method: 'DELETE', url: '/admin/schedules/support/override' });
  t.equal(again.statusCode, 404, 'no override left to delete');
  t.match(again.json().message, "override of schedule 'support' does not exist");

  const audit = (await ctx.admin({ method: 'GET', url: '/admin/audit?entity=schedule&entityId=support' })).json().items;
  t.match(audit.slice(0, 2), [
    { action: 'delete-override', before: { open: false, reason: 'flooding' }, after: null },
    { action: 'set-override', before: null, after: { open: false, reason: 'flooding' } },
  ]);
});

t.test('an override whose until has passed is over: the schedule shows none, status follows the windows, DELETE is 404', async (t) => {
  const ctx = await setup(t);
  t.equal((await override(ctx, { open: false, reason: 'storm', until: new Date(Date.now() + 3_600_000).toISOString() })).statusCode, 200);
  await ctx.db.pool.query(`UPDATE schedules SET override_until = now() - interval '1 minute' WHERE slug = 'support'`); // an hour later
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).json(), { override: null }, 'shown as none');
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules' })).json(), [{ slug: 'support', override: null }]);
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support/status' })).json(), { open: true, reason: /^weekly window/ });
  t.equal((await ctx.admin({ method: 'DELETE', url: '/admin/schedules/support/override' })).statusCode, 404, 'none in force to delete');
  const again = await override(ctx, { open: false, reason: 'storm again' });
  t.match(again.json(), { override: { open: false, reason: 'storm again', until: null } });
  const audit = (await ctx.admin({ method: 'GET', url: '/admin/audit?entity=schedule&entityId=support' })).json().items;
  t.match(audit[0], { action: 'set-override', before: null, after: { reason: 'storm again' } }, 'set anew: nothing was in force before');
});

t.test('status at an instant while an override now over was in force says what the callbacks and simulate said then: the override', async (t) => {
  const ctx = await setup(t);
  t.equal((await override(ctx, { open: false, reason: 'storm', until: new Date(Date.now() + 3_600_000).toISOString() })).statusCode, 200);
  // set two hours ago, over a minute ago
  await ctx.db.pool.query(
    `UPDATE schedules SET override_set_at = now() - interval '2 hours', override_until = now() - interval '1 minute' WHERE slug = 'support'`,
  );
  await ctx.app.rules.reload();
  const then = new Date(Date.now() - 30 * 60_000).toISOString(); // when the complained-of call came
  const sim = await ctx.admin({ method: 'POST', url: '/admin/flows/queue/simulate', payload: { endpoint: 'passthru', params: { CallSid: 's' }, at: then } });
  t.match(sim.json(), { answer: { statusCode: 302 }, trace: [{ conditions: [{ why: /: override: storm until / }] }] }, 'simulate: closed by the override');
  const status = await ctx.admin({ method: 'GET', url: `/admin/schedules/support/status?at=${encodeURIComponent(then)}` });
  t.equal(status.statusCode, 200);
  t.match(status.json(), { open: false, reason: /^override: storm until / }, 'status agrees');
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support/status' })).json(), { open: true, reason: /^weekly window/ }, 'now: over');
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).json(), { override: null }, 'and shown as none');
});

t.test('override input: until in the past or unparseable is a 400 naming body/until; reason required; unknown schedule 404', async (t) => {
  const ctx = await setup(t);
  const past = await override(ctx, { open: false, reason: 'x', until: '2020-01-01T00:00:00Z' });
  t.equal(past.statusCode, 400);
  t.match(past.json().message, /^body\/until: 2020-01-01T00:00:00Z is not in the future/);
  const garbage = await override(ctx, { open: false, reason: 'x', until: 'next week' });
  t.equal(garbage.statusCode, 400);
  t.match(garbage.json().message, /^body\/until: must be an ISO 8601 instant with its offset/);
  const leap = await override(ctx, { open: false, reason: 'x', until: '2030-12-31T23:59:60Z' });
  t.equal(leap.statusCode, 400, 'a leap second, which JavaScript cannot read: 400, not 500');
  t.match(leap.json().message, /^body\/until: must be an ISO 8601 instant with its offset/);
  const noReason = await override(ctx, { open: false });
  t.equal(noReason.statusCode, 400);
  t.match(noReason.json().message, /^body\/reason: is required/);
  const blank = await override(ctx, { open: false, reason: '   ' });
  t.equal(blank.statusCode, 400, 'a reason of spaces says nothing in status and traces');
  t.match(blank.json().message, /^body\/reason: must be some text, not only spaces/);
  const missing = await ctx.admin({ method: 'PUT', url: '/admin/schedules/nope/override', payload: { open: false, reason: 'x' } });
  t.equal(missing.statusCode, 404);
  const indefinite = await override(ctx, { open: false, reason: 'outage' });
  t.equal(indefinite.statusCode, 200);
  t.match(indefinite.json(), { override: { until: null } }, 'without until: until deleted');
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support/status' })).json(), {
    open: false,
    reason: 'override: outage until it is deleted',
    nextChangeAt: null,
  });
  t.equal(
    (await ctx.admin({ method: 'PATCH', url: '/admin/schedules/support', payload: { name: 'Support desk' } })).json().override?.reason,
    'outage',
    'editing the schedule keeps its override',
  );
});

t.test(
  'an until past the year 9999 (UTC) is a 400 naming body/until: Prisma cannot read it back, so the API showed no override while callbacks obeyed one',
  async (t) => {
    const ctx = await setup(t);
    // 9999-12-31T23:59:59-05:00 is 10000-01-01T04:59:59Z: stored, then read back by Prisma as Invalid Date.
    const res = await override(ctx, { open: false, reason: 'closed for good', until: '9999-12-31T23:59:59-05:00' });
    t.equal(res.statusCode, 400);
    t.match(res.json().message, /^body\/until: must be an ISO 8601 instant .* in the years 0001 to 9999 \(UTC\)$/);
    t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).json(), { override: null }, 'no override was set');
    await ctx.app.rules.reload();
    t.equal((await passthru(ctx, 'y1')).statusCode, 200, 'the callbacks do not follow one either');
    const latest = await override(ctx, { open: false, reason: 'closed for good', until: '9999-12-31T23:59:59Z' });
    t.equal(latest.statusCode, 200, 'the last instant of 9999 in UTC is taken');
    t.match(latest.json(), { override: { open: false, until: '9999-12-31T23:59:59.000Z' } });
    t.equal((await ctx.admin({ method: 'DELETE', url: '/admin/schedules/support/override' })).statusCode, 204, 'and can be deleted');
  },
);

t.test('override input is taken as sent: null or "false" for open and "" for until are a 400 naming the field, not converted', async (t) => {
  const ctx = await setup(t);
  const cases: Array<[unknown, RegExp]> = [
    [{ open: null, reason: 'x' }, /^body\/open: must be boolean/],
    [{ open: 'false', reason: 'x' }, /^body\/open: must be boolean/],
    [{ open: 0, reason: 'x' }, /^body\/open: must be boolean/],
    [{ open: false, reason: 'x', until: '' }, /^body\/until: must be an ISO 8601 instant with its offset/],
    [{ open: false, reason: 42 }, /^body\/reason: must be string/],
  ];
  for (const [payload, message] of cases) {
    const res = await override(ctx, payload);
    t.equal(res.statusCode, 400, JSON.stringify(payload));
    t.match(res.json().message, message, JSON.stringify(payload));
  }
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).json(), { override: null }, 'no override was set');
  t.match((await ctx.admin({ method: 'GET', url: '/admin/schedules/support/status' })).json(), { open: true }, 'the queue stays open');
});

t.test('status: an override ending more than a year ahead has nextChangeAt null ("null if never within a year")', async (t) => {
  const ctx = await setup(t);
  const status = async () => (await ctx.admin({ method: 'GET', url: '/admin/schedules/support/status' })).json();
  const far = new Date(Date.now() + 2 * 365 * 86_400_000).toISOString();
  t.equal((await override(ctx, { open: false, reason: 'office moves', until: far })).statusCode, 200);
  t.match(await status(), { open: false, reason: /^override: office moves until /, nextChangeAt: null }, 'until is beyond the horizon');
  const near = new Date(Date.now() + 300 * 86_400_000);
  t.equal((await override(ctx, { open: false, reason: 'office moves', until: near.toISOString() })).statusCode, 200);
  t.equal(Date.parse((await status()).nextChangeAt), near.getTime(), 'within it: until');
});

t.test("two instances: an override set through one is obeyed by the other's callbacks", async (t) => {
  const one = await setup(t);
  const two = await buildSecondInstance(t, one);
  await until(() => two.app.rules.current?.flows.has('queue') === true);
  t.equal((await passthru(two, 'm0')).statusCode, 200);
  t.equal((await override(one, { open: false, reason: 'storm', until: new Date(Date.now() + 3_600_000).toISOString() })).statusCode, 200);
  await until(() => two.app.rules.current?.schedules.get('support')?.override?.reason === 'storm');
  t.equal((await passthru(two, 'm1')).statusCode, 302, 'closed on the other instance too');
});

t.test('extending an override in force keeps it in force since it was first set; turning it over starts anew', async (t) => {
  const ctx = await setup(t);
  t.equal((await override(ctx, { open: false, reason: 'flooding' })).statusCode, 200);
  const first = (await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).json().override.setAt as string;
  await new Promise((r) => setTimeout(r, 50));
  const later = new Date(Date.now() + 3_600_000).toISOString();
  t.equal((await override(ctx, { open: false, reason: 'still flooding', until: later })).statusCode, 200);
  const extended = (await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).json().override;
  t.equal(extended.setAt, first, 'the same override, in force since it was first set');
  const between = new Date(new Date(first).getTime() + 10).toISOString();
  t.match((await ctx.admin({ method: 'GET', url: `/admin/schedules/support/status?at=${encodeURIComponent(between)}` })).json(), {
    open: false,
    reason: /^override: still flooding/,
  });
  await new Promise((r) => setTimeout(r, 20));
  t.equal((await override(ctx, { open: true, reason: 'drill' })).statusCode, 200);
  t.not((await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).json().override.setAt, first, 'open instead of closed: a new override');
});

t.test('two DELETEs of one override at once: one removes it (204), the other is 404; one audit entry', async (t) => {
  const ctx = await buildTestApp(t);
  for (let i = 0; i < 15; i++) {
    const slug = `race-${i}`;
    t.equal((await ctx.admin({ method: 'POST', url: '/admin/schedules', payload: { slug, name: 'Race' } })).statusCode, 201);
    t.equal((await ctx.admin({ method: 'PUT', url: `/admin/schedules/${slug}/override`, payload: { open: true, reason: 'drill' } })).statusCode, 200);
    const answers = await Promise.all([1, 2].map(() => ctx.admin({ method: 'DELETE', url: `/admin/schedules/${slug}/override` })));
    t.same(answers.map((a) => a.statusCode).sort(), [204, 404], `round ${i}`);
    const trail = (await ctx.admin({ method: 'GET', url: `/admin/audit?entity=schedule&entityId=${slug}` })).json().items;
    t.same(
      trail.map((a: { action: string }) => a.action),
      ['delete-override', 'set-override', 'create'],
      `round ${i}: removed once`,
    );
  }
});
