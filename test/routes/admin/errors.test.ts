/**
 * Every mistake gets a message that says what to fix: a sweep over the admin API's 4xx answers.
 * From each request body's OpenAPI example (which is valid), every top-level field is broken in
 * turn — left out, of the wrong type, an unknown value — and every query parameter is given a
 * value no route accepts; each 4xx must name the field and must not be one of Ajv's bare phrasings
 * that leave the user guessing (`must be equal to constant`, `must match format "date"`, …).
 */
import t from 'tap';
import pg from 'pg';
import { parse } from 'yaml';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { renderOpenApiYaml } from '../../../src/openapi-document.js';
import { isDatabaseUnavailable, openDatabase } from '../../../src/store/database.js';
import { ADMIN_KEY, buildTestApp, capturedLog } from '../../helper.js';

const SECRET = 'sweep-secret-5a7c-0b1d';

/** Ajv's own wording, which names no allowed value, format or remedy. */
const VAGUE = [
  /must be equal to constant/,
  /must be equal to one of the allowed values/,
  /must match format "/,
  /must match pattern "/,
  /must match exactly one schema/,
  /must match a schema in anyOf/,
  /: is invalid$/,
  /^body must be/,
];

interface Media {
  schema: object;
  example?: unknown;
  examples?: Record<string, { value: unknown }>;
}
interface Operation {
  parameters?: Array<{ in: string; name: string; schema?: { type?: string } }>;
  requestBody?: { content: Record<string, Media> };
}

/** Values that break a field whose valid value is `value`: the wrong kind of JSON, and a word nobody allows. */
function breakers(value: unknown): unknown[] {
  if (typeof value === 'string') return [{ not: 'a string' }, 'no such value ✗', ''];
  if (typeof value === 'number') return ['many', -5, 1e12];
  if (typeof value === 'boolean') return ['perhaps'];
  if (Array.isArray(value)) return ['not a list', [{ bogus: true }], ['no such value ✗']];
  if (value && typeof value === 'object') return ['not an object', { bogus: true }];
  return ['no such value ✗'];
}

t.test("the admin API's 4xx answers name the field and what to fix", async (t) => {
  const { admin } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: SECRET });
  // Objects for the routes that address one: the README's, through the operations' own examples.
  const fixtures: Array<[string, unknown]> = [
    ['/admin/vip-lists', { slug: 'gold', name: 'Gold' }],
    ['/admin/vip-lists/gold/entries', { number: '09812345678' }],
    ['/admin/schedules', { slug: 'support', name: 'Support' }],
    ['/admin/dial-groups', { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09812345678' }] }],
    ['/admin/flows', { slug: 'inbound', name: 'Main', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } }],
  ];
  for (const [url, payload] of fixtures) t.equal((await admin({ method: 'POST', url, payload })).statusCode, 201, `fixture ${url}`);

  const doc = parse(await renderOpenApiYaml()) as { paths: Record<string, Record<string, Operation>> };
  const concrete = (path: string) =>
    path
      .replace('{slug}', path.includes('vip-lists') ? 'gold' : path.includes('schedules') ? 'support' : path.includes('dial-groups') ? 'sales' : 'inbound')
      .replace('{number}', '09812345678')
      .replace('{id}', '00000000-0000-4000-8000-000000000000')
      .replace('{callSid}', 'c1');

  const answers: Array<{ what: string; status: number; message: string }> = [];
  const send = async (what: string, method: string, url: string, payload?: unknown) => {
    const res = await admin({ method, url, ...(payload !== undefined ? { payload } : {}) });
    if (res.statusCode >= 400 && res.statusCode < 500) answers.push({ what, status: res.statusCode, message: String(res.json().message) });
  };

  for (const [path, methods] of Object.entries(doc.paths)) {
    if (!path.startsWith('/admin/')) continue;
    for (const [method, op] of Object.entries(methods)) {
      const url = concrete(path);
      const media = op.requestBody?.content['application/json'];
      const example = media?.example ?? Object.values(media?.examples ?? {})[0]?.value;
      if (example && typeof example === 'object' && !Array.isArray(example)) {
        const base = example as Record<string, unknown>;
        for (const key of Object.keys(base)) {
          const { [key]: _left, ...without } = base;
          await send(`${method} ${path} without ${key}`, method, url, without);
          for (const bad of breakers(base[key])) await send(`${method} ${path} ${key}=${JSON.stringify(bad)}`, method, url, { ...base, [key]: bad });
        }
        await send(`${method} ${path} with an unknown field`, method, url, { ...base, colour: 'red' });
      }
      for (const p of (op.parameters ?? []).filter((p) => p.in === 'query')) {
        for (const bad of ['no such value ✗', '-1', '2026-13-45'])
          await send(`${method} ${path}?${p.name}=${bad}`, method, `${url}?${p.name}=${encodeURIComponent(bad)}`);
      }
    }
  }
  await send('a slug param that is no slug', 'GET', '/admin/flows/Not%20A%20Slug');

  t.ok(answers.length > 150, `${answers.length} 4xx answers swept`);
  const validation = answers.filter((a) => a.status === 400);
  t.same(
    validation.filter((a) => !/^(body|querystring|params)(\/[^:]*)?: \S/.test(a.message)).map((a) => `${a.what} → ${a.message}`),
    [],
    'every 400 names the field',
  );
  t.same(
    answers.filter((a) => VAGUE.some((v) => v.test(a.message))).map((a) => `${a.what} → ${a.message}`),
    [],
    'no 4xx leaves the user guessing',
  );
  t.same(
    answers.filter((a) => a.message.includes(SECRET)),
    [],
    'no 4xx carries the callback secret',
  );
});

