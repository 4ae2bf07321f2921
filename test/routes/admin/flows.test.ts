import t from 'tap';
import { buildTestApp, lockWaiters } from '../../helper.js';

const passthru = (over: Record<string, unknown> = {}) => ({
  slug: 'inbound',
  name: 'Main line',
  type: 'passthru',
  rules: [
    { name: 'VIPs', when: { callerIn: 'gold' }, then: { branch: 'A' } },
    { name: 'closed', when: { closedBy: 'support' }, then: { branch: 'B' } },
  ],
  otherwise: { branch: 'A' },
  onError: { branch: 'A' },
  ...over,
});

t.test('flows admin API', async (t) => {
  const { admin, app } = await buildTestApp(t);
  await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } });
  await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '09812345678' } });
  await admin({
    method: 'POST',
    url: '/admin/schedules',
    payload: { slug: 'support', name: 'Support', weekly: [{ day: 'mon', open: '09:00', close: '18:00' }] },
  });

  t.test('a flow referring to missing lists or schedules is 422 naming each slug', async (t) => {
    const res = await admin({
      method: 'POST',
      url: '/admin/flows',
      payload: passthru({
        rules: [
          { name: 'a', when: { callerIn: 'platinum' }, then: { branch: 'A' } },
          { name: 'b', when: { openBy: 'night' }, then: { branch: 'B' } },
        ],
      }),
    });
    t.equal(res.statusCode, 422);
    t.match(res.json().message, /vip-list 'platinum'.*schedule 'night'/);
  });

  t.test('create, read, list; defaults mode sync; duplicate slug 409', async (t) => {
    const res = await admin({ method: 'POST', url: '/admin/flows', payload: passthru() });
    t.equal(res.statusCode, 201);
    t.match(res.json(), { slug: 'inbound', type: 'passthru', mode: 'sync', rules: [{ name: 'VIPs' }, { name: 'closed' }] });
    t.match((await admin({ method: 'GET', url: '/admin/flows/inbound' })).json(), { name: 'Main line' });
    t.equal((await admin({ method: 'GET', url: '/admin/flows' })).json().length, 1);
    t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: passthru() })).statusCode, 409);
  });

  t.test('actions must fit the flow type; numbers are normalised; bad input names the field', async (t) => {
    const wrong = await admin({ method: 'POST', url: '/admin/flows', payload: passthru({ slug: 'x', otherwise: { select: 'sales' } }) });
    t.equal(wrong.statusCode, 400);
    t.match(wrong.json().message, 'body/otherwise: a passthru flow');
    const asyncSwitch = await admin({
      method: 'POST',
      url: '/admin/flows',
      payload: { slug: 'sw', name: 's', type: 'switch', mode: 'async', rules: [], otherwise: { select: 'a' }, onError: { select: 'a' } },
    });
    t.equal(asyncSwitch.statusCode, 400);
    t.match(asyncSwitch.json().message, 'body/mode');
    const dup = await admin({
      method: 'POST',
      url: '/admin/flows',
      payload: passthru({
        slug: 'y',
        rules: [
          { name: 'same', when: {}, then: { branch: 'A' } },
          { name: 'same', when: {}, then: { branch: 'B' } },
        ],
      }),
    });
    t.equal(dup.statusCode, 400);
    t.match(dup.json().message, 'body/rules/1/name');
    const called = await admin({
      method: 'POST',
      url: '/admin/flows',
      payload: passthru({ slug: 'z', rules: [{ name: 'exophone', when: { calledNumber: ['08047115777'] }, then: { branch: 'B' } }] }),
    });
    t.equal(called.statusCode, 201);
    t.same(called.json().rules[0].when.calledNumber, ['+918047115777']);
    const badNumber = await admin({
      method: 'POST',
      url: '/admin/flows',
      payload: passthru({ slug: 'w', rules: [{ name: 'exophone', when: { calledNumber: ['12'] }, then: { branch: 'B' } }] }),
    });
    t.equal(badNumber.statusCode, 400);
    t.match(badNumber.json().message, 'body/rules/0/when/calledNumber/0');
    const unknownCondition = await admin({
      method: 'POST',
      url: '/admin/flows',
      payload: passthru({ slug: 'v', rules: [{ name: 'x', when: { callerIs: 'gold' }, then: { branch: 'B' } }] }),
    });
    t.equal(unknownCondition.statusCode, 400);
    t.match(unknownCondition.json().message, 'body/rules/0/when/callerIs: unknown field');
    const badBranch = await admin({ method: 'POST', url: '/admin/flows', payload: passthru({ slug: 'u', otherwise: { branch: 'C' } }) });
    t.equal(badBranch.statusCode, 400);
    t.match(badBranch.json().message, 'body/otherwise');
    // Exotel continues the call with the URL a passthru answers: only http(s) can be one.
    for (const url of ['javascript:alert(1)', 'ftp://example.com/flow', 'mailto:ops@example.com']) {
      const badUrl = await admin({ method: 'POST', url: '/admin/flows', payload: passthru({ slug: 'url', otherwise: { branch: 'A', url } }) });
      t.equal(badUrl.statusCode, 400, url);
      t.equal(badUrl.json().message, 'body/otherwise/url: must be an http:// or https:// URL', url);
    }
    const goodUrl = await admin({
      method: 'POST',
      url: '/admin/flows',
      payload: passthru({ slug: 'url', otherwise: { branch: 'A', url: 'https://my.exotel.com/exoml/start/123' } }),
    });
    t.equal(goodUrl.statusCode, 201);
    await admin({ method: 'DELETE', url: '/admin/flows/url' });
    await admin({ method: 'DELETE', url: '/admin/flows/z' });
  });

  t.test('deleting a VIP list or schedule a flow uses is 409 naming the flow', async (t) => {
    const list = await admin({ method: 'DELETE', url: '/admin/vip-lists/gold' });
    t.equal(list.statusCode, 409);
    t.match(list.json().message, "flow 'inbound'");
    const schedule = await admin({ method: 'DELETE', url: '/admin/schedules/support' });
    t.equal(schedule.statusCode, 409);
    t.match(schedule.json().message, "flow 'inbound'");
  });

  t.test('simulate returns the exact answer and a per-rule trace, and writes no CDR', async (t) => {
    // The snapshot follows the writes through NOTIFY.
    for (let i = 0; i < 200 && !app.rules.current?.vipLists.get('gold')?.size; i++) await new Promise((r) => setTimeout(r, 10));
    const vip = await admin({
      method: 'POST',
      url: '/admin/flows/inbound/simulate',
      payload: {
        endpoint: 'passthru',
        params: { CallSid: 'sim-1', CallFrom: '09812345678' },
        at: '2026-11-23T12:00:00+05:30',
      },
    });
    t.equal(vip.statusCode, 200);
    t.match(vip.json(), {
      answer: { statusCode: 200, contentType: 'text/plain', body: '' },
      action: { branch: 'A' },
      decidedBy: 'rule',
      matchedRule: 'VIPs',
      trace: [
        { name: 'VIPs', result: 'matched', conditions: [{ condition: 'callerIn gold', held: true, why: '+919812345678 is in gold' }] },
        { name: 'closed', result: 'not evaluated' },
      ],
    });
    const closed = await admin({
      method: 'POST',
      url: '/admin/flows/inbound/simulate',
      payload: {
        endpoint: 'passthru',
        params: { CallSid: 'sim-2', CallFrom: '09800000000' },
        at: '2026-11-23T20:00:00+05:30',
      },
    });
    t.match(closed.json(), { answer: { statusCode: 302 }, matchedRule: 'closed', trace: [{ result: 'not matched' }, { result: 'matched' }] });
    const open = await admin({
      method: 'POST',
      url: '/admin/flows/inbound/simulate',
      payload: {
        endpoint: 'passthru',
        params: { CallSid: 'sim-3', CallFrom: '09800000000' },
        at: '2026-11-23T10:00:00+05:30',
      },
    });
    t.match(open.json(), { answer: { statusCode: 200 }, decidedBy: 'otherwise', matchedRule: null });
    const noSid = await admin({ method: 'POST', url: '/admin/flows/inbound/simulate', payload: { endpoint: 'passthru', params: {} } });
    t.match(noSid.json(), { answer: { statusCode: 400 }, decidedBy: 'rejected', reason: 'CallSid is missing' });
    const wrongEndpoint = await admin({ method: 'POST', url: '/admin/flows/inbound/simulate', payload: { endpoint: 'switch', params: { CallSid: 'x' } } });
    t.match(wrongEndpoint.json(), { answer: { statusCode: 404 }, decidedBy: 'rejected' });
    t.equal((await admin({ method: 'POST', url: '/admin/flows/nope/simulate', payload: { endpoint: 'passthru', params: {} } })).statusCode, 404);
    t.equal((await admin({ method: 'POST', url: '/admin/flows/inbound/simulate', payload: { endpoint: 'fax', params: {} } })).statusCode, 400);
    t.equal(await app.db.prisma.cdr.count(), 0, 'no CDR written');
  });

  t.test('PUT replaces, DELETE removes, both audited; 404 for unknown slugs', async (t) => {
    const put = await admin({
      method: 'PUT',
      url: '/admin/flows/inbound',
      payload: { name: 'Renamed', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'B' } },
    });
    t.equal(put.statusCode, 200);
    t.match(put.json(), { name: 'Renamed', rules: [] });
    t.equal((await admin({ method: 'DELETE', url: '/admin/vip-lists/gold' })).statusCode, 204, 'no longer referenced');
    t.equal(
      (
        await admin({
          method: 'PUT',
          url: '/admin/flows/nope',
          payload: { name: 'x', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'B' } },
        })
      ).statusCode,
      404,
    );
    t.equal((await admin({ method: 'DELETE', url: '/admin/flows/inbound' })).statusCode, 204);
    t.equal((await admin({ method: 'DELETE', url: '/admin/flows/inbound' })).statusCode, 404);
    t.equal((await admin({ method: 'GET', url: '/admin/flows/inbound' })).statusCode, 404);
    const audit = (await admin({ method: 'GET', url: '/admin/audit?entity=flow' })).json();
    t.same(
      audit.items.filter((a: { entityId: string }) => a.entityId === 'inbound').map((a: { action: string }) => a.action),
      ['delete', 'replace', 'create'],
    );
  });
});

