import net from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { buildTestApp, type TestApp } from '../../helper.js';

/** Waits until the rules snapshot (reloaded through LISTEN/NOTIFY) satisfies `ok`. */
async function snapshotHas(ok: () => boolean, ms = 2000): Promise<number> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error('snapshot did not catch up');
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - t0;
}

async function cdrsFor(ctx: TestApp, callSid: string) {
  return ctx.db.prisma.cdr.findMany({ where: { callSid }, orderBy: { id: 'asc' } });
}

// A Passthru request as Exotel sends it after an IVR applet (docs/exotel.md).
const ivrParams = (sid: string, from: string) =>
  new URLSearchParams({
    CallSid: sid,
    CallFrom: from,
    CallTo: '08047115777',
    Direction: 'incoming',
    Created: '2026-11-20 10:00:00',
    DialCallDuration: '0',
    StartTime: '2026-11-20 10:00:00',
    EndTime: '1970-01-01 05:30:00',
    CallType: 'call-attempt',
    From: from,
    To: '08047115777',
    CurrentTime: '2026-11-20 10:00:05',
    digits: '"1"',
    flow_id: '12345',
  }).toString();

async function setup(t: Test, env: Record<string, string> = {}) {
  const ctx = await buildTestApp(t, env);
  const { admin } = ctx;
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '09812345678' } })).statusCode, 201);
  // Closed on every day: only VIPs get branch A.
  t.equal((await admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'support', name: 'Support', weekly: [] } })).statusCode, 201);
  const flow = await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: {
      slug: 'inbound',
      name: 'Main line',
      type: 'passthru',
      rules: [
        { name: 'VIPs', when: { callerIn: 'gold' }, then: { branch: 'A' } },
        { name: 'closed', when: { closedBy: 'support' }, then: { branch: 'B' } },
      ],
      otherwise: { branch: 'A' },
      onError: { branch: 'A' },
    },
  });
  t.equal(flow.statusCode, 201, 'flow created');
  await snapshotHas(() => ctx.app.rules.current?.flows.has('inbound') === true);
  return ctx;
}

t.test('passthru over real HTTP: VIP → A (200), others while closed → B (302), each with one CDR', async (t) => {
  const ctx = await setup(t);
  const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });

  const vip = await fetch(`${base}/exotel/passthru/inbound?${ivrParams('call-vip', '+919812345678')}`);
  t.equal(vip.status, 200);
  t.equal(await vip.text(), '');
  const other = await fetch(`${base}/exotel/passthru/inbound?${ivrParams('call-other', '09800000001')}`, { redirect: 'manual' });
  t.equal(other.status, 302);

  const [vipCdr] = await cdrsFor(ctx, 'call-vip');
  t.match(vipCdr, {
    endpoint: 'passthru',
    flowSlug: 'inbound',
    callFrom: '+919812345678',
    callFromRaw: '+919812345678',
    callTo: '+918047115777',
    direction: 'incoming',
    digits: '1',
    outcome: 'answered',
    matchedRule: 'VIPs',
    httpStatus: 200,
    responseBody: '',
    attempt: 1,
    reason: null,
  });
  t.match(vipCdr!.params, { CallSid: 'call-vip', digits: '"1"', flow_id: '12345' }, 'raw params kept, deprecated ones included');
  t.match(vipCdr!.decision, { action: { branch: 'A' }, decidedBy: 'rule' });
  t.ok(vipCdr!.handlingMs >= 0);
  const otherCdrs = await cdrsFor(ctx, 'call-other');
  t.equal(otherCdrs.length, 1);
  t.match(otherCdrs[0], { matchedRule: 'closed', httpStatus: 302, callFrom: '+919800000001' });
});

t.test('POST form and JSON bodies are parsed like the query string', async (t) => {
  const ctx = await setup(t);
  const form = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/passthru/inbound',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: ivrParams('call-form', '919812345678'),
  });
  t.equal(form.statusCode, 200, 'VIP by the 91… form');
  const json = await ctx.app.inject({ method: 'POST', url: '/exotel/passthru/inbound', payload: { CallSid: 'call-json', CallFrom: '09800000002' } });
  t.equal(json.statusCode, 302);
  t.equal((await cdrsFor(ctx, 'call-form')).length, 1);
  t.equal((await cdrsFor(ctx, 'call-json'))[0]!.callFrom, '+919800000002');
});

