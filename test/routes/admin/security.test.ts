/**
 * The admin API against the OWASP API Security Top 10 (2023), one group per item that applies.
 * Where a check is about "every route", the routes come from the app's own OpenAPI document, so a
 * route added later is covered (or the test names the fixture it needs).
 *
 * Not covered here: API6 (no business flow that can be automated against the product: there is
 * no sign-up, purchase or messaging), API7 (exoroute fetches no URL a client gives), API10 (it
 * consumes no third-party API).
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { ADMIN_KEY, buildTestApp } from '../../helper.js';
import { BOOTSTRAP_KEY_ID, createKey, hashKey } from '../../../src/store/api-keys.js';
import type { Database } from '../../../src/store/database.js';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  maximum?: number;
  format?: string;
  pattern?: string;
}
interface Operation {
  operationId: string;
  security?: Record<string, string[]>[];
  parameters?: { in: string; name: string; schema: JsonSchema }[];
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { content?: Record<string, { schema: JsonSchema }> }>;
}
interface Op {
  method: Method;
  path: string;
  op: Operation;
}

const WRITE_METHODS: Method[] = ['POST', 'PUT', 'PATCH', 'DELETE'];

function operations(app: FastifyInstance): Op[] {
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, Operation>> };
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({ method: method.toUpperCase() as Method, path, op })),
  );
}
const adminOps = (app: FastifyInstance) => operations(app).filter((o) => o.path.startsWith('/admin/'));

/** A concrete URL for a documented path; the values satisfy the parameter schemas. */
function urlOf(o: Op): string {
  return o.path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const schema = o.op.parameters?.find((p) => p.in === 'path' && p.name === name)?.schema ?? {};
    if (schema.format === 'uuid') return '00000000-0000-4000-8000-00000000abcd';
    if (schema.pattern?.startsWith('^[0-9]')) return '1';
    return name === 'number' ? '09812345678' : 'sec';
  });
}

/** Every property name a schema can have, through unions, compositions and array items. */
function propertyNames(schema: JsonSchema | undefined): Set<string> {
  const names = new Set<string>();
  const walk = (s: JsonSchema | undefined) => {
    if (!s) return;
    for (const name of Object.keys(s.properties ?? {})) names.add(name);
    for (const sub of [...(s.anyOf ?? []), ...(s.oneOf ?? []), ...(s.allOf ?? []), ...(s.items ? [s.items] : [])]) walk(sub);
  };
  walk(schema);
  return names;
}
const jsonSchema = (content: Record<string, { schema: JsonSchema }> | undefined) => content?.['application/json']?.schema;

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function viewerKey(db: Database, name = 'viewer'): Promise<{ id: string; key: string }> {
  return createKey(db.prisma, { apiKeyId: BOOTSTRAP_KEY_ID }, { name, role: 'viewer' });
}

const retryAfterSeconds = (res: LightMyRequestResponse) => Number(res.headers['retry-after']);

t.test('API1 broken object level authorization: key objects never expose a secret, and the bootstrap key is out of reach', async (t) => {
  // exoroute is single-tenant: every key reads every routing object by design. What an object-level
  // check must still hold: key objects carry no secret (not the key, not its hash) to anyone, ids in
  // paths are checked before any lookup, and the key the service depends on cannot be revoked.
  const { app, admin, db } = await buildTestApp(t);
  const created = await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'ops', role: 'viewer' } });
  t.equal(created.statusCode, 201);
  const { id, key } = created.json() as { id: string; key: string };
  const { hash } = await db.prisma.apiKey.findUniqueOrThrow({ where: { id } });

  const answers = [
    await admin({ method: 'GET', url: '/admin/api-keys' }),
    await app.inject({ method: 'GET', url: '/admin/api-keys', headers: bearer(key) }),
    await admin({ method: 'DELETE', url: `/admin/api-keys/${id}` }),
    await admin({ method: 'GET', url: '/admin/audit?entity=api-key' }),
  ];
  for (const res of answers) {
    t.equal(res.statusCode, 200, String(res.raw.req.url));
    t.notOk(res.body.includes(key), `${res.raw.req.url} never shows a key`);
    t.notOk(res.body.includes(hash), `${res.raw.req.url} never shows a key hash`);
    t.notOk(res.body.includes(hashKey(ADMIN_KEY)), `${res.raw.req.url} never shows the bootstrap hash`);
  }
  t.notOk(JSON.stringify(answers[0]!.json()[0]).includes('"hash"'), 'no hash field at all');

  const bootstrap = await admin({ method: 'DELETE', url: `/admin/api-keys/${BOOTSTRAP_KEY_ID}` });
  t.equal(bootstrap.statusCode, 409, 'the bootstrap key cannot be revoked through the API');
  t.equal((await admin({ method: 'GET', url: '/admin/api-keys' })).statusCode, 200, 'and still works');

  for (const url of ['/admin/api-keys/..%2F..%2Fvip-lists', '/admin/api-keys/1%20OR%201=1']) {
    const res = await admin({ method: 'DELETE', url });
    t.equal(res.statusCode, 400, `${url}: a malformed id is refused before any lookup`);
    t.match(res.json().message, /params\/id/);
  }
  for (const url of ['/admin/cdrs/1%20OR%201=1', '/admin/vip-lists/..%2Fschedules']) {
    t.equal((await admin({ method: 'GET', url })).statusCode, 400, url);
  }
});