t.test('what to fix, spelled out', async (t) => {
  const { admin } = await buildTestApp(t);
  const message = async (method: string, url: string, payload?: unknown) => {
    const res = await admin({ method, url, ...(payload !== undefined ? { payload } : {}) });
    t.ok(res.statusCode >= 400 && res.statusCode < 500, `${method} ${url}: ${res.statusCode}`);
    return String(res.json().message);
  };
  t.match(await message('POST', '/admin/api-keys', { name: 'x', role: 'root' }), /^body\/role: .*admin.*viewer/, 'allowed values listed');
  t.match(
    await message('POST', '/admin/flows', { slug: 'f', name: 'F', type: 'fax', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } }),
    /^body\/type: .*passthru.*switch.*dial/,
  );
  t.match(
    await message('POST', '/admin/dial-groups', { slug: 'g', name: 'G', strategy: 'fastest', members: [] }),
    /^body\/strategy: .*sequential.*round_robin.*least_recent/,
  );
  t.match(
    await message('POST', '/admin/schedules', { slug: 's', name: 'S', weekly: [{ day: 'monday', open: '09:00', close: '18:00' }] }),
    /^body\/weekly\/0\/day: .*mon.*sun/,
  );
  t.match(
    await message('POST', '/admin/schedules', { slug: 's', name: 'S', exceptions: [{ date: '25/12/2026', closed: true }] }),
    /^body\/exceptions\/0\/date: .*YYYY-MM-DD/,
    'formats spelled out',
  );
  t.match(await message('POST', '/admin/schedules', { slug: 's', name: 'S', timezone: 'India' }), /^body\/timezone: .*Asia\/Kolkata/);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'g', name: 'G' } })).statusCode, 201);
  t.match(
    await message('POST', '/admin/vip-lists/g/entries', { number: '09812345678', expiresAt: 'next year' }),
    /^body\/expiresAt: .*2027-03-31T23:59:59\+05:30/,
  );
  t.match(await message('GET', '/admin/schedules/s/status?at=tomorrow'), /^querystring\/at: .*ISO 8601/);
  // RFC 3339 allows a leap second; JavaScript cannot read one: a 400 naming the field, not a 500
  const leap = '2030-12-31T23:59:60Z';
  t.match(await message('GET', `/admin/schedules/s/status?at=${leap}`), /^querystring\/at: .*ISO 8601/, 'a leap second');
  t.match(await message('GET', `/admin/cdrs?from=${leap}`), /^querystring\/from: .*ISO 8601/);
  t.match(await message('POST', '/admin/vip-lists/g/entries', { number: '09812345678', expiresAt: leap }), /^body\/expiresAt: .*ISO 8601/);
  t.match(
    await message('POST', '/admin/flows', {
      slug: 'f',
      name: 'F',
      type: 'passthru',
      rules: [{ when: { callerIn: 'Gold!' }, then: { branch: 'A' } }],
      otherwise: { branch: 'A' },
      onError: { branch: 'A' },
    }),
    /^body\/rules\/0\/when\/callerIn: must be a slug: lowercase letters, digits and -/,
    'a slug described as a slug, not as what the condition means',
  );
  t.match(await message('POST', '/admin/vip-lists', { slug: 'g', name: 'G again' }), "a VIP list 'g' already exists", 'the kind of object named');
  t.match(
    await message('POST', '/admin/vip-lists', { slug: 'h', name: 'H', colour: 'red' }),
    /^body\/colour: unknown field.*slug, name, description/,
    'an unknown field lists the known ones',
  );
});

