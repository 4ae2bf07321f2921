/**
 * Callbacks shaped like requests captured from real Exotel integrations (GET and POST): the
 * `Wed, 31 Jul 2024 16:42:56` form of `Created`, absent values as the text `null`, SIP user ids,
 * only `From`/`To`. Each must leave a CDR with no spurious warning, no "null" value, and the right answer.
 */
import t from 'tap';
import type { Test } from 'tap';
import { buildTestApp, type TestApp } from '../../helper.js';

async function until(ok: () => boolean) {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('snapshot did not catch up');
}

/** VIP list `gold`, passthru flow `inbound` (VIPs → A, else B), dial group `sales` and dial flow `agents`. */
async function setup(t: Test): Promise<TestApp> {
  const ctx = await buildTestApp(t, { PUBLIC_URL: 'https://exo.example.com' });
  const ok = async (url: string, payload: unknown) => t.equal((await ctx.admin({ method: 'POST', url, payload })).statusCode, 201, `POST ${url}`);
  await ok('/admin/vip-lists', { slug: 'gold', name: 'Gold' });
  await ok('/admin/vip-lists/gold/entries', { number: '09812345678' });
  await ok('/admin/flows', {
    slug: 'inbound',
    name: 'Main line',
    type: 'passthru',
    rules: [{ name: 'VIPs', when: { callerIn: 'gold' }, then: { branch: 'A' } }],
    otherwise: { branch: 'B' },
    onError: { branch: 'A' },
  });
  await ok('/admin/dial-groups', {
    slug: 'sales',
    name: 'Sales',
    strategy: 'sequential',
    members: [
      { number: '09811100001', priority: 1 },
      { number: '09811100002', priority: 2 },
    ],
  });
  await ok('/admin/flows', {
    slug: 'agents',
    name: 'Agents',
    type: 'dial',
    rules: [{ name: 'retry after busy', when: { dialCallStatus: ['busy'] }, then: { numbers: ['+919800000042'] } }],
    otherwise: { dialGroup: 'sales' },
    onError: { numbers: ['+919800000099'] },
  });
  await until(() => ctx.app.rules.current?.flows.has('agents') === true && ctx.app.rules.current.dialGroups.has('sales'));
  return ctx;
}

/** Every string anywhere in a CDR row. */
function strings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value && typeof value === 'object' && !(value instanceof Date)) for (const v of Object.values(value)) strings(v, out);
  return out;
}

async function cdrOf(t: Test, ctx: TestApp, callSid: string, endpoint: string) {
  const cdrs = await ctx.db.prisma.cdr.findMany({ where: { callSid, endpoint } });
  t.equal(cdrs.length, 1, `one CDR for ${callSid} at ${endpoint}`);
  const cdr = cdrs[0]!;
  t.notOk((cdr.decision as { warnings?: string[] } | null)?.warnings, `no warning in ${callSid}'s CDR`);
  t.same(
    strings(cdr).filter((s) => s.trim().toLowerCase() === 'null'),
    [],
    `no "null" value in ${callSid}'s CDR`,
  );
  return cdr;
}

const captured = (sid: string, extra: Record<string, string> = {}) =>
  new URLSearchParams({
    CallSid: sid,
    From: '09812345678',
    To: '08047115777',
    Direction: 'incoming',
    Created: 'Wed, 31 Jul 2024 16:42:56',
    CurrentTime: '2024-07-31 16:43:01',
    StartTime: '2024-07-31 16:42:56',
    EndTime: '1970-01-01 05:30:00',
    CallType: 'call-attempt',
    DialCallStatus: 'null',
    RecordingUrl: 'null',
    DialWhomNumber: 'null',
    digits: 'null',
    flow_id: '226501',
    tenant_id: '1234',
    ...extra,
  }).toString();

t.test('a captured Passthru GET: only From/To, Created with a day name, nulls — VIP gets A', async (t) => {
  const ctx = await setup(t);
  const res = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?${captured('rt-get')}` });
  t.equal(res.statusCode, 200, 'the VIP (From) gets branch A');
  const cdr = await cdrOf(t, ctx, 'rt-get', 'passthru');
  t.match(cdr, { callFrom: '+919812345678', callTo: '+918047115777', dialCallStatus: null, digits: null, matchedRule: 'VIPs' });
  t.same(cdr.params, Object.fromEntries([...new URLSearchParams(captured('rt-get'))].filter(([, v]) => v !== 'null')));
});

t.test('the same request as a POST form, and as JSON, gets the same answer and CDR', async (t) => {
  const ctx = await setup(t);
  const form = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/passthru/inbound',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: captured('rt-form'),
  });
  t.equal(form.statusCode, 200);
  await cdrOf(t, ctx, 'rt-form', 'passthru');
  const json = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/passthru/inbound',
    payload: Object.fromEntries(new URLSearchParams(captured('rt-json', { From: '09800000001' }))),
  });
  t.equal(json.statusCode, 302, 'not a VIP: branch B');
  await cdrOf(t, ctx, 'rt-json', 'passthru');
});

t.test('Dial Whom: DialCallStatus=null is no status (the busy rule does not hold); a SIP leg is no error', async (t) => {
  const ctx = await setup(t);
  const first = await ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/agents?${captured('rt-dial')}` });
  t.equal(first.body, '+919811100001,+919811100002');
  const cdr = await cdrOf(t, ctx, 'rt-dial', 'dial-whom');
  t.match(cdr, { matchedRule: null, outcome: 'answered' });
  const again = await ctx.app.inject({
    method: 'GET',
    url: `/exotel/dial-whom/agents?${captured('rt-dial2', { DialCallStatus: 'no-answer', DialWhomNumber: 'sip:agent123', 'Legs[0][Number]': 'sip:agent123', 'Legs[0][Cause]': 'null' })}`,
  });
  t.equal(again.statusCode, 200);
  const sip = await cdrOf(t, ctx, 'rt-dial2', 'dial-whom');
  t.equal(sip.dialWhomNumber, 'sip:agent123', 'kept as sent');
});

t.test('a dial event for an Exotel SIP user is acknowledged (200), logged, and changes no agent state', async (t) => {
  const ctx = await setup(t);
  for (const method of ['GET', 'POST'] as const) {
    const params = new URLSearchParams({
      CallSid: `rt-ev-${method}`,
      From: '09812345678',
      To: '08047115777',
      Direction: 'outbound-dial',
      Created: 'Wed, 31 Jul 2024 16:42:56',
      DialWhomNumber: 'sip:agent123',
      Status: 'busy',
      EventType: 'Dial',
    }).toString();
    const res =
      method === 'GET'
        ? await ctx.app.inject({ method, url: `/exotel/dial-events?${params}` })
        : await ctx.app.inject({ method, url: '/exotel/dial-events', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: params });
    t.equal(res.statusCode, 200, method);
    const cdr = await cdrOf(t, ctx, `rt-ev-${method}`, 'dial-events');
    t.match(cdr, { outcome: 'answered', httpStatus: 200, dialWhomNumber: 'sip:agent123', reason: /SIP user/ });
  }
  const { rows } = await ctx.db.pool.query('SELECT count(*)::int AS n FROM agent_states');
  t.equal(rows[0].n, 0, 'no agent state written');
  const bad = await ctx.app.inject({ method: 'GET', url: '/exotel/dial-events?CallSid=rt-ev-bad&DialWhomNumber=abc&Status=busy' });
  t.equal(bad.statusCode, 400, 'a value that is neither a number nor a SIP user is still refused');
});