t.test('API2 broken authentication', async (t) => {
  t.test('failed authentications from one address are limited: 429 with Retry-After, then even a right key waits', async (t) => {
    const { app, db } = await buildTestApp(t, { ADMIN_AUTH_FAILURES_PER_MINUTE: '3' });
    const from = (remoteAddress: string, headers: Record<string, string> = {}) =>
      app.inject({ method: 'GET', url: '/admin/vip-lists', remoteAddress, headers });
    const revoked = await viewerKey(db, 'revoked');
    await db.prisma.apiKey.update({ where: { id: revoked.id }, data: { revokedAt: new Date() } });

    // Three different ways to fail: no key, an unknown key, a revoked key.
    for (const headers of [{}, bearer('exr_guess-0000000000000000000000000'), bearer(revoked.key)]) {
      const res = await from('192.0.2.10', headers);
      t.equal(res.statusCode, 401, JSON.stringify(headers));
    }
    const locked = await from('192.0.2.10', bearer(ADMIN_KEY));
    t.equal(locked.statusCode, 429, 'locked out: a right key is not even checked');
    t.match(locked.json(), { statusCode: 429, error: 'Too Many Requests', message: /failed authentications/ });
    t.ok(retryAfterSeconds(locked) >= 1 && retryAfterSeconds(locked) <= 60, `Retry-After ${locked.headers['retry-after']}`);
    t.equal((await from('192.0.2.10', bearer('exr_guess-1111111111111111111111111'))).statusCode, 429, 'guesses get 429, not 401');

    t.equal((await from('198.51.100.7', bearer(ADMIN_KEY))).statusCode, 200, 'another address is not affected');
    t.equal((await from('198.51.100.7', bearer('exr_nope'))).statusCode, 401, 'and has a count of its own');
  });

  t.test('successful authentications do not count as failures', async (t) => {
    const { app } = await buildTestApp(t, { ADMIN_AUTH_FAILURES_PER_MINUTE: '2' });
    for (let i = 0; i < 10; i++) {
      t.equal((await app.inject({ method: 'GET', url: '/admin/audit', headers: bearer(ADMIN_KEY) })).statusCode, 200);
    }
    t.equal((await app.inject({ method: 'GET', url: '/admin/audit', headers: bearer('exr_nope') })).statusCode, 401);
  });

  t.test('a revoked key is 401 at once, and creating and revoking it are audited with the acting key', async (t) => {
    const { app, admin } = await buildTestApp(t);
    const created = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'temp', role: 'admin' } })).json() as { id: string; key: string };
    t.equal((await app.inject({ method: 'GET', url: '/admin/flows', headers: bearer(created.key) })).statusCode, 200);
    t.equal((await admin({ method: 'DELETE', url: `/admin/api-keys/${created.id}` })).statusCode, 200);
    const after = await app.inject({ method: 'GET', url: '/admin/flows', headers: bearer(created.key) });
    t.equal(after.statusCode, 401);
    t.match(after.json().message, /revoked/);
    const audit = (await admin({ method: 'GET', url: `/admin/audit?entity=api-key&entityId=${created.id}` })).json();
    t.match(audit.items, [
      { action: 'revoke', apiKeyId: BOOTSTRAP_KEY_ID, before: { revokedAt: null }, after: { revokedAt: String } },
      { action: 'create', apiKeyId: BOOTSTRAP_KEY_ID, before: null, after: { name: 'temp', role: 'admin' } },
    ]);
    t.equal(audit.items.length, 2);
  });

  t.test('keys are only accepted as a Bearer token, whole', async (t) => {
    const { app } = await buildTestApp(t);
    const cases = [
      `Basic ${Buffer.from(`x:${ADMIN_KEY}`).toString('base64')}`,
      `Bearer ${ADMIN_KEY.slice(0, -1)}`,
      `Bearer ${ADMIN_KEY}x`,
      `Bearer ${ADMIN_KEY.toUpperCase()}`,
      ADMIN_KEY,
      `Bearer ${ADMIN_KEY} extra`,
    ];
    for (const authorization of cases) {
      t.equal((await app.inject({ method: 'GET', url: '/admin/audit', headers: { authorization } })).statusCode, 401, authorization);
    }
    t.equal((await app.inject({ method: 'GET', url: `/admin/audit?token=${ADMIN_KEY}` })).statusCode, 401, 'not from the query string');
  });
});