t.test("a digits rule's `in` reads as a person writes it in the trace: the one value, or how many of several", async (t) => {
  const { admin } = await buildTestApp(t);
  const res = await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: {
      slug: 'keys',
      name: 'Keys',
      type: 'switch',
      rules: [
        { name: 'one', when: { digits: { in: ['1'] } }, then: { select: 'one' } },
        { name: 'several', when: { digits: { in: ['2', '3'] } }, then: { select: 'several' } },
      ],
      otherwise: { select: 'other' },
      onError: { select: 'other' },
    },
  });
  t.equal(res.statusCode, 201, res.body);
  const why = async (digits: string) => {
    const sim = await admin({
      method: 'POST',
      url: '/admin/flows/keys/simulate',
      payload: { endpoint: 'switch', params: { CallSid: 's', digits: `"${digits}"` } },
    });
    return sim.json().trace.map((r: { conditions: Array<{ why: string }> }) => r.conditions[0]?.why ?? null);
  };
  t.same(await why('1'), ["digits '1' is '1'", null], 'one value held: named, not "one of 1"');
  t.same(await why('3'), ["digits '3' is not '1'", "digits '3' is one of the 2 listed"]);
  t.same(await why('9'), ["digits '9' is not '1'", "digits '9' is none of the 2 listed"]);
});