t.test('refusals are answered and logged: unknown flow 404, missing CallSid 400, malformed JSON', async (t) => {
  const ctx = await setup(t);
  const unknown = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/nope?${ivrParams('call-404', '09800000003')}` });
  t.equal(unknown.statusCode, 404);
  t.match(unknown.json().message, "no flow 'nope'");
  t.match((await cdrsFor(ctx, 'call-404'))[0], { outcome: 'rejected', httpStatus: 404, reason: "no flow 'nope'", flowSlug: 'nope' });

  const wrongType = await ctx.app.inject({ method: 'GET', url: `/exotel/switch/inbound?CallSid=call-type` });
  t.equal(wrongType.statusCode, 404);
  t.match(wrongType.json().message, 'passthru flow, not switch');

  const before = await ctx.db.prisma.cdr.count();
  const missing = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallFrom=09800000004' });
  t.equal(missing.statusCode, 400);
  t.match(missing.json().message, 'CallSid is missing');
  const after = await ctx.db.prisma.cdr.findMany({ where: { callSid: null } });
  t.equal(after.length, 1, 'one CDR for the refused callback');
  t.equal(await ctx.db.prisma.cdr.count(), before + 1);

  const bad = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/passthru/inbound?CallSid=call-badjson',
    headers: { 'content-type': 'application/json' },
    payload: '{"CallFrom": ',
  });
  t.equal(bad.statusCode, 302, 'the query still decides; the body is ignored');
  t.match((await cdrsFor(ctx, 'call-badjson'))[0]!.decision, { warnings: [/not valid JSON/] });
});

t.test('a POST body exoroute cannot read (multipart, JSON sent as a form): the 400 and its CDR say how to send it, with one CDR each', async (t) => {
  // It was a bare "CallSid is missing" for a body that carried CallSid: a user trying the URL with
  // Postman's form-data or `curl -F` / `curl -d '{…}'` could not tell what to change.
  const ctx = await setup(t);
  const boundary = 'exo-boundary';
  const part = (name: string, value: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const multipart = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/passthru/inbound',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    payload: `${part('CallSid', 'mp-1')}${part('CallFrom', '09812345678')}--${boundary}--\r\n`,
  });
  t.equal(multipart.statusCode, 400);
  t.match(multipart.json().message, /^CallSid is missing: a multipart\/form-data body is not read; send the parameters as application\/x-www-form-urlencoded/);
  const asForm = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/passthru/inbound',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: JSON.stringify({ CallSid: 'jf-1', CallFrom: '09812345678' }),
  });
  t.equal(asForm.statusCode, 400);
  t.match(
    asForm.json().message,
    /^CallSid is missing: the body is JSON but its Content-Type is application\/x-www-form-urlencoded; send Content-Type: application\/json/,
  );
  const event = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/dial-events',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    payload: `${part('CallSid', 'mp-2')}${part('DialWhomNumber', '09812345678')}--${boundary}--\r\n`,
  });
  t.equal(event.statusCode, 400);
  t.match(event.json().message, /^DialWhomNumber is missing: a multipart\/form-data body is not read/);
  const refused = await ctx.db.prisma.cdr.findMany({ where: { callSid: null }, orderBy: { id: 'asc' } });
  t.equal(refused.length, 3, 'one CDR each');
  t.match(
    refused.map((c) => c.reason),
    [/multipart/, /JSON/, /multipart/],
  );
  const missing = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallFrom=09800000004' });
  t.equal(missing.json().message, 'CallSid is missing', 'a callback without a body is told no more');
});

t.test('a POST body sent with an empty Content-Type, or a form declared JSON: the refusal says what to send, with one CDR each', async (t) => {
  // An empty Content-Type was Fastify's bare 415 "Unsupported Media Type"; a form sent as
  // application/json a bare "CallSid is missing", though it carried CallSid.
  const ctx = await setup(t);
  const form = 'CallSid=ct-1&CallFrom=09812345678';
  const empty = await ctx.app.inject({ method: 'POST', url: '/exotel/passthru/inbound', headers: { 'content-type': '' }, payload: form });
  t.equal(empty.statusCode, 415);
  t.match(empty.json().message, /^the body.s Content-Type is empty; send the parameters as application\/x-www-form-urlencoded/);
  const junk = await ctx.app.inject({ method: 'POST', url: '/exotel/passthru/inbound', headers: { 'content-type': 'form' }, payload: form });
  t.equal(junk.statusCode, 415);
  t.match(junk.json().message, /^the body's Content-Type "form" is no media type; send the parameters as application\/x-www-form-urlencoded/);
  const asJson = await ctx.app.inject({ method: 'POST', url: '/exotel/passthru/inbound', headers: { 'content-type': 'application/json' }, payload: form });
  t.equal(asJson.statusCode, 400);
  t.match(
    asJson.json().message,
    /^CallSid is missing: the body is not JSON but its Content-Type is application\/json; send .*application\/x-www-form-urlencoded/,
  );
  const refused = await ctx.db.prisma.cdr.findMany({ where: { callSid: null }, orderBy: { id: 'asc' } });
  t.equal(refused.length, 3, 'one CDR each');
  t.match(
    refused.map((c) => [c.httpStatus, c.reason]),
    [
      [415, /Content-Type is empty/],
      [415, /no media type/],
      [400, /not JSON/],
    ],
  );
});

t.test(
  'a POST body in the charset its Content-Type names (ISO-8859-1) is read in it; one that is not the UTF-8 it claims is flagged; an unknown charset is a 415',
  async (t) => {
    // Bodies were read as UTF-8 whatever their charset: a form sent as ISO-8859-1 stored its
    // caller's name `José` as `Jos\uFFFD`, silently, in the CDR's customField and params.
    const ctx = await setup(t);
    const post = (type: string, payload: string | Buffer, query = '') =>
      ctx.app.inject({ method: 'POST', url: `/exotel/passthru/inbound${query}`, headers: { 'content-type': type }, payload });
    const latin1Form = 'application/x-www-form-urlencoded; charset=ISO-8859-1';
    t.equal((await post(latin1Form, 'CallSid=cs-1&CallFrom=09812345678&CustomField=Jos%E9+Garc%EDa')).statusCode, 200, 'escaped bytes');
    t.equal((await post(latin1Form, Buffer.from('CallSid=cs-2&CallFrom=09812345678&CustomField=Jos\xe9', 'latin1'))).statusCode, 200, 'raw bytes');
    const json = Buffer.from(JSON.stringify({ CallSid: 'cs-3', CallFrom: '09812345678', CustomField: 'José' }), 'latin1');
    t.equal((await post('application/json; charset=iso-8859-1', json)).statusCode, 200, 'JSON');
    t.equal((await post('application/x-www-form-urlencoded', 'CallSid=cs-4&CallFrom=09812345678&CustomField=Jos%C3%A9')).statusCode, 200, 'UTF-8');
    for (const [sid, name] of [
      ['cs-1', 'José García'],
      ['cs-2', 'José'],
      ['cs-3', 'José'],
      ['cs-4', 'José'],
    ] as const) {
      const [cdr] = await cdrsFor(ctx, sid);
      t.equal(cdr!.customField, name, `${sid}: customField`);
      t.equal((cdr!.params as Record<string, string>).CustomField, name, `${sid}: params`);
      t.equal(cdr!.decision && 'warnings' in (cdr!.decision as object), false, `${sid}: no warning`);
    }

    // ISO-8859-1 sent without saying so: still U+FFFD (nothing tells which charset it was), but not silently.
    t.equal((await post('application/x-www-form-urlencoded', 'CallSid=cs-5&CallFrom=09812345678&CustomField=Jos%E9')).statusCode, 200);
    const [unsaid] = await cdrsFor(ctx, 'cs-5');
    t.equal(unsaid!.customField, 'Jos\uFFFD');
    t.match(unsaid!.decision, { warnings: [/^the body is not UTF-8.*charset=ISO-8859-1/] }, 'the CDR says the body was not UTF-8, and what to send');

    const unknown = await post('application/x-www-form-urlencoded; charset=x-klingon', 'CallFrom=09812345678', '?CallSid=cs-6');
    t.equal(unknown.statusCode, 415);
    t.match(unknown.json().message, /^the body's charset "x-klingon" \(in its Content-Type\) is unknown; send UTF-8/);
    t.match(await cdrsFor(ctx, 'cs-6'), [{ httpStatus: 415, outcome: 'rejected', reason: /x-klingon/ }], 'one CDR');
  },
);

t.test('a refusal of an unreadable body repeats at most 100 characters of its Content-Type, in the answer and the CDR', async (t) => {
  // A 15 kB Content-Type went whole into the 400's message and the CDR's reason.
  const ctx = await setup(t);
  const type = `text/${'x'.repeat(15_000)}`;
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/passthru/inbound',
    headers: { 'content-type': type },
    payload: JSON.stringify({ CallSid: 'long-type-1' }),
  });
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /^CallSid is missing: the body is JSON but its Content-Type is text\/x{95}…; send Content-Type: application\/json/);
  t.ok(res.json().message.length < 300, 'the answer is short');
  const [cdr] = await ctx.db.prisma.cdr.findMany({ where: { callSid: null } });
  t.equal(cdr!.reason, res.json().message, 'the CDR says the same');
});

t.test('a body over the limit is refused with 413 and still leaves one CDR', async (t) => {
  const ctx = await setup(t);
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/exotel/passthru/inbound?CallSid=call-big',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `x=${'a'.repeat(100_000)}`,
  });
  t.equal(res.statusCode, 413);
  t.match((await cdrsFor(ctx, 'call-big'))[0], { outcome: 'rejected', httpStatus: 413 });
});

t.test('callback secret: 401 without it, accepted as Basic password or token, never stored', async (t) => {
  const secret = 's3cret-callback-value';
  const ctx = await setup(t, { EXOTEL_CALLBACK_SECRET: secret });
  const none = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallSid=sec-1' });
  t.equal(none.statusCode, 401);
  const wrong = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallSid=sec-2&token=nope' });
  t.equal(wrong.statusCode, 401);
  const basic = await ctx.app.inject({
    method: 'GET',
    url: '/exotel/passthru/inbound?CallSid=sec-3&CallFrom=09812345678',
    headers: { authorization: `Basic ${Buffer.from(`exotel:${secret}`).toString('base64')}` },
  });
  t.equal(basic.statusCode, 200);
  const token = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallSid=sec-4&CallFrom=09812345678&token=${secret}` });
  t.equal(token.statusCode, 200);
  const sameLength = await ctx.app.inject({
    method: 'GET',
    url: '/exotel/passthru/inbound?CallSid=sec-5&CallFrom=09812345678',
    headers: { authorization: `Basic ${Buffer.from(`exotel:${secret.slice(0, -1)}X`).toString('base64')}` },
  });
  t.equal(sameLength.statusCode, 401, 'a wrong Basic password of the right length');
  const rows = await ctx.db.prisma.cdr.findMany({ where: { callSid: { startsWith: 'sec-' } }, orderBy: { callSid: 'asc' } });
  t.same(
    rows.map((r) => [r.callSid, r.httpStatus, r.outcome]),
    [
      ['sec-1', 401, 'rejected'],
      ['sec-2', 401, 'rejected'],
      ['sec-3', 200, 'answered'],
      ['sec-4', 200, 'answered'],
      ['sec-5', 401, 'rejected'],
    ],
  );
  t.notOk(JSON.stringify(rows, (_k, v) => (typeof v === 'bigint' ? String(v) : v)).includes(secret), 'the secret is in no CDR');
});