/** A valid body for every admin write route with one (in this order: later ones need earlier objects). */
const WRITE_FIXTURES: { route: string; url: string; body: unknown }[] = [
  { route: 'POST /admin/api-keys', url: '/admin/api-keys', body: { name: 'sec', role: 'viewer' } },
  { route: 'POST /admin/vip-lists', url: '/admin/vip-lists', body: { slug: 'sec', name: 'Sec' } },
  { route: 'PATCH /admin/vip-lists/{slug}', url: '/admin/vip-lists/sec', body: { description: 'changed' } },
  { route: 'POST /admin/vip-lists/{slug}/entries', url: '/admin/vip-lists/sec/entries', body: { number: '09812345678' } },
  { route: 'POST /admin/vip-lists/{slug}/entries', url: '/admin/vip-lists/sec/entries', body: [{ number: '09812345679' }, { number: '09812345670' }] },
  { route: 'POST /admin/schedules', url: '/admin/schedules', body: { slug: 'sec', name: 'Sec', weekly: [{ day: 'mon', open: '09:00', close: '18:00' }] } },
  { route: 'PUT /admin/schedules/{slug}', url: '/admin/schedules/sec', body: { name: 'Sec', timezone: 'Asia/Kolkata', weekly: [] } },
  { route: 'PATCH /admin/schedules/{slug}', url: '/admin/schedules/sec', body: { exceptions: [{ date: '2026-12-25', closed: true }] } },
  {
    route: 'POST /admin/dial-groups',
    url: '/admin/dial-groups',
    body: { slug: 'sec', name: 'Sec', strategy: 'sequential', members: [{ number: '09812345678' }] },
  },
  { route: 'PUT /admin/dial-groups/{slug}', url: '/admin/dial-groups/sec', body: { name: 'Sec', strategy: 'random', members: [{ number: '09812345678' }] } },
  { route: 'PATCH /admin/dial-groups/{slug}', url: '/admin/dial-groups/sec', body: { strategy: 'sequential' } },
  { route: 'PATCH /admin/dial-groups/{slug}/members/{number}', url: '/admin/dial-groups/sec/members/09812345678', body: { active: false } },
  { route: 'PUT /admin/agents/{number}/availability', url: '/admin/agents/09812345678/availability', body: { status: 'away', reason: 'sec' } },
  { route: 'PUT /admin/schedules/{slug}/override', url: '/admin/schedules/sec/override', body: { open: false, reason: 'sec' } },
  {
    route: 'POST /admin/flows',
    url: '/admin/flows',
    body: { slug: 'sec', name: 'Sec', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } },
  },
  {
    route: 'PUT /admin/flows/{slug}',
    url: '/admin/flows/sec',
    body: { name: 'Sec', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'A' } },
  },
  {
    route: 'POST /admin/flows/{slug}/simulate',
    url: '/admin/flows/sec/simulate',
    body: { endpoint: 'passthru', params: { CallSid: 'sec-1', CallFrom: '09812345678' } },
  },
];