t.test('a rule written without a name is named by its position, and traces show that name', async (t) => {
  const { admin } = await buildTestApp(t);
  const res = await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: {
      slug: 'menu',
      name: 'Menu',
      type: 'switch',
      rules: [
        { when: { digits: { equals: '1' } }, then: { select: 'sales' } },
        { name: 'support', when: { digits: { equals: '2' } }, then: { select: 'support' } },
        { when: { digits: { equals: '3' } }, then: { select: 'billing' } },
      ],
      otherwise: { select: 'sales' },
      onError: { select: 'sales' },
    },
  });
  t.equal(res.statusCode, 201, res.body);
  t.same(
    res.json().rules.map((r: { name: string }) => r.name),
    ['rule 1', 'support', 'rule 3'],
  );
  const sim = await admin({ method: 'POST', url: '/admin/flows/menu/simulate', payload: { endpoint: 'switch', params: { CallSid: 's', digits: '"3"' } } });
  t.equal(sim.json().matchedRule, 'rule 3');
  t.same(
    sim.json().trace.map((r: { name: string; result: string }) => `${r.name}: ${r.result}`),
    ['rule 1: not matched', 'support: not matched', 'rule 3: matched'],
  );
  const clash = await admin({
    method: 'PUT',
    url: '/admin/flows/menu',
    payload: {
      name: 'Menu',
      type: 'switch',
      otherwise: { select: 'sales' },
      onError: { select: 'sales' },
      rules: [
        { name: 'rule 2', when: {}, then: { select: 'a' } },
        { when: {}, then: { select: 'b' } },
      ],
    },
  });
  t.equal(clash.statusCode, 400);
  t.match(
    clash.json().message,
    "body/rules/1/name: 'rule 2' is used by an earlier rule; rule names are unique in a flow (an unnamed rule is named by its position): give this rule a name",
  );
});

