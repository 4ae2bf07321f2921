/**
 * The OpenAPI document against the real answers: every operation it lists is called through the
 * real app (success and the refusals a user meets), and each answer's status must be one the
 * document lists for that operation, its content type the one documented for that status, and a
 * JSON body must pass the documented schema. So what Swagger UI shows a user is what they get.
 */
import t from 'tap';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { IANAZone } from 'luxon';
import type { LightMyRequestResponse } from 'fastify';
import type { Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { ensureBootstrapKey } from '../src/store/api-keys.js';
import { openDatabase } from '../src/store/database.js';
import { databaseOptions } from '../src/store/setup.js';
import { ADMIN_KEY, buildTestApp, migratedDatabase, quietLog, silencingProxy } from './helper.js';

interface Media {
  schema?: object;
}
interface Operation {
  requestBody?: unknown;
  responses: Record<string, { description?: string; content?: Record<string, Media>; headers?: Record<string, { schema?: object }> }>;
  security?: Array<Record<string, string[]>>;
}
type Response = Operation['responses'][string];
type Doc = {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, object>; responses?: Record<string, Response> };
};

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.addFormat('iana-timezone', { type: 'string', validate: (s: string) => IANAZone.isValidZone(s) });
const compiled = new Map<object, ValidateFunction>();
function validatorOf(schema: object, doc: Doc): ValidateFunction {
  const known = compiled.get(schema);
  if (known) return known;
  // Its `$ref`s point into the document's components (#/components/schemas/…): compiled beside them.
  const validate = ajv.compile({ ...schema, components: doc.components });
  compiled.set(schema, validate);
  return validate;
}

/**
 * Checks an answer to `op` ("GET /admin/vip-lists/{slug}") against the document: its status is one
 * the operation lists, its content type the one listed for that status, and a body passes the schema.
 */