t.test('a JSON body is taken with its types as sent: "false", "1" or 5 where another type is wanted is a 400 naming the field', async (t) => {
  const { admin } = await buildTestApp(t);
  const group = { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09812345678' }] };
  t.equal((await admin({ method: 'POST', url: '/admin/dial-groups', payload: group })).statusCode, 201);
  const refused: Array<[string, string, unknown, RegExp]> = [
    ['PATCH', '/admin/dial-groups/sales/members/09812345678', { active: 'false' }, /^body\/active: must be boolean/],
    ['PATCH', '/admin/dial-groups/sales/members/09812345678', { priority: '1' }, /^body\/priority: must be integer/],
    ['PATCH', '/admin/dial-groups/sales', { wrapUpSeconds: '10' }, /^body\/wrapUpSeconds: must be integer/],
    ['PATCH', '/admin/dial-groups/sales', { connect: { record: 'false' } }, /^body\/connect\/record: must be boolean/],
    ['POST', '/admin/dial-groups', { ...group, slug: 'other', members: [{ number: '09812345679', active: 1 }] }, /^body\/members\/0\/active: must be boolean/],
    ['POST', '/admin/vip-lists', { slug: 'gold', name: 5 }, /^body\/name: must be string/],
  ];
  for (const [method, url, payload, message] of refused) {
    const res = await admin({ method, url, payload });
    t.equal(res.statusCode, 400, `${method} ${url} ${JSON.stringify(payload)}`);
    t.match(res.json().message, message);
  }
  t.match(
    (await admin({ method: 'GET', url: '/admin/dial-groups/sales' })).json(),
    { members: [{ active: true, priority: 0 }], wrapUpSeconds: 0, connect: { record: false } },
    'nothing was changed',
  );
  t.equal((await admin({ method: 'GET', url: '/admin/vip-lists' })).json().length, 0, 'nothing was created');
  // A query string is text: its numbers are still read as numbers.
  const page = await admin({ method: 'GET', url: '/admin/audit?limit=1' });
  t.equal(page.statusCode, 200);
  t.equal(page.json().items.length, 1, 'limit=1 read as the number 1');
});

t.test('an instant past the year 9999 in UTC (9999-12-31T23:59:59-05:00) is a 400 naming the field, not a 500 or a date the API cannot show', async (t) => {
  const { admin } = await buildTestApp(t);
  const late = '9999-12-31T23:59:59-05:00'; // 10000-01-01T04:59:59Z: Postgres stores it, Prisma reads it back as Invalid Date
  const bounds = /must be an ISO 8601 instant .* in the years 0001 to 9999 \(UTC\)$/;
  t.equal(
    (
      await admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09811100001', priority: 1 }] },
      })
    ).statusCode,
    201,
  );
  const away = await admin({ method: 'PUT', url: '/admin/agents/09811100001/availability', payload: { status: 'away', until: late } });
  t.equal(away.statusCode, 400);
  t.match(away.json().message, /^body\/until: /);
  t.match(away.json().message, bounds);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  const entry = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '09812345678', expiresAt: late } });
  t.equal(entry.statusCode, 400, 'was a 500');
  t.match(entry.json().message, /^body\/expiresAt: /);
  const cdrs = await admin({ method: 'GET', url: `/admin/cdrs?from=${encodeURIComponent(late)}` });
  t.equal(cdrs.statusCode, 400, 'was a 500');
  t.match(cdrs.json().message, /^querystring\/from: /);
  const early = await admin({ method: 'GET', url: `/admin/cdrs?to=${encodeURIComponent('0001-01-01T00:00:00+05:30')}` });
  t.equal(early.statusCode, 400, 'year 0 in UTC');
  const last = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '09812345678', expiresAt: '9999-12-31T23:59:59Z' } });
  t.equal(last.statusCode, 201, 'the last second of 9999 in UTC is taken');
  t.match(last.json(), { expiresAt: '9999-12-31T23:59:59.000Z' });
});