t.test('each flow carries the Exotel URL(s) to paste for its type; the secret only for an admin key', async (t) => {
  const secret = 'cb-secret-1234-abcd';
  const { admin } = await buildTestApp(t, { PUBLIC_URL: 'https://exo.example.com', EXOTEL_CALLBACK_SECRET: secret });
  t.equal(
    (
      await admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09811100001' }] },
      })
    ).statusCode,
    201,
  );
  const created = await admin({ method: 'POST', url: '/admin/flows', payload: passthru({ rules: [] }) });
  t.same(created.json().exotelUrls, { passthru: `https://exo.example.com/exotel/passthru/inbound?token=${secret}` });
  await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'menu', name: 'Menu', type: 'switch', rules: [], otherwise: { select: 'a' }, onError: { select: 'a' } },
  });
  await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'agents', name: 'Agents', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { dialGroup: 'sales' } },
  });
  const all = (await admin({ method: 'GET', url: '/admin/flows' })).json() as Array<{ slug: string; exotelUrls: Record<string, string> }>;
  t.same(Object.fromEntries(all.map((f) => [f.slug, f.exotelUrls])), {
    agents: {
      dialWhom: `https://exo.example.com/exotel/dial-whom/agents?token=${secret}`,
      connect: `https://exo.example.com/exotel/connect/agents?token=${secret}`,
    },
    inbound: { passthru: `https://exo.example.com/exotel/passthru/inbound?token=${secret}` },
    menu: { switch: `https://exo.example.com/exotel/switch/menu?token=${secret}` },
  });

  const viewerKey = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'lead', role: 'viewer' } })).json().key as string;
  const asViewer = (url: string) => admin({ method: 'GET', url, headers: { authorization: `Bearer ${viewerKey}` } });
  const one = await asViewer('/admin/flows/agents');
  t.equal(one.statusCode, 200);
  t.same(one.json().exotelUrls, {
    dialWhom: 'https://exo.example.com/exotel/dial-whom/agents?token=***',
    connect: 'https://exo.example.com/exotel/connect/agents?token=***',
  });
  const list = await asViewer('/admin/flows');
  t.notMatch(list.body + one.body, secret, 'a viewer never sees the secret');
  t.notMatch((await admin({ method: 'GET', url: '/admin/audit?entity=flow' })).body, secret, 'nor does the audit trail hold it');
});

t.test('simulating a Connect answer shows a viewer key the dial-events URL with token=***, not the callback secret', async (t) => {
  const secret = 'cb-secret-1234-abcd';
  const { admin } = await buildTestApp(t, { PUBLIC_URL: 'https://exo.example.com', EXOTEL_CALLBACK_SECRET: secret });
  const group = { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09811100001' }] };
  t.equal((await admin({ method: 'POST', url: '/admin/dial-groups', payload: group })).statusCode, 201);
  const flow = { slug: 'agents', name: 'Agents', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { dialGroup: 'sales' } };
  t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: flow })).statusCode, 201);
  const viewerKey = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'lead', role: 'viewer' } })).json().key as string;
  const simulate = (headers: Record<string, string> = {}) =>
    admin({ method: 'POST', url: '/admin/flows/agents/simulate', payload: { endpoint: 'connect', params: { CallSid: 'sim-1' } }, headers });

  const asViewer = await simulate({ authorization: `Bearer ${viewerKey}` });
  t.equal(asViewer.statusCode, 200, asViewer.body);
  t.notMatch(asViewer.body, secret, 'a viewer never sees the secret');
  t.equal(JSON.parse(asViewer.json().answer.body).dial_passthru_event_url, 'https://exo.example.com/exotel/dial-events?token=***&group=sales&flow=agents');
  const asAdmin = await simulate();
  t.equal(
    JSON.parse(asAdmin.json().answer.body).dial_passthru_event_url,
    `https://exo.example.com/exotel/dial-events?token=${secret}&group=sales&flow=agents`,
    'an admin key sees the answer exactly as Exotel gets it',
  );
});

t.test('without a callback secret the URLs carry no token', async (t) => {
  const { admin } = await buildTestApp(t);
  const created = await admin({ method: 'POST', url: '/admin/flows', payload: passthru({ rules: [] }) });
  t.same(created.json().exotelUrls, { passthru: 'http://127.0.0.1:3000/exotel/passthru/inbound' });
});

