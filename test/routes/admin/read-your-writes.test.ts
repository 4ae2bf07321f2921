/**
 * An admin write answered, the same instance decides from it: a `simulate`, a callback or a view
 * derived from the rules in memory, sent at once after the write's answer (a script, or an operator
 * who creates a group and simulates), sees what was written. No waiting for the NOTIFY's reload
 * here: that is the point. Each check goes back and forth a few times, so that a reload that merely
 * happens to be quick does not pass for one the write waited for.
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildTestApp, capturedLog, type TestApp } from '../../helper.js';

const ALL_WEEK = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((day) => ({ day, open: '00:00', close: '00:00' }));
const A = '+919811100001';
const B = '+919811100002';
const ROUNDS = 4;

let sids = 0;
const passthru = (ctx: TestApp, flow: string, from = '09800000001') =>
  ctx.app.inject({ method: 'GET', url: `/exotel/passthru/${flow}?CallSid=ryw-${++sids}&CallFrom=${encodeURIComponent(from)}` });
const dialWhom = async (ctx: TestApp, flow: string) =>
  (await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/${flow}?CallSid=ryw-${++sids}&CallFrom=09800000001` })).body;
const created = async (t: Test, res: Promise<{ statusCode: number; body: string }>, status = 201) => {
  const r = await res;
  t.equal(r.statusCode, status, r.body.slice(0, 200));
};

t.test('a dial group and a flow on it, written and at once simulated (Connect): answered from the group, not onError', async (t) => {
  const ctx = await buildTestApp(t);
  for (let i = 1; i <= ROUNDS; i++) {
    const group = { slug: `sales-${i}`, name: 'Sales', strategy: 'sequential', members: [{ number: A }] };
    await created(t, ctx.admin({ method: 'POST', url: '/admin/dial-groups', payload: group }));
    const flow = { slug: `agents-${i}`, name: 'Agents', type: 'dial', rules: [], otherwise: { dialGroup: group.slug }, onError: { numbers: [B] } };
    await created(t, ctx.admin({ method: 'POST', url: '/admin/flows', payload: flow }));
    const sim = await ctx.admin({
      method: 'POST',
      url: `/admin/flows/${flow.slug}/simulate`,
      payload: { endpoint: 'connect', params: { CallSid: `sim-${i}` } },
    });
    t.match(sim.json(), { decidedBy: 'otherwise', reason: null, numbers: [A] }, `round ${i}: the new group's member`);
    t.equal((await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/${flow.slug}?CallSid=cb-${i}` })).body, A, `round ${i}: and the callback too`);
  }
});

t.test('a flow created, replaced and deleted: the callback right after each answers by it (or 404 once it is gone)', async (t) => {
  const ctx = await buildTestApp(t);
  const flow = (branch: 'A' | 'B') => ({ name: 'Main', type: 'passthru', rules: [], otherwise: { branch }, onError: { branch } });
  for (let i = 1; i <= ROUNDS; i++) {
    await created(t, ctx.admin({ method: 'POST', url: '/admin/flows', payload: { slug: 'main', ...flow('B') } }));
    t.equal((await passthru(ctx, 'main')).statusCode, 302, `round ${i}: created: B`);
    t.equal((await ctx.admin({ method: 'PUT', url: '/admin/flows/main', payload: flow('A') })).statusCode, 200);
    t.equal((await passthru(ctx, 'main')).statusCode, 200, `round ${i}: replaced: A`);
    t.equal((await ctx.admin({ method: 'DELETE', url: '/admin/flows/main' })).statusCode, 204);
    t.equal((await passthru(ctx, 'main')).statusCode, 404, `round ${i}: deleted: 404`);
  }
});

t.test('a VIP entry added (one, or an array) or deleted: the next callback from that caller follows', async (t) => {
  const ctx = await buildTestApp(t);
  await created(t, ctx.admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } }));
  const vip = {
    slug: 'vip',
    name: 'VIP',
    type: 'passthru',
    rules: [{ when: { callerIn: 'gold' }, then: { branch: 'A' } }],
    otherwise: { branch: 'B' },
    onError: { branch: 'B' },
  };
  await created(t, ctx.admin({ method: 'POST', url: '/admin/flows', payload: vip }));
  for (let i = 1; i <= ROUNDS; i++) {
    const payload = i % 2 ? { number: '09812300001' } : [{ number: '09812300001' }, { number: '09812300002' }];
    await created(t, ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload }), i % 2 ? 201 : 200);
    t.equal((await passthru(ctx, 'vip', '09812300001')).statusCode, 200, `round ${i}: added: a VIP (A)`);
    t.equal((await ctx.admin({ method: 'DELETE', url: '/admin/vip-lists/gold/entries/09812300001' })).statusCode, 204);
    t.equal((await passthru(ctx, 'vip', '09812300001')).statusCode, 302, `round ${i}: deleted: no VIP (B)`);
  }
});

t.test("a schedule's holiday (PATCH) and override (PUT, DELETE): simulate and the callback right after follow", async (t) => {
  const ctx = await buildTestApp(t);
  await created(t, ctx.admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'support', name: 'Support', weekly: ALL_WEEK } }));
  const queue = {
    slug: 'queue',
    name: 'Queue',
    type: 'passthru',
    rules: [{ when: { closedBy: 'support' }, then: { branch: 'B' } }],
    otherwise: { branch: 'A' },
    onError: { branch: 'A' },
  };
  await created(t, ctx.admin({ method: 'POST', url: '/admin/flows', payload: queue }));
  const simulate = async () =>
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/flows/queue/simulate',
        payload: { endpoint: 'passthru', params: { CallSid: 's' }, at: '2030-12-25T11:00:00+05:30' },
      })
    ).json().answer.statusCode;
  for (let i = 1; i <= ROUNDS; i++) {
    t.equal(
      (await ctx.admin({ method: 'PATCH', url: '/admin/schedules/support', payload: { exceptions: [{ date: '2030-12-25', closed: true }] } })).statusCode,
      200,
    );
    t.equal(await simulate(), 302, `round ${i}: the holiday closes it (B)`);
    t.equal((await ctx.admin({ method: 'PATCH', url: '/admin/schedules/support', payload: { exceptions: [] } })).statusCode, 200);
    t.equal(await simulate(), 200, `round ${i}: without it, open (A)`);
    t.equal((await ctx.admin({ method: 'PUT', url: '/admin/schedules/support/override', payload: { open: false, reason: 'flooding' } })).statusCode, 200);
    t.equal((await passthru(ctx, 'queue')).statusCode, 302, `round ${i}: closed by the override (B)`);
    t.equal((await ctx.admin({ method: 'DELETE', url: '/admin/schedules/support/override' })).statusCode, 204);
    t.equal((await passthru(ctx, 'queue')).statusCode, 200, `round ${i}: override deleted, open (A)`);
  }
});

t.test('an agent sent away or back, a member switched off or on, a shift closed: the next Dial Whom, and GET /admin/agents, follow', async (t) => {
  const ctx = await buildTestApp(t);
  await created(t, ctx.admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'shift', name: 'Shift', weekly: ALL_WEEK } }));
  const group = { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: A }, { number: B, schedule: 'shift' }] };
  await created(t, ctx.admin({ method: 'POST', url: '/admin/dial-groups', payload: group }));
  await created(
    t,
    ctx.admin({
      method: 'POST',
      url: '/admin/flows',
      payload: { slug: 'agents', name: 'Agents', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { numbers: ['+919811100009'] } },
    }),
  );
  const state = async (number: string) => (await ctx.admin({ method: 'GET', url: `/admin/agents/${encodeURIComponent(number)}` })).json().state;
  for (let i = 1; i <= ROUNDS; i++) {
    t.equal((await ctx.admin({ method: 'PUT', url: `/admin/agents/${A}/availability`, payload: { status: 'away' } })).statusCode, 200);
    t.equal(await dialWhom(ctx, 'agents'), B, `round ${i}: away: not offered`);
    t.equal((await ctx.admin({ method: 'PUT', url: `/admin/agents/${A}/availability`, payload: { status: 'available' } })).statusCode, 200);
    t.equal(await dialWhom(ctx, 'agents'), `${A},${B}`, `round ${i}: back: offered`);
    t.equal((await ctx.admin({ method: 'PATCH', url: `/admin/dial-groups/sales/members/${A}`, payload: { active: false } })).statusCode, 200);
    t.equal(await dialWhom(ctx, 'agents'), B, `round ${i}: switched off: not offered`);
    t.equal((await ctx.admin({ method: 'PATCH', url: `/admin/dial-groups/sales/members/${A}`, payload: { active: true } })).statusCode, 200);
    t.equal(await dialWhom(ctx, 'agents'), `${A},${B}`, `round ${i}: switched on: offered`);
    t.equal((await ctx.admin({ method: 'PUT', url: '/admin/schedules/shift/override', payload: { open: false, reason: 'training' } })).statusCode, 200);
    t.equal(await state(B), 'off_shift', `round ${i}: shift closed: GET /admin/agents says off_shift`);
    t.equal(await dialWhom(ctx, 'agents'), A, `round ${i}: and the Dial Whom leaves them out`);
    t.equal((await ctx.admin({ method: 'DELETE', url: '/admin/schedules/shift/override' })).statusCode, 204);
    t.equal(await state(B), 'available', `round ${i}: shift open again: available`);
  }
});

t.test('a write whose reload on this instance fails is answered as written, with a warning in the log', async (t) => {
  const { logger, lines } = capturedLog('warn');
  const ctx = await buildTestApp(t, {}, { logger });
  // the reload fails (Postgres refusing the snapshot's read, say); the write has committed all the same
  ctx.app.rules.loadAnnounced = async () => {
    throw new Error('reload refused');
  };
  const res = await ctx.admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'support', name: 'Support', weekly: ALL_WEEK } });
  t.equal(res.statusCode, 201, 'the write is answered as made');
  t.equal((await ctx.admin({ method: 'GET', url: '/admin/schedules/support' })).statusCode, 200, 'and it is stored');
  t.match(
    lines.join(''),
    /rules not reloaded after an admin write.*reload refused|reload refused.*rules not reloaded after an admin write/,
    'the log says why',
  );
});