t.test('API3 broken object property level authorization: no mass assignment on any admin write route', async (t) => {
  const { app, admin, db } = await buildTestApp(t);
  const writes = adminOps(app).filter((o) => o.op.requestBody);
  t.ok(writes.length >= WRITE_FIXTURES.length - 1, `${writes.length} admin routes take a body`);

  t.test('every admin route that takes a body has a fixture here', async (t) => {
    const covered = new Set(WRITE_FIXTURES.map((f) => f.route));
    for (const o of writes) t.ok(covered.has(`${o.method} ${o.path}`), `${o.method} ${o.path} (add it to WRITE_FIXTURES)`);
  });

  t.test('a server-controlled or unknown field is 400 naming it; nothing is written; the same body without it is accepted', async (t) => {
    for (const fixture of WRITE_FIXTURES) {
      const [method, path] = fixture.route.split(' ') as [Method, string];
      const o = writes.find((w) => w.method === method && w.path === path);
      if (!o) {
        t.fail(`${fixture.route} is not in the OpenAPI document`);
        continue;
      }
      // What the answer carries but the request may not: ids, timestamps, counts, key material.
      const accepted = propertyNames(jsonSchema(o.op.requestBody?.content));
      const answered = Object.entries(o.op.responses)
        .filter(([status]) => status.startsWith('2'))
        .flatMap(([, r]) => [...propertyNames(jsonSchema(r.content))]);
      const forbidden = [...new Set(['id', 'apiKeyId', ...answered])].filter((f) => !accepted.has(f));
      t.ok(forbidden.length > 0, `${fixture.route}: fields to try: ${forbidden.join(', ')}`);
      const auditBefore = await db.prisma.auditEntry.count();
      for (const field of forbidden) {
        const body = Array.isArray(fixture.body)
          ? fixture.body.map((e, i) => (i === 0 ? { ...e, [field]: 'x' } : e))
          : { ...(fixture.body as object), [field]: 'x' };
        const res = await admin({ method, url: fixture.url, payload: body });
        t.equal(res.statusCode, 400, `${fixture.route} with ${field}`);
        const named = `body/${Array.isArray(fixture.body) ? '0/' : ''}${field}: unknown field; remove it`;
        t.ok(String(res.json().message).startsWith(named), `${fixture.route} names ${field}`, { message: res.json().message });
      }
      t.equal(await db.prisma.auditEntry.count(), auditBefore, `${fixture.route}: the refused requests wrote nothing`);
      const ok = await admin({ method, url: fixture.url, payload: fixture.body });
      t.ok(ok.statusCode >= 200 && ok.statusCode < 300, `${fixture.route} without the extra field: ${ok.statusCode} ${ok.body.slice(0, 200)}`);
    }
  });

  t.test('nested unknown fields are refused too', async (t) => {
    const cases: [string, string, unknown, string][] = [
      [
        'POST',
        '/admin/schedules',
        { slug: 'n1', name: 'N', weekly: [{ day: 'mon', open: '09:00', close: '18:00', createdAt: 'x' }] },
        'body/weekly/0/createdAt',
      ],
      [
        'POST',
        '/admin/dial-groups',
        { slug: 'n2', name: 'N', strategy: 'sequential', members: [{ number: '09812345678', lastDialedAt: 'x' }] },
        'body/members/0/lastDialedAt',
      ],
      [
        'POST',
        '/admin/flows',
        {
          slug: 'n3',
          name: 'N',
          type: 'passthru',
          rules: [{ name: 'r', when: { isAdmin: true }, then: { branch: 'A' } }],
          otherwise: { branch: 'A' },
          onError: { branch: 'A' },
        },
        'body/rules/0/when/isAdmin',
      ],
    ];
    for (const [method, url, payload, path] of cases) {
      const res = await admin({ method, url, payload });
      t.equal(res.statusCode, 400, path);
      t.match(res.json().message, new RegExp(`^${path}: unknown field; remove it \\(the fields here are `));
    }
  });

  t.test('prototype pollution through JSON is refused', async (t) => {
    for (const raw of [
      '{"name":"p","role":"viewer","__proto__":{"role":"admin"}}',
      '{"name":"p","role":"viewer","constructor":{"prototype":{"role":"admin"}}}',
    ]) {
      const res = await admin({ method: 'POST', url: '/admin/api-keys', payload: raw, headers: { 'content-type': 'application/json' } });
      t.equal(res.statusCode, 400, raw);
    }
    t.equal(await db.prisma.apiKey.count({ where: { name: 'p' } }), 0);
  });

  t.test("there is no route to change a key's role: a key is created with one and revoked", async (t) => {
    const own = await viewerKey(db);
    for (const method of ['PATCH', 'PUT', 'POST'] as const) {
      const res = await admin({ method, url: `/admin/api-keys/${own.id}`, payload: { role: 'admin' } });
      t.equal(res.statusCode, 405, `${method} /admin/api-keys/:id`);
      t.equal(res.headers.allow, 'DELETE', 'the path takes DELETE only');
    }
    t.equal((await db.prisma.apiKey.findUniqueOrThrow({ where: { id: own.id } })).role, 'viewer');
  });
});