t.test('EXOTEL_ALLOWED_CIDRS refuses other sources with 403', async (t) => {
  const ctx = await setup(t, { EXOTEL_ALLOWED_CIDRS: '10.1.0.0/16' });
  const res = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallSid=cidr-1', remoteAddress: '127.0.0.1' });
  t.equal(res.statusCode, 403);
  const ok = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallSid=cidr-2', remoteAddress: '10.1.2.3' });
  t.equal(ok.statusCode, 302);
  t.equal((await cdrsFor(ctx, 'cidr-1'))[0]!.httpStatus, 403);
});

t.test('a VIP added through the admin API routes as VIP within a second', async (t) => {
  const ctx = await setup(t);
  const url = `/exotel/passthru/inbound?${ivrParams('call-new-vip', '09811111111')}`;
  t.equal((await ctx.app.inject({ method: 'GET', url })).statusCode, 302, 'not a VIP yet');
  const added = Date.now();
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '+919811111111' } })).statusCode, 201);
  let status = 0;
  while (Date.now() - added < 1000) {
    status = (await ctx.app.inject({ method: 'GET', url })).statusCode;
    if (status === 200) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  t.equal(status, 200, `routed as VIP ${Date.now() - added} ms after the write`);
  const attempts = (await cdrsFor(ctx, 'call-new-vip')).map((c) => c.attempt);
  t.same(
    attempts,
    attempts.map((_, i) => i + 1),
    'attempt counts the callbacks of the call',
  );
});