function checkAnswer(t: Test, doc: Doc, op: string, res: LightMyRequestResponse): void {
  const [method, path] = op.split(' ') as [string, string];
  const what = `${op} → ${res.statusCode}`;
  const operation = doc.paths[path]?.[method.toLowerCase()];
  if (!operation) {
    t.fail(`${op} is in the document`);
    return;
  }
  const listed = operation.responses[String(res.statusCode)] as (Response & { $ref?: string }) | undefined;
  // An answer many routes give alike is a $ref to components.responses (sharedResponse).
  const documented = listed?.$ref ? doc.components.responses?.[listed.$ref.replace('#/components/responses/', '')] : listed;
  if (listed?.$ref && !documented) {
    t.fail(`${what}: ${listed.$ref} is in the document`);
    return;
  }
  if (!documented) {
    t.fail(`${what}: the document lists only ${Object.keys(operation.responses).join(', ')}`, { body: res.body.slice(0, 300) });
    return;
  }
  // A header a client is told to read (Retry-After) is documented where it is sent.
  const retryAfter = res.headers['retry-after'];
  if (retryAfter !== undefined) {
    const header = Object.entries(documented.headers ?? {}).find(([name]) => name.toLowerCase() === 'retry-after')?.[1];
    t.ok(header, `${what}: its Retry-After header (${retryAfter}) is documented`);
    if (header?.schema) t.ok(validatorOf(header.schema, doc)(Number(retryAfter)), `${what}: its Retry-After passes the header's schema`);
  }
  const type = String(res.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim();
  if (res.body === '' && !documented.content) {
    t.pass(`${what}: documented, without a body`);
    return;
  }
  const media = documented.content?.[type];
  if (!media) {
    t.fail(`${what}: answered as ${type || 'no content type'}, documented as ${Object.keys(documented.content ?? {}).join(', ') || 'no body'}`, {
      body: res.body.slice(0, 300),
    });
    return;
  }
  const validate = validatorOf(media.schema ?? {}, doc);
  const body = /json/.test(type) ? res.json() : res.body;
  t.ok(validate(body), `${what}: documented as ${type}, and the body passes its schema`, { errors: validate.errors, body: res.body.slice(0, 500) });
}

const SECRET = 'callback-secret-0123456789abcdef';

interface Request {
  url: string;
  payload?: unknown;
  headers?: Record<string, string>;
  /** the key to send: the bootstrap admin key by default, a viewer key, or none */
  key?: 'admin' | 'viewer' | 'none';
}

t.test('every answer is one the OpenAPI document lists, with the documented content type and body', async (t) => {
  const { app } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: SECRET, PUBLIC_URL: 'https://exo.example.com' });
  const doc = app.swagger() as unknown as Doc;
  const exercised = new Set<string>();
  let viewerKey = '';

  /** Calls `op` ("GET /admin/vip-lists/{slug}") as `req` says, and checks the answer against the document. */
  async function call(op: string, req: Request, expected: number): Promise<LightMyRequestResponse> {
    const [method, path] = op.split(' ') as [string, string];
    const key = req.key ?? 'admin';
    const headers: Record<string, string> = { ...req.headers };
    if (key !== 'none' && path.startsWith('/admin/')) headers.authorization = `Bearer ${key === 'admin' ? ADMIN_KEY : viewerKey}`;
    const res = await app.inject({
      method: method as 'GET',
      url: req.url,
      headers,
      ...(req.payload !== undefined ? { payload: req.payload as object } : {}),
    });
    t.equal(res.statusCode, expected, `${op} (${req.url.slice(0, 80)}): the status this case is about`, { body: res.body.slice(0, 300) });
    if (doc.paths[path]?.[method.toLowerCase()]) exercised.add(op);
    checkAnswer(t, doc, op, res);
    return res;
  }

  // ops
  await call('GET /', { url: '/' }, 302);
  await call('GET /healthz', { url: '/healthz' }, 200);
  await call('GET /readyz', { url: '/readyz' }, 200);
  await call('GET /metrics', { url: '/metrics' }, 200);

  // API keys: a viewer key for the role checks below
  const created = await call('POST /admin/api-keys', { url: '/admin/api-keys', payload: { name: 'lead', role: 'viewer' } }, 201);
  viewerKey = created.json().key;
  const spare = await call('POST /admin/api-keys', { url: '/admin/api-keys', payload: { name: 'spare', role: 'admin' } }, 201);
  await call('POST /admin/api-keys', { url: '/admin/api-keys', payload: { name: 'x', role: 'root' } }, 400);
  await call('GET /admin/api-keys', { url: '/admin/api-keys', key: 'viewer' }, 200);
  await call('DELETE /admin/api-keys/{id}', { url: `/admin/api-keys/${spare.json().id}` }, 200);
  await call('DELETE /admin/api-keys/{id}', { url: `/admin/api-keys/${spare.json().id}` }, 409);
  await call('DELETE /admin/api-keys/{id}', { url: '/admin/api-keys/00000000-0000-4000-8000-00000000abcd' }, 404);
  await call('DELETE /admin/api-keys/{id}', { url: '/admin/api-keys/not-a-uuid' }, 400);

  // VIP lists
  await call('POST /admin/vip-lists', { url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } }, 201);
  await call('POST /admin/vip-lists', { url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } }, 409);
  await call('POST /admin/vip-lists', { url: '/admin/vip-lists', payload: { slug: 'Gold!', name: 'Gold' } }, 400);
  await call(
    'POST /admin/vip-lists',
    { url: '/admin/vip-lists', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'slug=x&name=X' },
    415,
  );
  await call('GET /admin/vip-lists', { url: '/admin/vip-lists' }, 200);
  await call('GET /admin/vip-lists/{slug}', { url: '/admin/vip-lists/gold' }, 200);
  await call('GET /admin/vip-lists/{slug}', { url: '/admin/vip-lists/nope' }, 404);
  await call('PATCH /admin/vip-lists/{slug}', { url: '/admin/vip-lists/gold', payload: { description: 'Top' } }, 200);
  await call('PATCH /admin/vip-lists/{slug}', { url: '/admin/vip-lists/nope', payload: { description: 'Top' } }, 404);
  const entries = '/admin/vip-lists/gold/entries';
  await call(
    'POST /admin/vip-lists/{slug}/entries',
    { url: entries, payload: { number: '09812345678', name: 'Asha', expiresAt: '2030-01-01T00:00:00Z' } },
    201,
  );
  await call('POST /admin/vip-lists/{slug}/entries', { url: entries, payload: { number: '09812345678', name: 'Asha' } }, 200);
  await call('POST /admin/vip-lists/{slug}/entries', { url: entries, payload: [{ number: '09812345679' }, { number: '09812345670' }] }, 200);
  await call('POST /admin/vip-lists/{slug}/entries', { url: entries, payload: { number: 'abc' } }, 400);
  await call('POST /admin/vip-lists/{slug}/entries', { url: '/admin/vip-lists/nope/entries', payload: { number: '09812345678' } }, 404);
  await call('GET /admin/vip-lists/{slug}/entries', { url: `${entries}?limit=2` }, 200);
  await call('GET /admin/vip-lists/{slug}/entries', { url: `${entries}?limit=0` }, 400);
  await call('DELETE /admin/vip-lists/{slug}/entries/{number}', { url: `${entries}/09812345670` }, 204);
  await call('DELETE /admin/vip-lists/{slug}/entries/{number}', { url: `${entries}/09812345670` }, 404);

  // schedules
  const schedule = { slug: 'support', name: 'Support', weekly: [{ day: 'mon', open: '09:00', close: '18:00' }] };
  await call('POST /admin/schedules', { url: '/admin/schedules', payload: schedule }, 201);
  await call('POST /admin/schedules', { url: '/admin/schedules', payload: schedule }, 409);
  await call('POST /admin/schedules', { url: '/admin/schedules', payload: { ...schedule, slug: 'x', timezone: 'Mars/Olympus' } }, 400);
  await call('GET /admin/schedules', { url: '/admin/schedules' }, 200);
  await call('GET /admin/schedules/{slug}', { url: '/admin/schedules/support' }, 200);
  await call('GET /admin/schedules/{slug}', { url: '/admin/schedules/nope' }, 404);
  await call('PUT /admin/schedules/{slug}', { url: '/admin/schedules/support', payload: { name: 'Support', weekly: schedule.weekly } }, 200);
  await call('PUT /admin/schedules/{slug}', { url: '/admin/schedules/nope', payload: { name: 'Support' } }, 404);
  await call('PATCH /admin/schedules/{slug}', { url: '/admin/schedules/support', payload: { exceptions: [{ date: '2026-12-25', closed: true }] } }, 200);
  await call('PATCH /admin/schedules/{slug}', { url: '/admin/schedules/support', payload: { exceptions: [{ date: '2026-13-25', closed: true }] } }, 400);
  await call('PUT /admin/schedules/{slug}/override', { url: '/admin/schedules/support/override', payload: { open: false, reason: 'flood' } }, 200);
  await call('PUT /admin/schedules/{slug}/override', { url: '/admin/schedules/nope/override', payload: { open: false, reason: 'flood' } }, 404);
  await call('DELETE /admin/schedules/{slug}/override', { url: '/admin/schedules/support/override' }, 204);
  await call('DELETE /admin/schedules/{slug}/override', { url: '/admin/schedules/support/override' }, 404);
  await call('GET /admin/schedules/{slug}/status', { url: '/admin/schedules/support/status?at=2026-12-21T11:00:00%2B05:30' }, 200);
  await call('GET /admin/schedules/{slug}/status', { url: '/admin/schedules/support/status?at=yesterday' }, 400);

  // dial groups
  const group = {
    slug: 'sales',
    name: 'Sales',
    strategy: 'sequential',
    members: [
      { number: '09811100001', name: 'Asha' },
      { number: '09811100002', name: 'Ravi', schedule: 'support' },
    ],
  };
  await call('POST /admin/dial-groups', { url: '/admin/dial-groups', payload: group }, 201);
  await call('POST /admin/dial-groups', { url: '/admin/dial-groups', payload: group }, 409);
  await call(
    'POST /admin/dial-groups',
    { url: '/admin/dial-groups', payload: { ...group, slug: 'other', members: [{ number: '09811100003', schedule: 'nope' }] } },
    422,
  );
  await call('POST /admin/dial-groups', { url: '/admin/dial-groups', payload: { ...group, slug: 'other', strategy: 'loudest' } }, 400);
  await call('GET /admin/dial-groups', { url: '/admin/dial-groups' }, 200);
  await call('GET /admin/dial-groups/{slug}', { url: '/admin/dial-groups/sales' }, 200);
  await call('GET /admin/dial-groups/{slug}', { url: '/admin/dial-groups/nope' }, 404);
  const { slug: _slug, ...groupBody } = group;
  await call('PUT /admin/dial-groups/{slug}', { url: '/admin/dial-groups/sales', payload: groupBody }, 200);
  await call('PUT /admin/dial-groups/{slug}', { url: '/admin/dial-groups/nope', payload: groupBody }, 404);
  await call('PATCH /admin/dial-groups/{slug}', { url: '/admin/dial-groups/sales', payload: { strategy: 'round_robin' } }, 200);
  await call('PATCH /admin/dial-groups/{slug}', { url: '/admin/dial-groups/sales', payload: { members: [{ number: '09811100001', schedule: 'nope' }] } }, 422);
  await call('PATCH /admin/dial-groups/{slug}/members/{number}', { url: '/admin/dial-groups/sales/members/09811100002', payload: { active: false } }, 200);
  await call('PATCH /admin/dial-groups/{slug}/members/{number}', { url: '/admin/dial-groups/sales/members/09811100009', payload: { active: false } }, 404);
  await call('PATCH /admin/dial-groups/{slug}/members/{number}', { url: '/admin/dial-groups/sales/members/09811100002', payload: { schedule: 'nope' } }, 422);

  // agents
  await call('GET /admin/agents', { url: '/admin/agents' }, 200);
  await call('GET /admin/agents', { url: '/admin/agents?timezone=Mars/Olympus' }, 400);
  await call('GET /admin/agents/{number}', { url: '/admin/agents/09811100001' }, 200);
  await call('GET /admin/agents/{number}', { url: '/admin/agents/09811100009' }, 404);
  await call('GET /admin/agents/{number}', { url: '/admin/agents/abc' }, 400);
  await call('PUT /admin/agents/{number}/availability', { url: '/admin/agents/09811100001/availability', payload: { status: 'away', reason: 'lunch' } }, 200);
  await call('PUT /admin/agents/{number}/availability', { url: '/admin/agents/09811100009/availability', payload: { status: 'away' } }, 404);
  await call('PUT /admin/agents/{number}/availability', { url: '/admin/agents/09811100001/availability', payload: { status: 'gone' } }, 400);
  await call('PUT /admin/agents/{number}/availability', { url: '/admin/agents/09811100001/availability', payload: { status: 'available' } }, 200);

  // flows
  const inbound = {
    slug: 'inbound',
    name: 'Main line',
    type: 'passthru',
    rules: [
      { name: 'VIPs', when: { callerIn: 'gold' }, then: { branch: 'A' } },
      { name: 'closed', when: { closedBy: 'support' }, then: { branch: 'B' } },
    ],
    otherwise: { branch: 'A' },
    onError: { branch: 'A' },
  };
  await call('POST /admin/flows', { url: '/admin/flows', payload: inbound }, 201);
  await call('POST /admin/flows', { url: '/admin/flows', payload: inbound }, 409);
  await call(
    'POST /admin/flows',
    { url: '/admin/flows', payload: { ...inbound, slug: 'x', rules: [{ when: { callerIn: 'nope' }, then: { branch: 'A' } }] } },
    422,
  );
  await call('POST /admin/flows', { url: '/admin/flows', payload: { ...inbound, slug: 'x', type: 'fax' } }, 400);
  const menu = {
    slug: 'menu',
    name: 'Menu',
    type: 'switch',
    rules: [{ when: { digits: { equals: '1' } }, then: { select: 'sales' } }],
    otherwise: { select: 'main' },
    onError: { select: 'main' },
  };
  await call('POST /admin/flows', { url: '/admin/flows', payload: menu }, 201);
  const agents = { slug: 'agents', name: 'Sales line', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { numbers: ['+918047110000'] } };
  await call('POST /admin/flows', { url: '/admin/flows', payload: agents }, 201);
  const voicemail = { slug: 'voicemail', name: 'Always B', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'B' } };
  await call('POST /admin/flows', { url: '/admin/flows', payload: voicemail }, 201);
  await call('GET /admin/flows', { url: '/admin/flows' }, 200);
  await call('GET /admin/flows', { url: '/admin/flows', key: 'viewer' }, 200);
  await call('GET /admin/flows/{slug}', { url: '/admin/flows/inbound' }, 200);
  await call('GET /admin/flows/{slug}', { url: '/admin/flows/nope' }, 404);
  const { slug: _s, ...inboundBody } = inbound;
  await call('PUT /admin/flows/{slug}', { url: '/admin/flows/inbound', payload: inboundBody }, 200);
  await call('PUT /admin/flows/{slug}', { url: '/admin/flows/nope', payload: inboundBody }, 404);
  await call(
    'PUT /admin/flows/{slug}',
    {
      url: '/admin/flows/inbound',
      payload: { ...inboundBody, type: 'dial', rules: [], otherwise: { dialGroup: 'nope' }, onError: { numbers: ['+918047110000'] } },
    },
    422,
  );
  const simulate = (flow: string, endpoint: string) => ({
    url: `/admin/flows/${flow}/simulate`,
    payload: { endpoint, params: { CallSid: 'sim', CallFrom: '09812345678' }, at: '2026-12-21T11:00:00+05:30' },
  });
  await call('POST /admin/flows/{slug}/simulate', simulate('inbound', 'passthru'), 200);
  await call('POST /admin/flows/{slug}/simulate', { ...simulate('menu', 'switch'), key: 'viewer' }, 200);
  await call('POST /admin/flows/{slug}/simulate', simulate('agents', 'dial-whom'), 200);
  await call('POST /admin/flows/{slug}/simulate', simulate('agents', 'connect'), 200);
  await call('POST /admin/flows/{slug}/simulate', simulate('nope', 'passthru'), 404);
  await call('POST /admin/flows/{slug}/simulate', { url: '/admin/flows/inbound/simulate', payload: { endpoint: 'fax', params: {} } }, 400);

  // callbacks, each endpoint by GET and POST
  const q = (params: string) => `?token=${SECRET}&${params}`;
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  for (const [endpoint, flow] of [
    ['passthru', 'inbound'],
    ['switch', 'menu'],
    ['dial-whom', 'agents'],
    ['connect', 'agents'],
  ] as const) {
    const op = `/exotel/${endpoint}/{flow}`;
    const url = `/exotel/${endpoint}/${flow}`;
    await call(`GET ${op}`, { url: `${url}${q('CallSid=c-get&CallFrom=09812345678')}` }, 200);
    await call(`POST ${op}`, { url: `${url}?token=${SECRET}`, headers: form, payload: 'CallSid=c-post&CallFrom=09812345678' }, 200);
    await call(`GET ${op}`, { url: `${url}?CallSid=c-no-secret` }, 401);
    await call(`GET ${op}`, { url: `/exotel/${endpoint}/nope${q('CallSid=c-nope')}` }, 404);
    await call(`POST ${op}`, { url: `${url}?token=${SECRET}`, headers: form, payload: 'CallFrom=09812345678' }, 400);
  }
  await call('GET /exotel/passthru/{flow}', { url: `/exotel/passthru/voicemail${q('CallSid=c-b&CallFrom=09800000001')}` }, 302);
  await call('GET /exotel/dial-events', { url: `/exotel/dial-events${q('CallSid=c-get&DialWhomNumber=09811100001&Status=busy')}` }, 200);
  await call(
    'POST /exotel/dial-events',
    { url: `/exotel/dial-events?token=${SECRET}`, headers: form, payload: 'CallSid=c-get&DialWhomNumber=09811100001&Status=free' },
    200,
  );
  await call('GET /exotel/dial-events', { url: `/exotel/dial-events${q('CallSid=c-get')}` }, 400);
  await call('GET /exotel/dial-events', { url: '/exotel/dial-events?CallSid=c-get&DialWhomNumber=09811100001' }, 401);

  // CDRs and refusals
  const page = await call('GET /admin/cdrs', { url: '/admin/cdrs?limit=5' }, 200);
  await call('GET /admin/cdrs', { url: '/admin/cdrs?number=abc' }, 400);
  await call('GET /admin/cdrs.csv', { url: '/admin/cdrs.csv?flow=inbound' }, 200);
  await call('GET /admin/cdrs.csv', { url: '/admin/cdrs.csv?endpoint=fax' }, 400);
  await call('GET /admin/cdrs/{id}', { url: `/admin/cdrs/${page.json().items[0].id}` }, 200);
  await call('GET /admin/cdrs/{id}', { url: '/admin/cdrs/999999999' }, 404);
  await call('GET /admin/cdrs/{id}', { url: '/admin/cdrs/abc' }, 400);
  await call('GET /admin/calls/{callSid}', { url: '/admin/calls/c-get' }, 200);
  await call('GET /admin/calls/{callSid}', { url: '/admin/calls/never' }, 404);
  await call('GET /admin/refusals', { url: '/admin/refusals' }, 200);
  await call('GET /admin/refusals', { url: '/admin/refusals?address=zz' }, 400);
  await call('GET /admin/audit', { url: '/admin/audit?entity=flow&limit=5' }, 200);
  await call('GET /admin/audit', { url: '/admin/audit?limit=0' }, 400);

  // deleting what is in use, then in order
  await call('DELETE /admin/vip-lists/{slug}', { url: '/admin/vip-lists/gold' }, 409);
  await call('DELETE /admin/schedules/{slug}', { url: '/admin/schedules/support' }, 409);
  await call('DELETE /admin/dial-groups/{slug}', { url: '/admin/dial-groups/sales' }, 409);
  for (const flow of ['inbound', 'menu', 'agents', 'voicemail']) await call('DELETE /admin/flows/{slug}', { url: `/admin/flows/${flow}` }, 204);
  await call('DELETE /admin/flows/{slug}', { url: '/admin/flows/inbound' }, 404);
  await call('DELETE /admin/dial-groups/{slug}', { url: '/admin/dial-groups/sales' }, 204);
  await call('DELETE /admin/dial-groups/{slug}', { url: '/admin/dial-groups/sales' }, 404);
  await call('DELETE /admin/vip-lists/{slug}', { url: '/admin/vip-lists/gold' }, 204);
  await call('DELETE /admin/vip-lists/{slug}', { url: '/admin/vip-lists/gold' }, 404);
  await call('DELETE /admin/schedules/{slug}', { url: '/admin/schedules/support' }, 204);
  await call('DELETE /admin/schedules/{slug}', { url: '/admin/schedules/support' }, 404);

  const all = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`));
  t.same(
    all.filter((op) => !exercised.has(op)),
    [],
    'every documented operation was called',
  );
});

t.test('the answers every admin route gives without a key, and to a viewer key that writes, are documented', async (t) => {
  // Many failed authentications on purpose: lift the lockout so every route is reached.
  const { app, admin } = await buildTestApp(t, { ADMIN_AUTH_FAILURES_PER_MINUTE: '10000' });
  const doc = app.swagger() as unknown as Doc;
  const viewer = (await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'lead', role: 'viewer' } })).json().key as string;
  const ops = Object.entries(doc.paths)
    .filter(([path]) => path.startsWith('/admin/'))
    .flatMap(([path, methods]) => Object.keys(methods).map((m) => ({ method: m.toUpperCase(), path })));
  const url = (path: string) =>
    path.replace(/\{(\w+)\}/g, (_, name: string) => (name === 'id' ? '00000000-0000-4000-8000-00000000abcd' : name === 'number' ? '09812345678' : 'x1'));
  for (const { method, path } of ops) {
    const anonymous = await app.inject({ method: method as 'GET', url: url(path) });
    t.equal(anonymous.statusCode, 401, `${method} ${path} without a key`);
    checkAnswer(t, doc, `${method} ${path}`, anonymous);
    if (method !== 'GET' && !path.endsWith('/simulate')) {
      const refused = await app.inject({ method: method as 'GET', url: url(path), headers: { authorization: `Bearer ${viewer}` } });
      t.equal(refused.statusCode, 403, `${method} ${path} with a viewer key`);
      checkAnswer(t, doc, `${method} ${path}`, refused);
    }
  }
});

t.test('a client locked out after failed authentications gets 429 on every admin route, as documented', async (t) => {
  const { app } = await buildTestApp(t, { ADMIN_AUTH_FAILURES_PER_MINUTE: '1' });
  const doc = app.swagger() as unknown as Doc;
  t.equal((await app.inject({ method: 'GET', url: '/admin/flows' })).statusCode, 401, 'one failure');
  for (const [path, methods] of Object.entries(doc.paths).filter(([p]) => p.startsWith('/admin/'))) {
    for (const method of Object.keys(methods)) {
      const res = await app.inject({
        method: method.toUpperCase() as 'GET',
        url: path.replaceAll(/\{\w+\}/g, 'x1'),
        headers: { authorization: `Bearer ${ADMIN_KEY}` },
      });
      t.equal(res.statusCode, 429, `${method.toUpperCase()} ${path}: locked out`);
      checkAnswer(t, doc, `${method.toUpperCase()} ${path}`, res);
    }
  }
});

t.test('with Postgres unreachable every admin route is 503 with Retry-After, as documented', async (t) => {
  const direct = await migratedDatabase(t);
  const proxy = await silencingProxy(t, direct.url);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, DATABASE_URL: proxy.url });
  await ensureBootstrapKey(direct.pool, { configuredKey: ADMIN_KEY, dataDir });
  const db = openDatabase(proxy.url, quietLog, databaseOptions(config));
  t.teardown(() => db.close());
  const app = await buildApp({ config, db, logger: quietLog, background: false });
  t.teardown(() => app.close());
  await app.ready();
  const doc = app.swagger() as unknown as Doc;
  const headers = { authorization: `Bearer ${ADMIN_KEY}` };
  t.equal((await app.inject({ method: 'GET', url: '/admin/flows', headers })).statusCode, 200, 'answered while Postgres is there');
  // Postgres goes away: its connections are closed, new ones refused.
  await proxy.close();
  for (const [path, methods] of Object.entries(doc.paths).filter(([p]) => p.startsWith('/admin/'))) {
    for (const method of Object.keys(methods)) {
      const res = await app.inject({ method: method.toUpperCase() as 'GET', url: path.replaceAll(/\{\w+\}/g, 'x1'), headers });
      t.equal(res.statusCode, 503, `${method.toUpperCase()} ${path}: the database is unavailable`, { body: res.body.slice(0, 300) });
      t.ok(res.headers['retry-after'], `${method.toUpperCase()} ${path}: with Retry-After`);
      checkAnswer(t, doc, `${method.toUpperCase()} ${path}`, res);
    }
  }
});

t.test('a body over ADMIN_BODY_LIMIT_BYTES is 413 on every admin route that takes one, as documented', async (t) => {
  const { app, admin } = await buildTestApp(t, { ADMIN_BODY_LIMIT_BYTES: '2048' });
  const doc = app.swagger() as unknown as Doc;
  const big = { name: 'x'.repeat(4096) };
  for (const [path, methods] of Object.entries(doc.paths).filter(([p]) => p.startsWith('/admin/'))) {
    for (const [method, op] of Object.entries(methods)) {
      if (!op.requestBody || path.endsWith('/entries')) continue;
      const res = await admin({ method: method.toUpperCase(), url: path.replaceAll(/\{\w+\}/g, 'x1'), payload: big });
      t.equal(res.statusCode, 413, `${method.toUpperCase()} ${path}: too large`);
      checkAnswer(t, doc, `${method.toUpperCase()} ${path}`, res);
    }
  }
});

t.test('a callback body over 64 KiB is 413, as documented', async (t) => {
  const { app } = await buildTestApp(t);
  const doc = app.swagger() as unknown as Doc;
  for (const endpoint of ['passthru', 'switch', 'dial-whom', 'connect']) {
    const res = await app.inject({
      method: 'POST',
      url: `/exotel/${endpoint}/inbound`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `CallSid=big&x=${'y'.repeat(70_000)}`,
    });
    t.equal(res.statusCode, 413, `${endpoint}: a body over 64 KiB`);
    checkAnswer(t, doc, `POST /exotel/${endpoint}/{flow}`, res);
  }
  const event = await app.inject({
    method: 'POST',
    url: '/exotel/dial-events',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `CallSid=big&x=${'y'.repeat(70_000)}`,
  });
  t.equal(event.statusCode, 413, 'dial-events: a body over 64 KiB');
  checkAnswer(t, doc, 'POST /exotel/dial-events', event);
});

t.test('DELETE /admin/api-keys/{id} with an id that is no UUID is 400, as documented', async (t) => {
  const { app, admin } = await buildTestApp(t);
  const res = await admin({ method: 'DELETE', url: '/admin/api-keys/not-a-uuid' });
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /^params\/id: /);
  checkAnswer(t, app.swagger() as unknown as Doc, 'DELETE /admin/api-keys/{id}', res);
});

t.test('GET /admin/audit with a bad query is 400, as documented', async (t) => {
  const { app, admin } = await buildTestApp(t);
  for (const query of ['limit=0', 'cursor=abc', `entity=${'x'.repeat(65)}`, 'actor=me']) {
    const res = await admin({ method: 'GET', url: `/admin/audit?${query}` });
    t.equal(res.statusCode, 400, query);
    t.match(res.json().message, /^querystring\/\w+: /, query);
    checkAnswer(t, app.swagger() as unknown as Doc, 'GET /admin/audit', res);
  }
});

t.test("the callbacks' answers are documented with the content type they are sent as", async (t) => {
  const { app, admin } = await buildTestApp(t);
  const doc = app.swagger() as unknown as Doc;
  const flows = [
    { slug: 'a', name: 'A', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } },
    { slug: 'b', name: 'B', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'B' } },
    { slug: 'url', name: 'URL', type: 'passthru', rules: [], otherwise: { branch: 'A', url: 'https://example.com/next' }, onError: { branch: 'A' } },
    { slug: 'menu', name: 'Menu', type: 'switch', rules: [], otherwise: { select: 'main' }, onError: { select: 'main' } },
    { slug: 'dial', name: 'Dial', type: 'dial', rules: [], otherwise: { numbers: ['09811100001'] }, onError: { numbers: ['09811100001'] } },
  ];
  for (const flow of flows) t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: flow })).statusCode, 201);
  for (const [endpoint, flow, status] of [
    ['passthru', 'a', 200],
    ['passthru', 'b', 302],
    ['passthru', 'url', 200],
    ['switch', 'menu', 200],
    ['dial-whom', 'dial', 200],
    ['connect', 'dial', 200],
  ] as const) {
    for (const method of ['GET', 'POST'] as const) {
      const res = await app.inject({
        method,
        url: `/exotel/${endpoint}/${flow}${method === 'GET' ? '?CallSid=c1&CallFrom=09812345678' : ''}`,
        ...(method === 'POST' ? { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'CallSid=c2&CallFrom=09812345678' } : {}),
      });
      t.equal(res.statusCode, status, `${method} ${endpoint}/${flow}`);
      checkAnswer(t, doc, `${method} /exotel/${endpoint}/{flow}`, res);
    }
  }
  for (const method of ['GET', 'POST'] as const) {
    const params = 'CallSid=c1&DialWhomNumber=09811100001&Status=busy';
    const res = await app.inject({
      method,
      url: `/exotel/dial-events${method === 'GET' ? `?${params}` : ''}`,
      ...(method === 'POST' ? { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: params } : {}),
    });
    t.equal(res.statusCode, 200, `${method} dial-events`);
    checkAnswer(t, doc, `${method} /exotel/dial-events`, res);
  }
});

t.test('a callback before the routing rules are loaded is 503, as documented', async (t) => {
  const db = await migratedDatabase(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  // Without background work the rules are never loaded: as in the moments after a start.
  const app = await buildApp({ config: loadConfig({ DATA_DIR: dataDir, DATABASE_URL: db.url }), db, logger: quietLog, background: false });
  t.teardown(() => app.close());
  await app.ready();
  const doc = app.swagger() as unknown as Doc;
  for (const endpoint of ['passthru', 'switch', 'dial-whom', 'connect']) {
    const res = await app.inject({ method: 'GET', url: `/exotel/${endpoint}/inbound?CallSid=early-${endpoint}` });
    t.equal(res.statusCode, 503, `${endpoint}: rules not loaded yet`);
    checkAnswer(t, doc, `GET /exotel/${endpoint}/{flow}`, res);
  }
  const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM cdrs WHERE call_sid LIKE 'early-%' AND http_status = 503");
  t.equal(rows[0]!.n, 4, 'each one still a CDR');
});

t.test('a callback from an address throttled for its refusals is 429 with Retry-After, as documented', async (t) => {
  const { app } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: SECRET });
  const doc = app.swagger() as unknown as Doc;
  const limit = 1000;
  let throttled: LightMyRequestResponse | undefined;
  for (let i = 0; i < limit && !throttled; i++) {
    const res = await app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallSid=t-${i}&token=wrong` });
    if (res.statusCode === 429) throttled = res;
  }
  t.ok(throttled, `throttled within ${limit} refusals`);
  if (!throttled) return;
  t.ok(Number(throttled.headers['retry-after']) >= 1, 'with Retry-After');
  checkAnswer(t, doc, 'GET /exotel/passthru/{flow}', throttled);
  const post = await app.inject({
    method: 'POST',
    url: '/exotel/dial-whom/inbound',
    payload: 'CallSid=t-post&token=wrong',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.equal(post.statusCode, 429);
  checkAnswer(t, doc, 'POST /exotel/dial-whom/{flow}', post);
});