t.test('API4 unrestricted resource consumption', async (t) => {
  t.test('a body over ADMIN_BODY_LIMIT_BYTES is 413; the VIP bulk upsert keeps its own, larger limit', async (t) => {
    const { admin } = await buildTestApp(t, { ADMIN_BODY_LIMIT_BYTES: '2048' });
    const big = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'big', name: 'x'.repeat(3000) } });
    t.equal(big.statusCode, 413);
    t.match(big.json(), { statusCode: 413, error: 'Payload Too Large' });
    t.equal(big.json().message, "the request body is larger than this route's limit of 2 KiB (2048 bytes)", 'the 413 names the limit');
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'big', name: 'Big' } })).statusCode, 201);
    const entries = Array.from({ length: 100 }, (_, i) => ({ number: `98${String(i).padStart(8, '0')}`, note: 'bulk import' }));
    t.ok(JSON.stringify(entries).length > 2048);
    const bulk = await admin({ method: 'POST', url: '/admin/vip-lists/big/entries', payload: entries });
    t.equal(bulk.statusCode, 200, bulk.body.slice(0, 200));
    t.same(bulk.json(), { inserted: 100, updated: 0 });
  });

  t.test('a VIP bulk upsert over 16 MiB is 413 naming the limit and suggesting to split the array', async (t) => {
    const { admin } = await buildTestApp(t);
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'big', name: 'Big' } })).statusCode, 201);
    const limit = 16 * 1024 * 1024;
    const entry = JSON.stringify({ number: '9800000000', note: 'n'.repeat(2000) });
    const payload = `[${Array(Math.ceil(limit / (entry.length + 1)))
      .fill(entry)
      .join(',')}]`;
    t.ok(payload.length > limit && payload.length <= limit + entry.length + 2, 'just over 16 MiB');
    const res = await admin({ method: 'POST', url: '/admin/vip-lists/big/entries', payload, headers: { 'content-type': 'application/json' } });
    t.equal(res.statusCode, 413);
    t.same(res.json(), {
      statusCode: 413,
      error: 'Payload Too Large',
      message: "the request body is larger than this route's limit of 16 MiB (16777216 bytes): split the array over several requests",
    });
  });

  t.test(
    'a VIP bulk upsert over 16 MiB as CSV, or with mode=replace, is 413 with a hint that fits it: a CSV split by rows with its header, a replace not split at all',
    async (t) => {
      const { admin } = await buildTestApp(t);
      t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'big', name: 'Big' } })).statusCode, 201);
      const limit = 16 * 1024 * 1024;
      const note = 'n'.repeat(2000);
      const row = `9800000000,${note}\n`;
      const csv = `number,note\n${row.repeat(Math.ceil(limit / row.length))}`;
      const entry = JSON.stringify({ number: '9800000000', note });
      const json = `[${Array(Math.ceil(limit / (entry.length + 1)))
        .fill(entry)
        .join(',')}]`;
      const prefix = "the request body is larger than this route's limit of 16 MiB (16777216 bytes): ";
      const replace =
        'a list is replaced by one request (split over several, each would remove what the others sent): leave out what the list does not need (long notes), or send the entries in parts without mode=replace and remove those no longer wanted with DELETE /admin/vip-lists/{slug}/entries/{number}';
      for (const [query, type, payload, hint] of [
        ['', 'text/csv', csv, 'split the export over several requests by rows, each part starting with the header row'],
        ['?mode=merge', 'text/csv; charset=windows-1252', csv, 'split the export over several requests by rows, each part starting with the header row'],
        ['?mode=replace', 'application/json', json, replace],
        ['?mode=replace&dryRun=true', 'text/csv', csv, replace],
      ] as const) {
        const res = await admin({ method: 'POST', url: `/admin/vip-lists/big/entries${query}`, payload, headers: { 'content-type': type } });
        t.equal(res.statusCode, 413, `${type} ${query}`);
        t.equal(res.json().message, prefix + hint, `${type} ${query}`);
      }
      t.equal((await admin({ method: 'GET', url: '/admin/vip-lists/big' })).json().entryCount, 0, 'nothing written');
    },
  );

  t.test('the default admin body limit is 1 MiB', async (t) => {
    const { admin } = await buildTestApp(t);
    const payload = { slug: 'big', name: 'Big', weekly: [], exceptions: [], pad: 'x'.repeat(1024 * 1024) };
    t.equal((await admin({ method: 'POST', url: '/admin/schedules', payload })).statusCode, 413);
  });

  t.test('more than ADMIN_RATE_LIMIT_PER_MINUTE requests with one key are 429 with Retry-After; other keys, callbacks and ops are not limited', async (t) => {
    const { app, db } = await buildTestApp(t, { ADMIN_RATE_LIMIT_PER_MINUTE: '5' });
    const other = await viewerKey(db);
    const get = (key: string) => app.inject({ method: 'GET', url: '/admin/vip-lists', headers: bearer(key) });
    for (let i = 0; i < 5; i++) {
      const res = await get(ADMIN_KEY);
      t.equal(res.statusCode, 200);
      t.equal(res.headers['x-ratelimit-remaining'], String(4 - i));
    }
    const flooded = await get(ADMIN_KEY);
    t.equal(flooded.statusCode, 429);
    t.match(flooded.json(), { statusCode: 429, error: 'Too Many Requests', message: /more than 5 admin requests a minute/ });
    t.ok(retryAfterSeconds(flooded) >= 1 && retryAfterSeconds(flooded) <= 60, `Retry-After ${flooded.headers['retry-after']}`);
    t.equal(
      (await app.inject({ method: 'POST', url: '/admin/vip-lists', headers: bearer(ADMIN_KEY), payload: { slug: 'x', name: 'X' } })).statusCode,
      429,
      'writes too',
    );
    t.equal((await get(other.key)).statusCode, 200, 'another key has its own budget');

    for (let i = 0; i < 12; i++) {
      for (const url of ['/healthz', '/readyz', '/metrics', '/exotel/passthru/none?CallSid=flood', '/docs/', '/openapi.json']) {
        const res = await app.inject({ method: 'GET', url });
        t.not(res.statusCode, 429, `${url} #${i}`);
        t.notOk(res.headers['x-ratelimit-limit'], `${url} carries no rate limit`);
      }
    }
  });

  t.test('every list route caps its page size', async (t) => {
    const { app, admin } = await buildTestApp(t);
    const paged = adminOps(app).filter((o) => o.method === 'GET' && o.op.parameters?.some((p) => p.in === 'query' && p.name === 'limit'));
    t.ok(paged.length >= 3, paged.map((o) => o.path).join(', '));
    for (const o of paged) {
      const max = o.op.parameters!.find((p) => p.name === 'limit')!.schema.maximum;
      t.ok(max !== undefined && max <= 1000, `${o.path}: limit at most ${max}`);
      const res = await admin({ method: 'GET', url: `${urlOf(o)}?limit=${max! + 1}` });
      t.equal(res.statusCode, 400, `${o.path}?limit=${max! + 1}`);
      t.match(res.json().message, /querystring\/limit/);
    }
  });
});

