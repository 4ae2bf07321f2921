import t from 'tap';
import { ADMIN_KEY, buildTestApp, capturedLog } from '../../helper.js';

t.test('one log line per callback with CallSid, flow, outcome and latency; the secret never appears', async (t) => {
  const { logger, lines } = capturedLog();
  const secret = 'never-log-this-secret';
  const { app, admin } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: secret }, { logger: logger });
  await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'f', name: 'F', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'A' } },
  });
  for (let i = 0; i < 200 && !app.rules.current?.flows.has('f'); i++) await new Promise((r) => setTimeout(r, 10));

  await app.inject({ method: 'GET', url: `/exotel/passthru/f?CallSid=log-1&token=${secret}` });
  await app.inject({
    method: 'GET',
    url: '/exotel/passthru/f?CallSid=log-2',
    headers: { authorization: `Basic ${Buffer.from(`exotel:${secret}`).toString('base64')}` },
  });
  await app.inject({ method: 'GET', url: `/exotel/passthru/f?CallSid=log-3&token=wrong-${secret}` });
  await app.inject({ method: 'GET', url: `/healthz?token=${secret}` });

  const callbacks = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'callback');
  t.same(
    callbacks.map((l) => [l.callSid, l.flow, l.outcome, l.status]),
    [
      ['log-1', 'f', 'answered', 302],
      ['log-2', 'f', 'answered', 302],
      ['log-3', 'f', 'rejected', 401],
    ],
  );
  t.ok(callbacks.every((l) => typeof l.latencyMs === 'number'));
  t.same(
    Object.keys(callbacks[0]).sort(),
    ['callSid', 'endpoint', 'flow', 'hostname', 'latencyMs', 'level', 'msg', 'outcome', 'pid', 'reqId', 'rule', 'status', 'time'],
    'each line carries the request id and exactly these fields',
  );
  t.same(
    callbacks.map((l) => [l.level, l.endpoint, l.rule]),
    [
      [30, 'passthru', null],
      [30, 'passthru', null],
      [30, 'passthru', null],
    ],
  );
  t.equal(new Set(callbacks.map((l) => l.reqId)).size, 3, 'one request id per callback');
  t.ok(
    lines.some((l) => l.includes('/healthz?token=[redacted]')),
    'other requests are logged with the token redacted',
  );
  t.notOk(lines.join('\n').includes(secret), 'the secret is in no log line');
});

t.test('a secret pasted into the flow segment (…/inbound&token=…) is not stored, logged or echoed, with or without the right token', async (t) => {
  const { logger, lines } = capturedLog();
  const secret = 'path-pasted-secret-0123456789';
  const { app, db } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: secret }, { logger: logger });
  const missing = await app.inject({ method: 'GET', url: `/exotel/passthru/inbound&token=${secret}?CallSid=sp1` });
  t.equal(missing.statusCode, 401, 'the token in the path is not the query parameter');
  const unknown = await app.inject({ method: 'GET', url: `/exotel/passthru/inbound&token=${secret}?CallSid=sp2&token=${secret}` });
  t.equal(unknown.statusCode, 404, 'the right token: the flow named is unknown');
  const encoded = await app.inject({ method: 'GET', url: `/exotel/connect/x${encodeURIComponent(secret)}?CallSid=sp3&token=${secret}` });
  t.equal(encoded.statusCode, 404);
  t.notOk(`${missing.body}${unknown.body}${encoded.body}`.includes(secret), 'no answer echoes it');
  const { rows } = await db.pool.query(`SELECT call_sid, flow_slug, reason FROM cdrs WHERE call_sid IN ('sp1', 'sp2', 'sp3') ORDER BY call_sid`);
  t.same(
    rows.map((r) => r.flow_slug),
    ['inbound&token=[redacted]', 'inbound&token=[redacted]', 'x[redacted]'],
  );
  t.notOk(JSON.stringify(rows).includes(secret), 'no CDR holds it');
  t.match(rows[1].reason, /no flow 'inbound&token=\[redacted\]'/);
  t.notOk(lines.join('\n').includes(secret), 'no log line holds it');
});