t.test('attempt counts 1, 2, 3 for repeated callbacks of one call, separately per endpoint and flow', async (t) => {
  const ctx = await setup(t);
  const get = (url: string) => ctx.app.inject({ method: 'GET', url });
  for (let i = 0; i < 3; i++) await get('/exotel/passthru/inbound?CallSid=att-1');
  await get('/exotel/switch/inbound?CallSid=att-1'); // refused (a passthru flow), still counted
  await get('/exotel/passthru/other?CallSid=att-1');
  await get('/exotel/passthru/inbound?CallSid=att-2');
  await get('/exotel/passthru/inbound?CallSid=att-1');
  const rows = await ctx.db.prisma.cdr.findMany({ where: { callSid: { startsWith: 'att-' } }, orderBy: { id: 'asc' } });
  t.same(
    rows.map((r) => [r.endpoint, r.flowSlug, r.callSid, r.attempt]),
    [
      ['passthru', 'inbound', 'att-1', 1],
      ['passthru', 'inbound', 'att-1', 2],
      ['passthru', 'inbound', 'att-1', 3],
      ['switch', 'inbound', 'att-1', 1],
      ['passthru', 'other', 'att-1', 1],
      ['passthru', 'inbound', 'att-2', 1],
      ['passthru', 'inbound', 'att-1', 4],
    ],
  );
  const keys = rows.map((r) => r.idempotencyKey);
  t.ok(
    keys.every((k) => /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(k)),
    'idempotency keys are UUIDv7',
  );
  const times = keys.map((k) => k.slice(0, 13));
  t.same([...times].sort(), times, 'their time parts in the order the callbacks came');
  t.equal(new Set(keys).size, keys.length, 'one per callback');
});