t.test('a number twice in a dial action, in any form, is 400 naming the later index; nothing is stored', async (t) => {
  const { admin } = await buildTestApp(t);
  const dial = (over: Record<string, unknown>) => ({
    slug: 'direct',
    name: 'Direct',
    type: 'dial',
    rules: [],
    otherwise: { numbers: ['09812345678', '09812345679'] },
    onError: { numbers: ['+919812345678'] },
    ...over,
  });
  for (const [where, over, field] of [
    ['otherwise', { otherwise: { numbers: ['09812345678', '09812345679', '+919812345678'] } }, 'body/otherwise/numbers/2'],
    ['onError', { onError: { numbers: ['919812345679', '09812345679'] } }, 'body/onError/numbers/1'],
    ['a rule', { rules: [{ when: {}, then: { numbers: ['+919812345678', '9812345678'] } }] }, 'body/rules/0/then/numbers/1'],
  ] as const) {
    const res = await admin({ method: 'POST', url: '/admin/flows', payload: dial(over) });
    t.equal(res.statusCode, 400, `${where}: ${res.body}`);
    t.match(res.json().message, `${field}: +9198123456`);
    t.match(res.json().message, 'a number appears once in the list');
  }
  t.equal((await admin({ method: 'GET', url: '/admin/flows/direct' })).statusCode, 404, 'no flow was stored');
  t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: dial({}) })).statusCode, 201);
  const put = await admin({
    method: 'PUT',
    url: '/admin/flows/direct',
    payload: { ...dial({ otherwise: { numbers: ['09812345678', '09812345678'] } }), slug: undefined },
  });
  t.equal(put.statusCode, 400, put.body);
  t.match(put.json().message, 'body/otherwise/numbers/1: +919812345678 is already number 0');
});

t.test('a number with an extension is 400 naming it, in a dial action and a calledNumber condition; nothing is stored', async (t) => {
  const { admin } = await buildTestApp(t);
  const dial = (over: Record<string, unknown>) => ({
    slug: 'direct',
    name: 'Direct',
    type: 'dial',
    rules: [],
    otherwise: { numbers: ['09812345678'] },
    onError: { numbers: ['09812345679'] },
    ...over,
  });
  for (const [over, field] of [
    [{ otherwise: { numbers: ['09812345678 ext 12'] } }, "body/otherwise/numbers/0: '09812345678 ext 12' has an extension (12)"],
    [{ onError: { numbers: ['080 4711 0000#205'] } }, "body/onError/numbers/0: '080 4711 0000#205' has an extension (205)"],
    [{ rules: [{ when: { calledNumber: ['+918047110000;ext=9'] }, then: { numbers: ['09812345678'] } }] }, 'body/rules/0/when/calledNumber/0: '],
  ] as const) {
    const res = await admin({ method: 'POST', url: '/admin/flows', payload: dial(over) });
    t.equal(res.statusCode, 400, res.body);
    t.match(res.json().message, field);
    t.match(res.json().message, 'Exotel dials whole phone numbers, not extensions');
  }
  t.equal((await admin({ method: 'GET', url: '/admin/flows/direct' })).statusCode, 404, 'no flow was stored');
});

t.test('an action of no known shape is 400 naming the action and the shapes it may take, not a field of another type', async (t) => {
  const { admin } = await buildTestApp(t);
  await admin({ method: 'POST', url: '/admin/dial-groups', payload: { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [] } });
  const dial = (over: Record<string, unknown>) => ({
    slug: 'agents',
    name: 'Agents',
    type: 'dial',
    rules: [],
    otherwise: { dialGroup: 'sales' },
    onError: { numbers: ['09812345678'] },
    ...over,
  });
  for (const [what, over, field] of [
    ['a misspelt key', { otherwise: { dialgroup: 'sales' } }, 'body/otherwise'],
    ['an empty action', { onError: {} }, 'body/onError'],
    ['a key too many', { rules: [{ when: {}, then: { dialGroup: 'sales', ring: 'all' } }] }, 'body/rules/0/then'],
    ['not an object', { otherwise: 'sales' }, 'body/otherwise'],
  ] as const) {
    const res = await admin({ method: 'POST', url: '/admin/flows', payload: dial(over) });
    t.equal(res.statusCode, 400, what);
    const message: string = res.json().message;
    t.ok(message.startsWith(`${field}: must be`), `${what}: ${message}`);
    t.match(message, 'dial flows: {dialGroup}, {dialGroups} (tiers) or {numbers}', what);
    t.notMatch(message, /branch: is required/, `${what}: a dial flow is not told to add a branch`);
  }
  const digits = await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: dial({ rules: [{ when: { digits: { equal: '1' } }, then: { dialGroup: 'sales' } }] }),
  });
  t.equal(digits.statusCode, 400);
  t.match(digits.json().message, /^body\/rules\/0\/when\/digits: must be: .*\{equals\}, \{in\} or \{prefix\}/);
  // A value wrong inside a shape that fits is still named itself.
  const branch = await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { ...dial({}), type: 'passthru', otherwise: { branch: 'C' }, onError: { branch: 'A' } },
  });
  t.match(branch.json().message, /^body\/otherwise\/branch: must be one of A, B/);
  const slug = await admin({ method: 'POST', url: '/admin/flows', payload: dial({ otherwise: { dialGroup: 'Sales!' } }) });
  t.match(slug.json().message, /^body\/otherwise\/dialGroup: must be a slug/);
});