t.test('the secret sent under another name (secret=…, key=…, a bare ?<secret>) is not stored in the CDR of the refused callback', async (t) => {
  const secret = 'other-name-secret-0123456789';
  const { app, db, admin } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: secret });
  await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'f', name: 'F', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'A' } },
  });
  for (let i = 0; i < 200 && !app.rules.current?.flows.has('f'); i++) await new Promise((r) => setTimeout(r, 10));
  const urls = [
    `/exotel/passthru/f?CallSid=on1&secret=${secret}`,
    `/exotel/passthru/f?CallSid=on2&key=${encodeURIComponent(secret)}`,
    `/exotel/passthru/f?CallSid=on3&${secret}`,
    `/exotel/passthru/f?CallSid=on4&next=${encodeURIComponent(`https://exo.example.com/exotel/passthru/g?token=${secret}`)}`,
  ];
  for (const url of urls) t.equal((await app.inject({ method: 'GET', url })).statusCode, 401, url);
  const form = await app.inject({
    method: 'POST',
    url: '/exotel/passthru/f',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `CallSid=on5&Secret=${secret}`,
  });
  t.equal(form.statusCode, 401);
  const { rows } = await db.pool.query(`SELECT call_sid, params FROM cdrs WHERE call_sid LIKE 'on%' ORDER BY call_sid`);
  t.equal(rows.length, 5, 'one CDR each');
  t.same(rows[0].params, { CallSid: 'on1', secret: '[redacted]' }, 'the parameter is kept, its value is not');
  t.notOk(JSON.stringify(rows).includes(secret), 'no CDR holds it');
  const listed = await admin({ method: 'GET', url: '/admin/cdrs?outcome=rejected' });
  const csv = await admin({ method: 'GET', url: '/admin/cdrs.csv' });
  t.notOk(listed.body.includes(secret), 'nor GET /admin/cdrs');
  t.notOk(csv.body.includes(secret), 'nor the CSV export');
});

t.test('the request log line of an admin or ops request shows no key or secret, wherever in the URL it was put', async (t) => {
  const { logger, lines } = capturedLog();
  const secrets = { EXOTEL_CALLBACK_SECRET: 'url-callback-secret-0123', METRICS_TOKEN: 'url-metrics-token-4567' };
  const { app, admin } = await buildTestApp(t, secrets, { logger: logger });
  const created = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'script', role: 'viewer' } })).json() as { key: string };
  const keys = { ...secrets, ADMIN_API_KEY: ADMIN_KEY, created: created.key };
  const requests = [
    // RFC 6750 §2.3: a bearer token as the access_token parameter (refused here, as any key in a URL).
    `/admin/flows?access_token=${created.key}`,
    `/admin/flows?api_key=${encodeURIComponent(ADMIN_KEY)}`,
    // Revoking a key by the key instead of its id.
    `/admin/api-keys/${created.key}`,
    `/metrics?access_token=${secrets.METRICS_TOKEN}`,
    `/healthz?secret=${secrets.EXOTEL_CALLBACK_SECRET}`,
  ];
  const statuses = [];
  for (const url of requests) {
    statuses.push((url.startsWith('/admin/api-keys/') ? await admin({ method: 'DELETE', url }) : await app.inject({ method: 'GET', url })).statusCode);
  }
  t.same(statuses, [401, 401, 400, 401, 200]);
  const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
  t.equal(logged.length, requests.length + 1, 'one line per request');
  for (const [name, secret] of Object.entries(keys)) t.notOk(lines.join('\n').includes(secret), `${name} is in no log line`);
});

t.test('a key or secret sent as a field name (a bare ?<key>) is in neither the 400 naming the field nor its log line', async (t) => {
  const { logger, lines } = capturedLog();
  const secrets = { EXOTEL_CALLBACK_SECRET: 'name-callback-secret-0123', METRICS_TOKEN: 'name-metrics-token-4567' };
  const { admin } = await buildTestApp(t, secrets, { logger: logger });
  const created = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'script', role: 'viewer' } })).json() as { key: string };
  const keys = { ...secrets, ADMIN_API_KEY: ADMIN_KEY, created: created.key };
  const refused = [
    // `curl "$EXO/admin/cdrs?$KEY"`: the key as the query string, a parameter with no value.
    await admin({ method: 'GET', url: `/admin/cdrs?${created.key}` }),
    await admin({ method: 'GET', url: `/admin/refusals?${encodeURIComponent(ADMIN_KEY)}` }),
    await admin({ method: 'GET', url: `/admin/audit?${secrets.EXOTEL_CALLBACK_SECRET}=1` }),
    await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'x', role: 'viewer', [secrets.METRICS_TOKEN]: true } }),
  ];
  t.same(
    refused.map((r) => r.statusCode),
    [400, 400, 400, 400],
  );
  for (const res of refused) t.match(res.json().message, /^(querystring|body)\/\[redacted\]: unknown field; remove it/, 'the field is named, redacted');
  await new Promise((r) => setImmediate(r));
  for (const [name, secret] of Object.entries(keys)) {
    t.notOk(lines.join('\n').includes(secret), `${name} is in no log line`);
    t.notOk(
      refused.some((r) => r.body.includes(secret)),
      `${name} is in no answer`,
    );
  }
});