t.test('url actions answer the URL as text/plain; async flows answer 200 at once', async (t) => {
  const ctx = await setup(t);
  await ctx.admin({
    method: 'PUT',
    url: '/admin/flows/inbound',
    payload: {
      name: 'x',
      type: 'passthru',
      rules: [{ name: 'vip', when: { callerIn: 'gold' }, then: { branch: 'A', url: 'https://my.exotel.com/exoml/start/vip-flow' } }],
      otherwise: { branch: 'B' },
      onError: { branch: 'A' },
    },
  });
  await snapshotHas(() => ctx.app.rules.current?.flows.get('inbound')?.name === 'x');
  const res = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallSid=u1&CallFrom=09812345678' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/plain/);
  t.equal(res.body, 'https://my.exotel.com/exoml/start/vip-flow');

  await ctx.admin({
    method: 'PUT',
    url: '/admin/flows/inbound',
    payload: { name: 'y', type: 'passthru', mode: 'async', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'B' } },
  });
  await snapshotHas(() => ctx.app.rules.current?.flows.get('inbound')?.mode === 'async');
  const async = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallSid=u2' });
  t.equal(async.statusCode, 200, 'async answers 200 even though the flow says B');
  t.match((await cdrsFor(ctx, 'u2'))[0], { outcome: 'async', decision: { action: { branch: 'B' } } });
});

t.test('switch-case answers {"select":"<case>"} by digits', async (t) => {
  const ctx = await setup(t);
  const res = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: {
      slug: 'menu',
      name: 'IVR menu',
      type: 'switch',
      rules: [
        { name: 'sales', when: { digits: { equals: '1' } }, then: { select: 'sales' } },
        { name: 'support', when: { digits: { in: ['2', '3'] } }, then: { select: 'support' } },
      ],
      otherwise: { select: 'operator' },
      onError: { select: 'operator' },
    },
  });
  t.equal(res.statusCode, 201, 'switch flow created');
  await snapshotHas(() => ctx.app.rules.current?.flows.has('menu') === true);
  for (const [digits, select] of [
    ['%221%22', 'sales'],
    ['%223%22', 'support'],
    ['%229%22', 'operator'],
  ] as const) {
    const r = await ctx.app.inject({ method: 'GET', url: `/exotel/switch/menu?CallSid=sw-${select}&digits=${digits}` });
    t.equal(r.statusCode, 200);
    t.match(r.headers['content-type'], /text\/plain/);
    t.equal(r.body, JSON.stringify({ select }));
  }
  t.equal(await ctx.db.prisma.cdr.count({ where: { endpoint: 'switch' } }), 3);
});

t.test('500 concurrent callbacks are all answered and all logged, sharing batched commits', async (t) => {
  const ctx = await setup(t);
  const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const batchesBefore = ctx.app.cdrWriter.stats.batches;
  const results = await Promise.all(
    Array.from({ length: 500 }, (_, i) =>
      fetch(`${base}/exotel/passthru/inbound?${ivrParams(`load-${i}`, i % 2 ? '09812345678' : `0980000${String(i).padStart(4, '0')}`)}`, {
        redirect: 'manual',
      }).then(async (r) => ({ i, status: r.status, body: await r.text() })),
    ),
  );
  t.equal(results.filter((r) => r.status === (r.i % 2 ? 200 : 302)).length, 500, 'every callback got its right answer');
  t.equal(await ctx.db.prisma.cdr.count({ where: { callSid: { startsWith: 'load-' } } }), 500, 'every callback has its CDR');
  const batches = ctx.app.cdrWriter.stats.batches - batchesBefore;
  t.ok(batches < 500, `${batches} commits for 500 CDRs (fewer than one per callback)`);
});

t.test('paths under /exotel that are no endpoint, or that the router cannot decode, still leave one CDR', async (t) => {
  const ctx = await setup(t, { EXOTEL_CALLBACK_SECRET: 's3cret-token-value' });
  const cases = [
    { url: '/exotel/passthru/inbound/?CallSid=slash&token=s3cret-token-value', status: 404, endpoint: 'passthru' },
    { url: '/exotel/nosuch/inbound?CallSid=typo&token=s3cret-token-value', status: 404, endpoint: 'unknown' },
    { url: '/exotel/passthru/%E0%A4?CallSid=badesc&token=s3cret-token-value', status: 400, endpoint: 'passthru' },
    { url: `/exotel/switch/${'x'.repeat(300)}?CallSid=long&token=s3cret-token-value`, status: 404, endpoint: 'switch' },
  ];
  for (const c of cases) {
    const res = await ctx.app.inject({ method: 'GET', url: c.url });
    t.equal(res.statusCode, c.status, c.url.slice(0, 60));
    t.notMatch(res.body, /s3cret/, 'the answer does not echo the secret');
    const sid = new URL(c.url, 'http://x').searchParams.get('CallSid')!;
    const cdrs = await cdrsFor(ctx, sid);
    t.equal(cdrs.length, 1, `one CDR for ${sid}`);
    t.equal(cdrs[0]?.endpoint, c.endpoint);
    t.equal(cdrs[0]?.httpStatus, c.status);
  }
});