t.test('a dialCallStatus Exotel never sends is 400 naming it and the statuses there are; their spellings are kept', async (t) => {
  const { admin } = await buildTestApp(t);
  const dial = (dialCallStatus: string[]) => ({
    slug: 'retry',
    name: 'Retry',
    type: 'dial',
    rules: [{ name: 'missed', when: { dialCallStatus }, then: { numbers: ['09812345678'] } }],
    otherwise: { numbers: ['09812345679'] },
    onError: { numbers: ['09812345679'] },
  });
  for (const [bad, at] of [
    [['busy', 'no_answer'], 1],
    [['answered'], 0],
    [['noanswer'], 0],
  ] as const) {
    const res = await admin({ method: 'POST', url: '/admin/flows', payload: dial([...bad]) });
    t.equal(res.statusCode, 400, `${bad}: ${res.body}`);
    t.match(res.json().message, `body/rules/0/when/dialCallStatus/${at}: '${bad[at]}' is no DialCallStatus of Exotel's`);
    t.match(res.json().message, 'completed, busy, no-answer, failed, canceled');
  }
  const ok = await admin({ method: 'POST', url: '/admin/flows', payload: dial(['No Answer', 'busy', 'FAILED', 'canceled', 'completed']) });
  t.equal(ok.statusCode, 201, ok.body);
  t.same(ok.json().rules[0].when.dialCallStatus, ['No Answer', 'busy', 'FAILED', 'canceled', 'completed']);
  const sim = await admin({
    method: 'POST',
    url: '/admin/flows/retry/simulate',
    payload: { endpoint: 'dial-whom', params: { CallSid: 'c1', DialCallStatus: 'no-answer', DialWhomNumber: '09812345679' } },
  });
  t.equal(sim.json().matchedRule, 'missed');
});

t.test('a PUT waiting on a concurrent change of the flow audits what that change left as its before', async (t) => {
  const { admin, db } = await buildTestApp(t);
  const flow = (name: string) => ({ name, type: 'switch', rules: [], otherwise: { select: 'a' }, onError: { select: 'a' } });
  t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: { slug: 'menu', ...flow('One') } })).statusCode, 201);
  // Another writer has changed the flow and not yet committed (as a concurrent PUT holds its row).
  const other = await db.pool.connect();
  await other.query('BEGIN');
  await other.query(`UPDATE flows SET name = 'Two' WHERE slug = 'menu'`);
  const put = admin({ method: 'PUT', url: '/admin/flows/menu', payload: flow('Three') });
  await lockWaiters(t, db.pool); // the PUT waits for that change: the race this test is about
  await other.query('COMMIT');
  other.release();
  t.equal((await put).statusCode, 200);
  const audit = (await admin({ method: 'GET', url: '/admin/audit?entity=flow&entityId=menu' })).json();
  t.match(audit.items[0], { action: 'replace', before: { name: 'Two' }, after: { name: 'Three' } });
});