t.test('a 404 names the path it did not find, but no key or secret put in it', async (t) => {
  const secrets = { EXOTEL_CALLBACK_SECRET: 'path-callback-secret-0123', METRICS_TOKEN: 'path-metrics-token-4567' };
  const { app, admin } = await buildTestApp(t, secrets);
  const created = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'script', role: 'viewer' } })).json() as { key: string };
  const keys = { ...secrets, ADMIN_API_KEY: ADMIN_KEY, created: created.key };
  const urls = [
    // A key pasted into a mistyped path, the secret appended to a path with & instead of ?.
    `/admin/api-key/${created.key}`,
    `/admin/flow/${encodeURIComponent(ADMIN_KEY)}`,
    `/metrics/${secrets.METRICS_TOKEN}`,
    `/healthz&token=${secrets.EXOTEL_CALLBACK_SECRET}`,
    `/readyz/${secrets.EXOTEL_CALLBACK_SECRET}?token=${secrets.EXOTEL_CALLBACK_SECRET}`,
  ];
  for (const url of urls) {
    const res = await app.inject({ method: 'GET', url });
    t.equal(res.statusCode, 404, url);
    t.match(res.json(), { statusCode: 404, error: 'Not Found', message: /^no route GET \/[a-z]+[/&]/ }, `${url}: the path is named`);
    for (const [name, secret] of Object.entries(keys)) t.notOk(res.body.includes(secret), `${url}: ${name} is not echoed`);
  }
  t.equal(
    (await app.inject({ method: 'GET', url: '/nowhere/at-all?x=1' })).json().message,
    'no route GET /nowhere/at-all',
    'a path without one is named as it is',
  );
});

t.test('a refused admin request is one log line: method, URL, status and what was wrong', async (t) => {
  const { logger, lines } = capturedLog();
  const { app, admin } = await buildTestApp(t, {}, { logger: logger });
  const refused = [
    await app.inject({ method: 'GET', url: '/admin/vip-lists' }),
    await admin({ method: 'GET', url: '/admin/cdrs?limit=abc' }),
    await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold' } }),
    await admin({ method: 'GET', url: '/admin/flows/nosuch' }),
  ];
  t.same(
    refused.map((r) => r.statusCode),
    [401, 400, 400, 404],
  );
  await new Promise((r) => setImmediate(r));
  const logged = lines.map((l) => JSON.parse(l));
  t.equal(logged.length, refused.length, 'one line per request, not a second one for the refusal');
  t.same(
    logged.map((l) => [l.msg, l.method, l.url, l.status, l.message]),
    [
      ['request', 'GET', '/admin/vip-lists', 401, 'missing or invalid API key: send Authorization: Bearer <key>'],
      ['request', 'GET', '/admin/cdrs?limit=abc', 400, 'querystring/limit: must be integer'],
      ['request', 'POST', '/admin/vip-lists', 400, 'body/name: is required'],
      ['request', 'GET', '/admin/flows/nosuch', 404, "flow 'nosuch' does not exist"],
    ],
    'each says which request, and why it was refused',
  );
  t.ok(
    logged.every((l) => l.level === 30),
    'at info: a client mistake, nothing for the operator to do',
  );
});