t.test('API5 broken function level authorization: on every admin route', async (t) => {
  // Many failed authentications on purpose: lift the lockout so every route is reached.
  const { app, db } = await buildTestApp(t, { ADMIN_AUTH_FAILURES_PER_MINUTE: '10000' });
  const ops = adminOps(app);
  const viewer = await viewerKey(db);
  t.ok(ops.length >= 30, `${ops.length} admin operations`);

  t.test('every admin route is documented as needing the bearer key', async (t) => {
    for (const o of ops) t.same(o.op.security, [{ bearer: [] }], `${o.method} ${o.path}`);
  });

  t.test('no key, a malformed header or an unknown key: 401 on every admin route', async (t) => {
    for (const o of ops) {
      for (const headers of [{}, { authorization: 'Bearer' }, bearer('exr_unknown-key-0123456789')]) {
        const res = await app.inject({ method: o.method, url: urlOf(o), headers, ...(o.method === 'GET' || o.method === 'DELETE' ? {} : { payload: {} }) });
        t.equal(res.statusCode, 401, `${o.method} ${o.path} ${JSON.stringify(headers)}`);
      }
    }
  });

  t.test(
    'every 401 says how to authenticate: WWW-Authenticate: Bearer (RFC 9110 §11.6.1), error="invalid_token" for a key that is none (RFC 6750 §3)',
    async (t) => {
      for (const o of ops) {
        const send = (headers: Record<string, string>) =>
          app.inject({ method: o.method, url: urlOf(o), headers, ...(o.method === 'GET' || o.method === 'DELETE' ? {} : { payload: {} }) });
        for (const headers of [{}, { 'x-api-key': ADMIN_KEY }, { authorization: `Basic ${Buffer.from(`x:${ADMIN_KEY}`).toString('base64')}` }] as Record<
          string,
          string
        >[]) {
          const res = await send(headers);
          t.equal(res.statusCode, 401, `${o.method} ${o.path} ${JSON.stringify(headers)}`);
          t.equal(res.headers['www-authenticate'], 'Bearer realm="exoroute admin"', `${o.method} ${o.path} ${JSON.stringify(headers)}: the challenge`);
        }
        const wrong = await send(bearer('exr_unknown-key-0123456789'));
        t.equal(wrong.statusCode, 401);
        t.equal(wrong.headers['www-authenticate'], 'Bearer realm="exoroute admin", error="invalid_token"', `${o.method} ${o.path}: an unknown key`);
      }
      const revoked = await viewerKey(db, 'revoked');
      t.equal((await app.inject({ method: 'DELETE', url: `/admin/api-keys/${revoked.id}`, headers: bearer(ADMIN_KEY) })).statusCode, 200);
      const res = await app.inject({ method: 'GET', url: '/admin/flows', headers: bearer(revoked.key) });
      t.equal(res.statusCode, 401);
      t.equal(res.headers['www-authenticate'], 'Bearer realm="exoroute admin", error="invalid_token"', 'a revoked key');
      const forbidden = await app.inject({ method: 'POST', url: '/admin/vip-lists', headers: bearer(viewer.key), payload: { slug: 'v', name: 'V' } });
      t.equal(forbidden.statusCode, 403);
      t.equal(forbidden.headers['www-authenticate'], undefined, 'a 403 (a known key that may not write) carries no challenge');
    },
  );

  t.test('a viewer key gets 403 on every admin write route and changes nothing', async (t) => {
    // simulate is a POST that changes nothing: a viewer may run it (test/routes/admin/api-keys.test.ts).
    const writes = ops.filter((o) => WRITE_METHODS.includes(o.method) && !CHANGES_NOTHING.includes(`${o.method} ${o.path}`));
    t.ok(writes.length >= 15, `${writes.length} write operations`);
    const auditBefore = await db.prisma.auditEntry.count();
    const keysBefore = await db.prisma.apiKey.count();
    for (const o of writes) {
      const body = WRITE_FIXTURES.find((f) => f.route === `${o.method} ${o.path}`)?.body;
      const res = await app.inject({
        method: o.method,
        url: urlOf(o),
        headers: bearer(viewer.key),
        ...(body === undefined ? {} : { payload: body as object }),
      });
      t.equal(res.statusCode, 403, `${o.method} ${o.path}`);
      t.match(res.json().message, /viewer key may only read/);
    }
    t.equal(await db.prisma.auditEntry.count(), auditBefore, 'no write happened');
    t.equal(await db.prisma.apiKey.count(), keysBefore, 'in particular no key was made (no escalation to admin)');
  });

  t.test('a viewer key can use every read route', async (t) => {
    for (const o of ops.filter((o) => o.method === 'GET')) {
      const res = await app.inject({ method: 'GET', url: urlOf(o), headers: bearer(viewer.key) });
      t.notOk([401, 403].includes(res.statusCode), `${o.path}: ${res.statusCode}`);
    }
  });
});