t.test('a NUL character (\\u0000), which Postgres cannot store, is a 400 naming the field, not a 500', async (t) => {
  const { admin } = await buildTestApp(t);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  const refused: Array<[string, string, unknown, RegExp]> = [
    ['POST', '/admin/vip-lists', { slug: 'silver', name: 'Silver\u0000' }, /^body\/name: /],
    ['PATCH', '/admin/vip-lists/gold', { description: 'top\u0000tier' }, /^body\/description: /],
    ['POST', '/admin/vip-lists/gold/entries', [{ number: '09812345678' }, { number: '09812345679', note: 'a\u0000b' }], /^body\/1\/note: /],
    [
      'POST',
      '/admin/flows',
      {
        slug: 'f',
        name: 'F',
        type: 'switch',
        rules: [{ name: 'one\u0000', when: {}, then: { select: '1' } }],
        otherwise: { select: '0' },
        onError: { select: '0' },
      },
      /^body\/rules\/0\/name: /,
    ],
    [
      'POST',
      '/admin/dial-groups',
      { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09812345678', name: 'A\u0000' }] },
      /^body\/members\/0\/name: /,
    ],
    ['GET', '/admin/vip-lists/gold/entries?q=as%00ha', undefined, /^querystring\/q: /],
    ['GET', '/admin/audit?entityId=go%00ld', undefined, /^querystring\/entityId: /],
  ];
  for (const [method, url, payload, message] of refused) {
    const res = await admin({ method, url, ...(payload !== undefined ? { payload } : {}) });
    t.equal(res.statusCode, 400, `${method} ${url} ${JSON.stringify(payload)}: ${res.body}`);
    t.match(res.json().message, message);
    t.match(res.json().message, /NUL/);
  }
  t.equal((await admin({ method: 'GET', url: '/admin/vip-lists' })).json().length, 1, 'nothing was created');
});

t.test('a lone surrogate (JSON "\\ud800"), which Postgres cannot store, is a 400 naming the field, not a 500 nor a U+FFFD stored', async (t) => {
  // jsonb refuses it (a flow's rules: the write was a 500); a text column took it as U+FFFD.
  const { admin } = await buildTestApp(t);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  const flow = (rule: object) => ({ slug: 'f', name: 'F', type: 'passthru', rules: [rule], otherwise: { branch: 'A' }, onError: { branch: 'A' } });
  const refused: Array<[string, string, unknown, RegExp]> = [
    ['POST', '/admin/flows', flow({ name: 'one\ud800', when: { direction: 'incoming' }, then: { branch: 'B' } }), /^body\/rules\/0\/name: /],
    ['POST', '/admin/flows', flow({ when: { customField: { in: ['vip', '\udc00x'] } }, then: { branch: 'B' } }), /^body\/rules\/0\/when\/customField\/in\/1: /],
    ['POST', '/admin/vip-lists', { slug: 'silver', name: 'Silver \ud83d' }, /^body\/name: /],
    ['POST', '/admin/vip-lists/gold/entries', [{ number: '09812345678' }, { number: '09812345679', note: '\ude00' }], /^body\/1\/note: /],
  ];
  for (const [method, url, payload, message] of refused) {
    const res = await admin({ method, url, payload });
    t.equal(res.statusCode, 400, `${method} ${url} ${JSON.stringify(payload)}: ${res.body}`);
    t.match(res.json().message, message);
    t.match(res.json().message, /lone surrogate/);
  }
  t.equal((await admin({ method: 'GET', url: '/admin/flows' })).json().length, 0, 'no flow was created');
  t.equal((await admin({ method: 'GET', url: '/admin/vip-lists' })).json().length, 1, 'no VIP list was created');
  t.same((await admin({ method: 'GET', url: '/admin/vip-lists/gold/entries' })).json().items, [], 'no entry was imported');
  const pair = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'smile', name: 'Smile \ud83d\ude00' } });
  t.equal(pair.statusCode, 201, 'a whole character beyond U+FFFF (a surrogate pair) is taken');
  t.equal(pair.json().name, 'Smile 😀');
});

