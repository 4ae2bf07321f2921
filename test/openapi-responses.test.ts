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
import { ADMIN_KEY, buildTestApp } from './helper.js';

interface Media {
  schema?: object;
}
interface Operation {
  requestBody?: unknown;
  responses: Record<string, { description?: string; content?: Record<string, Media> }>;
  security?: Array<Record<string, string[]>>;
}
type Doc = { paths: Record<string, Record<string, Operation>> };

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.addFormat('iana-timezone', { type: 'string', validate: (s: string) => IANAZone.isValidZone(s) });
const compiled = new Map<object, ValidateFunction>();
function validatorOf(schema: object): ValidateFunction {
  const known = compiled.get(schema);
  if (known) return known;
  const validate = ajv.compile(schema);
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
  const documented = operation.responses[String(res.statusCode)];
  if (!documented) {
    t.fail(`${what}: the document lists only ${Object.keys(operation.responses).join(', ')}`, { body: res.body.slice(0, 300) });
    return;
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
  const validate = validatorOf(media.schema ?? {});
  const body = /json/.test(type) ? res.json() : res.body;
  t.ok(validate(body), `${what}: documented as ${type}, and the body passes its schema`, { errors: validate.errors, body: res.body.slice(0, 500) });
}

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
  await app.rules.reload();
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