t.test(
  'a digits condition with other than keypad keys (the quotes Exotel wraps them in, a space, a word) is 400 naming it, as it could never hold',
  async (t) => {
    const { admin } = await buildTestApp(t);
    const flow = (digits: unknown) => ({
      slug: 'menu',
      name: 'IVR',
      type: 'switch',
      rules: [
        { name: 'nine', when: { digits: { equals: '9' } }, then: { select: 'x' } },
        { name: 'sales', when: { digits }, then: { select: 'sales' } },
      ],
      otherwise: { select: 'main' },
      onError: { select: 'main' },
    });
    // Exotel sends digits=%221%22 ("1"); exoroute compares them without the quotes, so '"1"' never held.
    const cases: Array<[unknown, string, string]> = [
      [{ equals: '"1"' }, 'body/rules/1/when/digits/equals', "write '1'"],
      [{ in: ['1', ' 2'] }, 'body/rules/1/when/digits/in/1', "write '2'"],
      [{ prefix: 'one' }, 'body/rules/1/when/digits/prefix', '0-9, * and #'],
    ];
    for (const [digits, field, hint] of cases) {
      const res = await admin({ method: 'POST', url: '/admin/flows', payload: flow(digits) });
      t.equal(res.statusCode, 400, JSON.stringify(digits));
      t.match(res.json().message, `${field}: `);
      t.match(res.json().message, hint);
    }
    t.equal((await admin({ method: 'GET', url: '/admin/flows' })).json().length, 0, 'nothing stored');
    const ok = await admin({ method: 'POST', url: '/admin/flows', payload: flow({ in: ['1', '12#', '*9', ''] }) });
    t.equal(ok.statusCode, 201, ok.body);
    const sim = await admin({ method: 'POST', url: '/admin/flows/menu/simulate', payload: { endpoint: 'switch', params: { CallSid: 'c', digits: '"12#"' } } });
    t.match(sim.json(), { matchedRule: 'sales', trace: [{ result: 'not matched' }, { result: 'matched' }] });
  },
);

t.test('a passthru action with a url and branch B is 400: a url is answered 200, never the 302 of branch B', async (t) => {
  const { admin } = await buildTestApp(t);
  const url = 'https://my.exotel.com/exoml/start/123';
  for (const [where, over, field] of [
    ['a rule', { rules: [{ name: 'late', when: {}, then: { branch: 'B', url } }] }, 'body/rules/0/then/branch'],
    ['otherwise', { otherwise: { branch: 'B', url } }, 'body/otherwise/branch'],
    ['onError', { onError: { branch: 'B', url } }, 'body/onError/branch'],
  ] as const) {
    const res = await admin({ method: 'POST', url: '/admin/flows', payload: passthru({ rules: [], ...over }) });
    t.equal(res.statusCode, 400, `${where}: ${res.body}`);
    t.match(res.json().message, `${field}: `, where);
    t.match(res.json().message, /200/, where);
  }
  t.equal((await admin({ method: 'GET', url: '/admin/flows' })).json().length, 0, 'nothing stored');
  const ok = await admin({ method: 'POST', url: '/admin/flows', payload: passthru({ rules: [], otherwise: { branch: 'A', url } }) });
  t.equal(ok.statusCode, 201, ok.body);
});

t.test('a customField value that is empty or has spaces around it is 400 naming it: a CustomField is read trimmed, and an empty one is none', async (t) => {
  const { admin } = await buildTestApp(t);
  const flow = (customField: unknown) => ({
    slug: 'api',
    name: 'API calls',
    type: 'switch',
    rules: [{ name: 'campaign', when: { customField }, then: { select: 'campaign' } }],
    otherwise: { select: 'main' },
    onError: { select: 'main' },
  });
  const cases: Array<[unknown, string]> = [
    [{ equals: '' }, 'body/rules/0/when/customField/equals'],
    [{ equals: 'diwali ' }, 'body/rules/0/when/customField/equals'],
    [{ in: ['diwali', ' holi'] }, 'body/rules/0/when/customField/in/1'],
  ];
  for (const [customField, field] of cases) {
    const res = await admin({ method: 'POST', url: '/admin/flows', payload: flow(customField) });
    t.equal(res.statusCode, 400, `${JSON.stringify(customField)}: ${res.body}`);
    t.match(res.json().message, `${field}: `);
  }
  t.equal((await admin({ method: 'GET', url: '/admin/flows' })).json().length, 0, 'nothing stored');
  t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: flow({ in: ['diwali sale', 'holi'] }) })).statusCode, 201);
  const sim = await admin({
    method: 'POST',
    url: '/admin/flows/api/simulate',
    payload: { endpoint: 'switch', params: { CallSid: 'c', CustomField: ' diwali sale ' } },
  });
  t.equal(sim.json().matchedRule, 'campaign');
});