t.test('a query-string number that reads as infinite (limit=1e309) is a 400 naming it, not a 500', async (t) => {
  // Ajv coerced it to Infinity and then skipped minimum/maximum, which it checks on finite numbers:
  // the value reached Prisma or Postgres (`take: Infinity`, bigint 'Infinity') as a 500.
  const { admin } = await buildTestApp(t);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  for (const url of ['/admin/audit?limit=1e309', '/admin/refusals?limit=1e309', '/admin/vip-lists/gold/entries?limit=Infinity', '/admin/cdrs?limit=-1e309']) {
    const res = await admin({ method: 'GET', url });
    t.equal(res.statusCode, 400, `${url}: ${res.body}`);
    t.match(res.json().message, /^querystring\/limit: must be a number in range/);
  }
  t.equal((await admin({ method: 'GET', url: '/admin/audit?limit=1e3' })).statusCode, 200, 'a finite number in an odd form is still read');
});

t.test('a query parameter on an admin path that takes none is a 400 naming it, and nothing is changed', async (t) => {
  // It was ignored: `PUT …?dryRun=true` replaced the flow, `DELETE …?force=1` deleted.
  const { admin } = await buildTestApp(t);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  const patch = await admin({ method: 'PATCH', url: '/admin/vip-lists/gold?dryRun=true', payload: { name: 'Platinum' } });
  t.equal(patch.statusCode, 400, patch.body);
  t.equal(patch.json().message, 'querystring/dryRun: unknown field; remove it (this path takes no query parameters)');
  const del = await admin({ method: 'DELETE', url: '/admin/vip-lists/gold?force=1' });
  t.equal(del.statusCode, 400, del.body);
  t.match(del.json().message, /^querystring\/force: unknown field/);
  t.match((await admin({ method: 'GET', url: '/admin/vip-lists/gold' })).json(), { name: 'Gold' }, 'neither was applied');
  t.equal((await admin({ method: 'GET', url: '/admin/vip-lists?x=1' })).statusCode, 400, 'a read too');
  t.equal((await admin({ method: 'GET', url: '/admin/vip-lists/gold/entries?q=9812' })).statusCode, 200, 'a path that takes some takes them');
});