/** The only routes with a write method that a viewer key may call: they change nothing. */
const CHANGES_NOTHING = ['POST /admin/flows/{slug}/simulate'];

const HELMET_HEADERS = [
  'content-security-policy',
  'strict-transport-security',
  'x-content-type-options',
  'x-frame-options',
  'referrer-policy',
  'cross-origin-opener-policy',
];

t.test('API8 security misconfiguration', async (t) => {
  const { app, admin, db } = await buildTestApp(t);

  t.test('security headers on admin answers (also refusals), the OpenAPI document, Swagger UI and 404s', async (t) => {
    const answers: [string, LightMyRequestResponse][] = [
      ['admin 200', await admin({ method: 'GET', url: '/admin/vip-lists' })],
      ['admin 401', await app.inject({ method: 'GET', url: '/admin/vip-lists' })],
      ['admin 400', await admin({ method: 'POST', url: '/admin/vip-lists', payload: {} })],
      ['openapi.json', await app.inject({ method: 'GET', url: '/openapi.json' })],
      ['docs', await app.inject({ method: 'GET', url: '/docs/' })],
      ['404', await app.inject({ method: 'GET', url: '/nowhere' })],
    ];
    for (const [what, res] of answers) {
      for (const h of HELMET_HEADERS) t.ok(res.headers[h], `${what}: ${h}`);
      t.equal(res.headers['x-content-type-options'], 'nosniff', what);
      t.equal(res.headers['x-powered-by'], undefined, `${what}: no x-powered-by`);
    }
  });

  t.test('Swagger UI loads under its CSP: every script and stylesheet it references is served, none inline', async (t) => {
    const page = await app.inject({ method: 'GET', url: '/docs/' });
    t.equal(page.statusCode, 200);
    const csp = String(page.headers['content-security-policy']);
    const directive = (name: string) =>
      csp
        .split(';')
        .find((d) => d.trim().startsWith(`${name} `))
        ?.trim() ?? '';
    t.equal(directive('script-src'), "script-src 'self'", 'scripts only from the service itself');
    t.notMatch(csp, /upgrade-insecure-requests/, '/docs works over plain http too');
    t.match(directive('img-src'), /data:/, 'Swagger UI icons are data: URLs');

    const html = page.body;
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    t.ok(scripts.length >= 3, `${scripts.length} scripts`);
    for (const [, attrs, inline] of scripts) {
      t.match(attrs, /\bsrc="/, 'loaded from a URL');
      t.equal(inline!.trim(), '', 'no inline code (CSP would block it)');
    }
    t.notMatch(html, /\son[a-z]+=/i, 'no inline event handlers');
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    t.ok(refs.some((r) => r.endsWith('swagger-ui-bundle.js')) && refs.some((r) => r.endsWith('swagger-initializer.js')));
    for (const ref of refs) {
      t.notMatch(ref, /^(https?:)?\/\//, `${ref} is same-origin`);
      const url = new URL(ref, 'http://x/docs/').pathname;
      const res = await app.inject({ method: 'GET', url });
      t.equal(res.statusCode, 200, url);
      t.ok(res.headers['content-security-policy'], `${url} has the headers`);
      t.equal(res.headers['x-content-type-options'], 'nosniff');
      if (url.endsWith('.js')) t.match(res.headers['content-type'], /javascript/, `${url} is served as JavaScript (nosniff)`);
      if (url.endsWith('.css')) t.match(res.headers['content-type'], /text\/css/, `${url} is served as CSS (nosniff)`);
    }
    const spec = await app.inject({ method: 'GET', url: '/docs/json' });
    t.equal(spec.statusCode, 200, 'the document the UI fetches (same origin, allowed by connect-src)');
    t.equal(spec.json().info.title, 'exoroute');
  });

  t.test('callbacks stay lean: Exotel answers carry no browser headers', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/exotel/passthru/none?CallSid=lean-1' });
    t.equal(res.statusCode, 404);
    t.equal(res.headers['content-security-policy'], undefined);
    t.equal(res.headers['x-powered-by'], undefined);
  });

  t.test('a 5xx body leaks no internals', async (t) => {
    await db.pool.query('ALTER TABLE vip_lists RENAME TO vip_lists_moved');
    t.teardown(() => db.pool.query('ALTER TABLE vip_lists_moved RENAME TO vip_lists'));
    const res = await admin({ method: 'GET', url: '/admin/vip-lists' });
    t.equal(res.statusCode, 500);
    t.strictSame(res.json(), { statusCode: 500, error: 'Internal Server Error', message: 'internal error; the request was logged' });
    t.notMatch(res.body, /vip_lists|prisma|postgres|\bat |\.ts:|stack/i);
  });
});

t.test('admin answers are never stored by a browser or proxy cache: Cache-Control: no-store on every admin route', async (t) => {
  // A new key, CDRs (callers' numbers), flows' exotelUrls (the callback secret): none may be kept
  // in a browser's disk cache (Swagger UI, a shared machine) or a caching proxy in front.
  const { app, admin } = await buildTestApp(t);
  const created = await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'cached?', role: 'viewer' } });
  t.equal(created.statusCode, 201);
  t.equal(created.headers['cache-control'], 'no-store', 'the answer that holds a new key');
  for (const o of adminOps(app).filter((o) => o.method === 'GET')) {
    const res = await admin({ method: 'GET', url: urlOf(o) });
    t.equal(res.headers['cache-control'], 'no-store', `GET ${o.path}: ${res.statusCode}`);
  }
  const refused = await app.inject({ method: 'GET', url: '/admin/cdrs' });
  t.equal(refused.statusCode, 401);
  t.equal(refused.headers['cache-control'], 'no-store', 'a 401 too');
});