t.test("a callback URL pasted with a '/' at its end: the 404 and its CDR say to remove it", async (t) => {
  // It was "no such callback endpoint", which does not tell a user whose every call took the
  // applet's error path that the flow is right and only the slash is wrong.
  const ctx = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: 's3cret-token-value' });
  for (const url of ['/exotel/passthru/inbound/', '/exotel/dial-whom/agents//', '/exotel/dial-events/']) {
    const sid = `slash-${url.split('/')[2]}`;
    const res = await ctx.app.inject({ method: 'GET', url: `${url}?CallSid=${sid}&token=s3cret-token-value` });
    t.equal(res.statusCode, 404, url);
    t.match(res.json(), { message: /ends in '\/': remove it/ }, url);
    t.notMatch(res.body, /s3cret/);
    const cdrs = await cdrsFor(ctx, sid);
    t.equal(cdrs.length, 1, `one CDR for ${url}`);
    t.match(cdrs[0], { httpStatus: 404, reason: /ends in '\/': remove it/ });
  }
  const typo = await ctx.app.inject({ method: 'GET', url: '/exotel/nosuch/inbound/?CallSid=typo&token=s3cret-token-value' });
  t.equal(typo.json().message, 'no such callback endpoint', 'a path that is no endpoint without its slash either is told no more');
});