t.test('a method an admin path does not take is 405 with Allow naming those it takes, not a 404; an unknown path stays 404', async (t) => {
  const { app, admin } = await buildTestApp(t);
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, unknown>> };
  const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
  for (const [path, operations] of Object.entries(doc.paths).filter(([p]) => p.startsWith('/admin/'))) {
    const documented = Object.keys(operations).map((m) => m.toUpperCase());
    const url = path.replace(/\{(\w+)\}/g, (_, name: string) => (name === 'number' ? '09812345678' : name === 'id' ? '1' : 'x'));
    for (const method of METHODS.filter((m) => !documented.includes(m))) {
      const res = await admin({ method, url, ...(method === 'GET' || method === 'OPTIONS' ? {} : { payload: {} }) });
      t.equal(res.statusCode, 405, `${method} ${url}`);
      const allow = String(res.headers.allow).split(', ');
      t.same(
        allow.filter((m) => m !== 'HEAD'),
        [...documented].sort(),
        `${method} ${url}: Allow names the documented methods`,
      );
      t.match(res.json(), { statusCode: 405, error: 'Method Not Allowed', message: `${method} is not allowed on ${url}: it takes ${res.headers.allow}` });
    }
  }
  const put = await admin({ method: 'PUT', url: '/admin/cdrs', payload: {} });
  t.equal(put.headers.allow, 'GET, HEAD', 'a GET path takes HEAD too');
  t.equal((await admin({ method: 'HEAD', url: '/admin/cdrs' })).statusCode, 200, 'as Allow says');
  const csv = await admin({ method: 'HEAD', url: '/admin/cdrs.csv' });
  t.equal(csv.statusCode, 405, 'the CSV export has no HEAD twin (it would run the whole export)');
  t.equal(csv.headers.allow, 'GET');
  const unknown = await admin({ method: 'PUT', url: '/admin/nothing-here' });
  t.equal(unknown.statusCode, 404, 'an unknown path is still 404');
  t.match(unknown.json(), { message: 'no route PUT /admin/nothing-here' });
  t.equal((await admin({ method: 'PUT', url: '/admin/cdrs/' })).statusCode, 404, 'a trailing slash is another path');
  const callback = await app.inject({ method: 'PUT', url: '/exotel/passthru/nope?CallSid=x' });
  t.equal(callback.headers.allow, 'GET, POST', "the callbacks' own 405 is unchanged");
});