t.test('Cache-Control: no-store also on /admin answers no route gives: 404, 405 and a URL the router cannot decode', async (t) => {
  // README: "Every `/admin` answer (refusals too) carries `Cache-Control: no-store`". These are
  // answered before any admin route or hook: by the not-found handler and the router's own errors.
  const { app, admin } = await buildTestApp(t);
  for (const [method, url, status] of [
    ['GET', '/admin/nope', 404],
    ['GET', '/admin', 404],
    ['PUT', '/admin/cdrs', 405],
    ['GET', '/admin/flows/%E0%A4%A', 400],
  ] as const) {
    const res = await admin({ method, url });
    t.equal(res.statusCode, status, `${method} ${url}`);
    t.equal(res.headers['cache-control'], 'no-store', `${method} ${url}: ${res.statusCode} with no-store`);
  }
  const elsewhere = await app.inject({ method: 'GET', url: '/nope' });
  t.equal(elsewhere.headers['cache-control'], undefined, 'a 404 outside /admin is left as it was');
});

t.test('CORS is off, and README says so and what to do for a browser tool of your own', async (t) => {
  const { app } = await buildTestApp(t);
  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/admin/cdrs',
    headers: { origin: 'https://tools.example.com', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
  });
  t.equal(preflight.statusCode, 405, 'a preflight finds no route for OPTIONS');
  const answer = await app.inject({ method: 'GET', url: '/admin/cdrs', headers: { ...bearer(ADMIN_KEY), origin: 'https://tools.example.com' } });
  t.equal(answer.statusCode, 200);
  for (const res of [preflight, answer]) t.equal(res.headers['access-control-allow-origin'], undefined, 'no CORS header: another origin cannot read it');
  const readme = readFileSync('README.md', 'utf8');
  t.match(readme, /no CORS headers \(`Access-Control-Allow-Origin`\)/, 'README says CORS is off');
  t.match(readme, /preflight `OPTIONS` is a\s+`405`/, 'and what a preflight gets');
  t.match(readme, /Serve such a tool from the same origin/, 'and what to do instead');
});

/** Every route the app serves, from its route tree: `METHOD /path/:param` (HEAD excluded: Fastify adds it to GET). */
function servedRoutes(app: FastifyInstance): Set<string> {
  const routes = new Set<string>();
  const segments: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const at = line.search(/[├└]── /);
    if (at < 0) continue;
    const depth = at / 4;
    const m = /^(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line.slice(at + 4))!;
    segments.length = depth;
    segments[depth] = m[1]!;
    for (const method of (m[2] ?? '').split(', ').filter((x) => x && x !== 'HEAD')) routes.add(`${method} ${segments.join('')}`);
  }
  return routes;
}

t.test('API9 improper inventory management: every route the app serves is in the OpenAPI document', async (t) => {
  const { app } = await buildTestApp(t);
  const served = servedRoutes(app);
  t.ok(served.has('GET /admin/vip-lists') && served.has('DELETE /admin/api-keys/:id') && served.has('POST /exotel/passthru/:flow'), 'the route tree is read');
  const documented = new Set(operations(app).map((o) => `${o.method} ${o.path.replace(/\{(\w+)\}/g, ':$1')}`));
  // The documentation itself, and Prometheus' scrape target (plain text, not an API).
  const undocumentedOnPurpose = (r: string) => /^GET \/docs(\/|$)/.test(r) || r === 'GET /openapi.json' || r === 'GET /metrics';
  for (const route of served) {
    if (!undocumentedOnPurpose(route)) t.ok(documented.has(route), `${route} is documented`);
  }
  for (const route of documented) t.ok(served.has(route), `${route} (documented) is served`);
  const undocumentedAdmin = [...served].filter((r) => r.includes(' /admin') && !documented.has(r));
  t.same(undocumentedAdmin, [], 'no hidden admin route');
});