t.test('a callback URL whose flow is written with capitals (as typed in Exotel): the 404 and its CDR say slugs are lowercase, and which to use', async (t) => {
  // It was "no flow 'Inbound'", which reads as if the flow were missing, not misspelt.
  const ctx = await setup(t);
  const res = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/Inbound?${ivrParams('caps-1', '09800000003')}` });
  t.equal(res.statusCode, 404);
  t.match(res.json().message, /^no flow 'Inbound': flow slugs are lowercase; this one is 'inbound'/);
  const cdrs = await cdrsFor(ctx, 'caps-1');
  t.equal(cdrs.length, 1, 'one CDR');
  t.match(cdrs[0], { httpStatus: 404, flowSlug: 'Inbound', reason: /flow slugs are lowercase; this one is 'inbound'/ });
  const none = await ctx.app.inject({ method: 'GET', url: '/exotel/dial-whom/Sales?CallSid=caps-2' });
  t.equal(none.statusCode, 404);
  t.match(none.json().message, /^no flow 'Sales': flow slugs are lowercase/, 'said also when no flow of that name exists in lowercase');
  t.notMatch(none.json().message, /this one is/);
  t.equal((await cdrsFor(ctx, 'caps-2')).length, 1);
  const plain = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/nope?CallSid=caps-3' });
  t.equal(plain.json().message, "no flow 'nope'", 'a lowercase slug that names no flow is told no more');
});

t.test(
  'a callback URL with capitals in its /exotel/<endpoint> part (/Exotel/passthru/…): a 404 saying callback URLs are lowercase, with one CDR',
  async (t) => {
    // /Exotel/… was the admin side's "no route", with no CDR; /exotel/Passthru/… a bare "no such callback endpoint".
    const ctx = await setup(t);
    for (const [url, sid] of <Array<[string, string]>>[
      ['/Exotel/passthru/inbound', 'cap-prefix'],
      ['/exotel/Passthru/inbound', 'cap-endpoint'],
      ['/EXOTEL/DIAL-WHOM/AGENTS', 'cap-all'],
      ['/Exotel/dial-events', 'cap-events'],
    ]) {
      const res = await ctx.app.inject({ method: 'GET', url: `${url}?CallSid=${sid}` });
      t.equal(res.statusCode, 404, url);
      t.match(res.json().message, /^no such callback endpoint: callback URLs are lowercase/, url);
      const cdrs = await cdrsFor(ctx, sid);
      t.equal(cdrs.length, 1, `one CDR for ${url}`);
      t.match(cdrs[0], { httpStatus: 404, reason: /callback URLs are lowercase/ }, url);
    }
    const other = await ctx.app.inject({ method: 'GET', url: '/Exotelx/passthru/inbound?CallSid=cap-other' });
    t.match(other.json().message, /^no route GET/, 'a path outside /exotel is no callback');
    t.equal((await cdrsFor(ctx, 'cap-other')).length, 0);
  },
);

/** Sends raw bytes to the listening app and resolves with all it answered once it closes the connection. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => resolve(received));
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on('close', () => clearTimeout(timer));
    socket.write(bytes);
  });
}

t.test("callbacks Node's HTTP parser refuses (headers too large, bytes that are not HTTP) still leave one CDR, are counted and say what to fix", async (t) => {
  const ctx = await setup(t, { EXOTEL_CALLBACK_SECRET: 's3cret-token-value' });
  await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = ctx.app.server.address() as net.AddressInfo;
  const basic = `Basic ${Buffer.from('exotel:s3cret-token-value').toString('base64')}`;
  // A GET whose query string (a long CustomField, many Legs) is over Node's 16 KiB limit: 431.
  const long = await rawExchange(
    port,
    `GET /exotel/passthru/inbound?CallSid=p431&CustomField=${'x'.repeat(20_000)} HTTP/1.1\r\nHost: exoroute\r\nAuthorization: ${basic}\r\n\r\n`,
  );
  t.match(long, /^HTTP\/1\.1 431 /, '431');
  t.match(long, /larger than 16384 bytes/, 'the answer names the limit');
  // A header value with a control character: 400.
  const bad = await rawExchange(port, `GET /exotel/passthru/inbound?CallSid=p400&token=s3cret-token-value HTTP/1.1\r\nHost: exoroute\r\nX-A: a\x01b\r\n\r\n`);
  t.match(bad, /^HTTP\/1\.1 400 /, '400');
  t.match(bad, /not valid HTTP/, 'the answer says what is wrong');
  t.notMatch(bad, /s3cret/, 'the answer does not echo the secret');
  for (const [sid, status] of [
    ['p431', 431],
    ['p400', 400],
  ] as const) {
    const cdrs = await cdrsFor(ctx, sid);
    t.equal(cdrs.length, 1, `one CDR for ${sid}`);
    t.match(cdrs[0], { endpoint: 'passthru', flowSlug: 'inbound', outcome: 'rejected', httpStatus: status });
    t.notMatch(JSON.stringify(cdrs[0]?.params), /s3cret/, 'the secret is not stored');
  }
  // A broken chunk in a body being read: the request was already routed, and its handler's CDR is its only one.
  const chunk = await rawExchange(
    port,
    `POST /exotel/passthru/inbound?CallSid=pchunk HTTP/1.1\r\nHost: exoroute\r\nAuthorization: ${basic}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n`,
  );
  t.match(chunk, /^HTTP\/1\.1 400 /);
  // Pipelined: the first is answered as usual, the second (refused) has the CDR, each one.
  const pipelined = await rawExchange(
    port,
    `GET /exotel/passthru/inbound?CallSid=pipe1 HTTP/1.1\r\nHost: exoroute\r\nAuthorization: ${basic}\r\n\r\n` +
      'GET /exotel/passthru/inbound?CallSid=pipe2 HTTP/1.1\r\nHost: exoroute\r\nX-A: a\x01b\r\n\r\n',
  );
  t.match(pipelined, /HTTP\/1\.1 400 /);
  await new Promise((r) => setTimeout(r, 200));
  t.equal((await cdrsFor(ctx, 'pchunk')).length, 1, 'one CDR for a broken chunk');
  t.equal((await cdrsFor(ctx, 'pipe1')).length, 1, 'one CDR for the first pipelined callback');
  t.match(await cdrsFor(ctx, 'pipe2'), [{ httpStatus: 400, outcome: 'rejected' }], 'one for the refused second one');
  // Bytes that are no callback (nor anything else): no CDR, but counted.
  t.match(await rawExchange(port, 'GET /healthz HTTP/1.1 extra\r\nHost: exoroute\r\n\r\n'), /^HTTP\/1\.1 400 /);
  const metrics = (await ctx.admin({ method: 'GET', url: '/metrics' })).body;
  t.match(metrics, /exoroute_http_client_errors_total\{status="431"\} 1\n/);
  t.match(metrics, /exoroute_http_client_errors_total\{status="400"\} 4\n/);
  t.match(metrics, /exoroute_callback_duration_seconds_count\{endpoint="passthru",outcome="rejected"\} 4\n/);
});

t.test('a callback URL asked with another method than GET or POST is 405 with Allow: GET, POST, decides nothing, and leaves one CDR', async (t) => {
  const ctx = await setup(t, { EXOTEL_CALLBACK_SECRET: 's3cret-token-value' });
  const paths = ['/exotel/passthru/inbound', '/exotel/switch/menu', '/exotel/dial-whom/agents', '/exotel/connect/agents', '/exotel/dial-events'];
  for (const method of ['HEAD', 'OPTIONS', 'PUT', 'PATCH', 'DELETE'] as const) {
    for (const path of paths) {
      const sid = `${method}-${path.split('/')[2]}`;
      const res = await ctx.app.inject({
        method,
        url: `${path}?CallSid=${sid}&CallFrom=09812345678&DialWhomNumber=09812345678&Status=busy&token=s3cret-token-value`,
      });
      t.equal(res.statusCode, 405, `${method} ${path}`);
      t.equal(res.headers.allow, 'GET, POST', `${method} ${path}: Allow`);
      if (method !== 'HEAD')
        t.match(res.json(), { statusCode: 405, error: 'Method Not Allowed', message: `${method} is not allowed: Exotel calls back with GET or POST` });
      t.match(await cdrsFor(ctx, sid), [{ endpoint: path.split('/')[2], outcome: 'rejected', httpStatus: 405 }], `${method} ${path}: one CDR`);
    }
  }
  t.equal(await ctx.db.pool.query('SELECT 1 FROM agent_states').then((r) => r.rowCount), 0, 'no dial event was recorded');
  const typo = await ctx.app.inject({ method: 'HEAD', url: '/exotel/passthru/inbound/extra?CallSid=head-typo&token=s3cret-token-value' });
  t.equal(typo.statusCode, 404, 'a path that is no callback endpoint stays 404, whatever the method');
});

t.test(
  "a callback refused for its secret (401) challenges for it: WWW-Authenticate: Basic, so that a client holding the URL's password sends it",
  async (t) => {
    const secret = 's3cret-callback-value';
    const ctx = await setup(t, { EXOTEL_CALLBACK_SECRET: secret });
    const challenge = 'Basic realm="exoroute callbacks", charset="UTF-8"';
    // The first refusals of a minute from one address leave a CDR; the rest are only counted: both are answered alike.
    for (let i = 0; i < 12; i++) {
      const res = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallSid=chal-${i}` });
      t.equal(res.statusCode, 401);
      t.equal(res.headers['www-authenticate'], challenge, `refusal ${i + 1}`);
    }
    const wrong = await ctx.app.inject({
      method: 'POST',
      url: '/exotel/dial-events',
      headers: { authorization: `Basic ${Buffer.from('exotel:wrong-password-0123').toString('base64')}` },
      payload: { CallSid: 'chal-event', DialWhomNumber: '09812345678', Status: 'busy' },
      remoteAddress: '127.0.0.2',
    });
    t.equal(wrong.statusCode, 401);
    t.equal(wrong.headers['www-authenticate'], challenge, 'a dial event with a wrong password');
    const ok = await ctx.app.inject({
      method: 'GET',
      url: '/exotel/passthru/inbound?CallSid=chal-ok&CallFrom=09812345678',
      headers: { authorization: `Basic ${Buffer.from(`exotel:${secret}`).toString('base64')}` },
    });
    t.equal(ok.statusCode, 200, 'the password sent after the challenge is taken');
    t.equal(ok.headers['www-authenticate'], undefined);
  },
);