t.test("an admin request that finds the admin API's database connections all busy for 5 s is a 503 with Retry-After saying so, not a 500", async (t) => {
  // Slow admin requests (here: waiting on a lock another session holds) hold every connection of
  // the admin API's pool; the next one waits for one, and gives up after 5 s. It was a 500
  // "internal error", logged as a failure of exoroute.
  const { app, db, admin } = await buildTestApp(t);
  const locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
  t.teardown(() => locker.end());
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE vip_lists, callback_refusals IN ACCESS EXCLUSIVE MODE');
  // Its own session: one in a transaction reads pg_stat_activity as of its first read.
  const observer = new pg.Client({ connectionString: db.url });
  await observer.connect();
  t.teardown(() => observer.end());
  const max = db.adminPool.options.max;
  const held = Array.from({ length: max }, () => admin({ method: 'GET', url: '/admin/vip-lists' }));
  const waiting = async () =>
    (
      await observer.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%vip_lists%'`,
      )
    ).rows[0]!.n;
  for (let i = 0; i < 500 && (await waiting()) < max; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(await waiting(), max, 'every admin connection is held');
  const late = await Promise.all([admin({ method: 'GET', url: '/admin/vip-lists' }), admin({ method: 'GET', url: '/admin/refusals' })]);
  for (const res of late) {
    t.equal(res.statusCode, 503, `${res.body}`);
    t.match(res.json(), { statusCode: 503, message: /admin API's 4 database connections were all in use for 5 s/ });
    t.ok(Number(res.headers['retry-after']) > 0, 'with Retry-After');
  }
  await locker.query('COMMIT');
  t.same(
    (await Promise.all(held)).map((r) => r.statusCode),
    Array(max).fill(200),
    'the slow ones are answered once the lock is gone',
  );
  t.equal(app.db.pool.totalCount - app.db.pool.idleCount, 0, "none of it took a callback's connection");
});

t.test('while Postgres cannot be reached an admin request is a 503 with Retry-After saying so, not a 500 "internal error"', async (t) => {
  // Postgres stopped, restarting or unreachable: every admin request fails at its key's lookup.
  const { logger, lines } = capturedLog('info');
  const db = openDatabase('postgresql://exoroute:s3cret-pw@127.0.0.1:1/exoroute', logger);
  const app = await buildApp({ config: loadConfig({ DATA_DIR: '.data', ADMIN_API_KEY: ADMIN_KEY }), db, logger, background: false });
  t.teardown(async () => {
    await app.close();
    await db.close();
  });
  for (const url of ['/admin/flows', '/admin/agents', '/admin/cdrs?limit=1']) {
    const res = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    t.equal(res.statusCode, 503, `GET ${url}`);
    t.equal(res.headers['retry-after'], '5');
    t.match(res.json().message, /database is unavailable.*retry in a few seconds/);
  }
  const logged = lines.join('');
  t.match(logged, /"msg":"database unavailable"/, 'logged, with its code');
  t.notMatch(logged, /s3cret-pw|Invalid `prisma/, 'without the password or a page of Prisma source');
  // What counts: codes of a connection that failed, not of a statement that did.
  t.ok(isDatabaseUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })));
  t.ok(isDatabaseUnavailable(new Error('Connection terminated unexpectedly')));
  t.ok(isDatabaseUnavailable(Object.assign(new Error('the database system is shutting down'), { code: '57P03' })));
  t.ok(isDatabaseUnavailable({ cause: { code: '08006' } }), 'found in what the error wraps');
  t.notOk(isDatabaseUnavailable(Object.assign(new Error('deadlock detected'), { code: '40P01' })));
  t.notOk(isDatabaseUnavailable(Object.assign(new Error('duplicate key'), { code: 'P2002' })));
});

t.test(
  'a JSON body with a mistake (a trailing comma, single quotes, a missing comma) is a 400 saying where and what to fix, without echoing the body',
  async (t) => {
    const { admin } = await buildTestApp(t);
    const send = (payload: string) => admin({ method: 'POST', url: '/admin/vip-lists', payload, headers: { 'content-type': 'application/json' } });
    const cases: Array<[string, RegExp]> = [
      ['{"slug":"gold","name":"Gold",}', /^body: is not valid JSON at line 1, column 30: .*trailing comma/],
      ["{'slug':'gold'}", /^body: is not valid JSON at line 1, column 2: .*double quotes/],
      ['{\n  "slug":"gold"\n  "name":"Gold"}', /^body: is not valid JSON at line 3, column 3: /],
      ['[{"number":"09812345678"},]', /^body: is not valid JSON/],
    ];
    for (const [payload, message] of cases) {
      const res = await send(payload);
      t.equal(res.statusCode, 400, payload);
      t.match(res.json().message, message, payload);
      t.notMatch(res.json().message, /gold|09812345678/, 'the body is not echoed');
    }
    t.equal((await admin({ method: 'GET', url: '/admin/vip-lists' })).json().length, 0, 'nothing was created');
  },
);

t.test('a JSON body that is not UTF-8 (saved as Windows-1252) is a 400 naming its line, and nothing is stored with U+FFFD', async (t) => {
  const { admin } = await buildTestApp(t);
  const latin1 = Buffer.from('{\n  "slug": "gold",\n  "name": "Jos\u00e9\'s callers"\n}', 'latin1');
  const res = await admin({ method: 'POST', url: '/admin/vip-lists', payload: latin1, headers: { 'content-type': 'application/json' } });
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /^body: is not UTF-8 \(line 3\), the encoding JSON is sent in: convert it/);
  t.notMatch(res.json().message, /gold|Jos/, 'the body is not echoed');
  t.equal((await admin({ method: 'GET', url: '/admin/vip-lists' })).json().length, 0, 'nothing was created');
  const utf8 = await admin({
    method: 'POST',
    url: '/admin/vip-lists',
    payload: Buffer.from('\ufeff{"slug":"gold","name":"Jos\u00e9\'s callers"}', 'utf8'),
    headers: { 'content-type': 'application/json' },
  });
  t.equal(utf8.statusCode, 201, 'the same in UTF-8 (with a byte-order mark, as Windows editors write) is taken');
  t.equal(utf8.json().name, "Jos\u00e9's callers");
});