t.test('dial events Postgres does not take (an outage) are one error line a second, not one per event', async (t) => {
  // Each dial event logged 'agent state not updated' at error with its stack: three or four a call,
  // beside the CDR that says so for each. Now as the CDR writer's failures: at most one a second.
  const { logger, lines } = capturedLog();
  const { app, db } = await buildTestApp(t, {}, { logger: logger });
  await db.pool.query('ALTER FUNCTION dial_agent_event RENAME TO dial_agent_event_away');
  t.teardown(() => db.pool.query('ALTER FUNCTION dial_agent_event_away RENAME TO dial_agent_event'));
  for (let i = 0; i < 10; i++) {
    const res = await app.inject({
      method: 'POST',
      url: '/exotel/dial-events',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `CallSid=out-${i}&DialWhomNumber=0981234567${i}&Status=busy`,
    });
    t.equal(res.statusCode, 200, 'acknowledged, as README says');
  }
  const { rows } = await db.pool.query(`SELECT reason FROM cdrs WHERE call_sid LIKE 'out-%'`);
  t.equal(rows.length, 10);
  t.ok(
    rows.every((r) => /^agent state not updated: /.test(r.reason)),
    'each CDR says its event was not applied',
  );
  const logged = lines.map((l) => JSON.parse(l));
  const failed = logged.filter((l) => l.msg === 'agent state not updated');
  t.ok(failed.length >= 1 && failed.length <= 2, `${failed.length} error lines for 10 events`);
  t.match(failed[0], { level: 50, callSid: 'out-0', eventsFailed: 1 }, 'the first at once, with its CallSid');
});

t.test("a refused callback's log line says why, as its CDR does: a wrong secret is told from a bad parameter", async (t) => {
  const { logger, lines } = capturedLog();
  const secret = 'reason-line-secret-0123456789';
  const { app, admin } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: secret }, { logger });
  await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'f', name: 'F', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'A' } },
  });
  for (let i = 0; i < 200 && !app.rules.current?.flows.has('f'); i++) await new Promise((r) => setTimeout(r, 10));
  await app.inject({ method: 'GET', url: `/exotel/passthru/f?CallSid=why-1&token=wrong-${secret}` });
  await app.inject({ method: 'GET', url: `/exotel/passthru/f?CallFrom=09812345678&token=${secret}` });
  await app.inject({ method: 'GET', url: `/exotel/passthru/nosuch?CallSid=why-3&token=${secret}` });
  await app.inject({ method: 'GET', url: `/exotel/passthru/f?CallSid=why-4&token=${secret}` });
  const callbacks = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'callback');
  t.same(
    callbacks.map((l) => [l.status, l.reason]),
    [
      [401, 'callback secret missing or wrong (HTTP Basic password or token parameter)'],
      [400, 'CallSid is missing'],
      [404, "no flow 'nosuch'"],
      [302, undefined],
    ],
    'each refusal names its reason; an answered callback has none',
  );
  t.notOk(lines.join('\n').includes(secret), 'the secret is in no log line');
  t.notOk(lines.join('\n').includes('9812345678'), "nor the caller's number");
});

t.test('a dial event is logged with the flow its URL names', async (t) => {
  const { logger, lines } = capturedLog();
  const { app } = await buildTestApp(t, {}, { logger });
  const res = await app.inject({ method: 'GET', url: '/exotel/dial-events?CallSid=ev-1&DialWhomNumber=09812345670&Status=busy&group=sales&flow=agents' });
  t.equal(res.statusCode, 200);
  await app.inject({ method: 'GET', url: '/exotel/dial-events?CallSid=ev-2&Status=busy&flow=agents' });
  await app.inject({ method: 'GET', url: '/exotel/dial-events?CallSid=ev-3&DialWhomNumber=09812345670&Status=free' });
  const callbacks = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'callback');
  t.same(
    callbacks.map((l) => [l.callSid, l.endpoint, l.flow, l.status]),
    [
      ['ev-1', 'dial-events', 'agents', 200],
      ['ev-2', 'dial-events', 'agents', 400],
      ['ev-3', 'dial-events', null, 200],
    ],
  );
});

t.test('an unknown Exotel-Version is one warning per value, not one per callback', async (t) => {
  const { logger, lines } = capturedLog();
  const { app } = await buildTestApp(t, {}, { logger });
  for (const [i, version] of ['2.0', '2.0', '2.0', '2.0', '3.0', '2.0', '1.0'].entries()) {
    await app.inject({ method: 'GET', url: `/exotel/connect/agents?CallSid=v-${i}`, headers: { 'exotel-version': version } });
  }
  const warned = lines.map((l) => JSON.parse(l)).filter((l) => l.level === 40);
  t.same(
    warned.map((l) => [l.exotelVersion, l.callSid]),
    [
      ['2.0', 'v-0'],
      ['3.0', 'v-4'],
    ],
    'the first callback of each value',
  );
  t.equal(lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'callback').length, 7, 'every callback still has its line');
});