t.test(
  "a switch flow's select with spaces around it is 400 naming it: the answer would carry them, and the Switch-case applet's case never matches",
  async (t) => {
    const { admin, app } = await buildTestApp(t);
    const flow = (over: Record<string, unknown>) => ({
      slug: 'menu',
      name: 'Menu',
      type: 'switch',
      rules: [{ name: 'sales', when: { digits: { equals: '1' } }, then: { select: 'sales' } }],
      otherwise: { select: 'main' },
      onError: { select: 'main' },
      ...over,
    });
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ rules: [{ when: { digits: { equals: '1' } }, then: { select: ' sales ' } }] }, 'body/rules/0/then/select', 'sales'],
      [{ otherwise: { select: 'main\t' } }, 'body/otherwise/select', 'main'],
      [{ onError: { select: '  ' } }, 'body/onError/select', ''],
    ];
    for (const [over, field, fixed] of cases) {
      const res = await admin({ method: 'POST', url: '/admin/flows', payload: flow(over) });
      t.equal(res.statusCode, 400, `${JSON.stringify(over)}: ${res.body}`);
      t.match(res.json().message, `${field}: `);
      if (fixed) t.match(res.json().message, `write '${fixed}'`);
    }
    t.equal((await admin({ method: 'GET', url: '/admin/flows' })).json().length, 0, 'nothing stored');
    t.equal(
      (await admin({ method: 'POST', url: '/admin/flows', payload: flow({ otherwise: { select: 'main menu' } }) })).statusCode,
      201,
      'spaces inside are kept',
    );
    for (let i = 0; i < 300 && !app.rules.current?.flows.has('menu'); i++) await new Promise((r) => setTimeout(r, 10));
    const res = await app.inject({ method: 'GET', url: '/exotel/switch/menu?CallSid=sel1&digits=%221%22' });
    t.equal(res.body, '{"select":"sales"}');
  },
);

t.test('a PUT of the flow as GET shows it (read-only fields left out) changes nothing: same updatedAt, no audit entry; a real change still does', async (t) => {
  const { admin } = await buildTestApp(t);
  await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } });
  await admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'support', name: 'Support' } });
  t.equal(
    (
      await admin({
        method: 'POST',
        url: '/admin/flows',
        payload: passthru({ rules: [...passthru().rules, { when: { calledNumber: ['08047112233'] }, then: { branch: 'B' } }] }),
      })
    ).statusCode,
    201,
  );
  const trail = async () => (await admin({ method: 'GET', url: '/admin/audit?entity=flow&entityId=inbound' })).json().items.length;
  const stored = (await admin({ method: 'GET', url: '/admin/flows/inbound' })).json();
  const { slug: _slug, createdAt: _c, updatedAt: _u, exotelUrls: _e, ...body } = stored;
  const entries = await trail();
  for (let i = 0; i < 2; i++) {
    const res = await admin({ method: 'PUT', url: '/admin/flows/inbound', payload: body });
    t.equal(res.statusCode, 200, res.body);
    t.same(res.json(), stored, 'answered the flow as it is, updatedAt included');
  }
  t.equal(await trail(), entries, 'no audit entry for a PUT that changed nothing');
  t.same((await admin({ method: 'GET', url: '/admin/flows/inbound' })).json().updatedAt, stored.updatedAt);
  const changed = await admin({ method: 'PUT', url: '/admin/flows/inbound', payload: { ...body, name: 'Main line 2' } });
  t.equal(changed.json().name, 'Main line 2');
  t.equal(await trail(), entries + 1, 'a real change is audited');
});

t.test("a PUT of GET's whole answer is one 400 naming every read-only field it carries, so one fix makes it work", async (t) => {
  const { admin } = await buildTestApp(t);
  const flow = passthru({ rules: [] });
  t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: flow })).statusCode, 201);
  const stored = (await admin({ method: 'GET', url: '/admin/flows/inbound' })).json();
  const res = await admin({ method: 'PUT', url: '/admin/flows/inbound', payload: stored });
  t.equal(res.statusCode, 400);
  t.match(
    res.json().message,
    /^body\/slug: unknown field; remove it \(the fields here are name, type, mode, rules, otherwise, onError\); remove createdAt, updatedAt, exotelUrls too$/,
  );
  const one = await admin({ method: 'PUT', url: '/admin/flows/inbound', payload: { ...flow, slug: undefined, colour: 'red' } });
  t.match(one.json().message, /^body\/colour: unknown field; remove it \(the fields here are [^)]*\)$/, 'one unknown field: named alone');
});