t.test('a callback from outside EXOTEL_ALLOWED_CIDRS (403) carries no challenge: no password would help', async (t) => {
  const ctx = await setup(t, { EXOTEL_ALLOWED_CIDRS: '10.1.0.0/16', EXOTEL_CALLBACK_SECRET: 's3cret-callback-value' });
  const res = await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/inbound?CallSid=cidr-chal', remoteAddress: '127.0.0.1' });
  t.equal(res.statusCode, 403);
  t.equal(res.headers['www-authenticate'], undefined);
});

t.test('a dial event without a usable DialWhomNumber is a 400 saying which: missing, or sent but no number (with one CDR each)', async (t) => {
  const ctx = await setup(t);
  const missing = await ctx.app.inject({ method: 'GET', url: '/exotel/dial-events?CallSid=dw-1&Status=busy' });
  t.equal(missing.statusCode, 400);
  t.equal(missing.json().message, "DialWhomNumber is missing: send the number of the agent's leg the event is about");
  const notANumber = await ctx.app.inject({ method: 'GET', url: '/exotel/dial-events?CallSid=dw-2&DialWhomNumber=agent-7&Status=busy' });
  t.equal(notANumber.statusCode, 400);
  t.equal(notANumber.json().message, 'DialWhomNumber "agent-7" is not a phone number (nor an Exotel SIP user id, sip:…)', 'not called missing: it was sent');
  const long = await ctx.app.inject({ method: 'GET', url: `/exotel/dial-events?CallSid=dw-3&DialWhomNumber=${'x'.repeat(500)}&Status=busy` });
  t.equal(long.statusCode, 400);
  t.ok(long.json().message.length < 120, 'a long value is shown cut short');
  const cdrs = await ctx.db.prisma.cdr.findMany({ where: { callSid: { in: ['dw-1', 'dw-2', 'dw-3'] } }, orderBy: { id: 'asc' } });
  t.same(
    cdrs.map((c) => [c.callSid, c.httpStatus, c.outcome]),
    [
      ['dw-1', 400, 'rejected'],
      ['dw-2', 400, 'rejected'],
      ['dw-3', 400, 'rejected'],
    ],
  );
});
