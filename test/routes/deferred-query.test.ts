/**
 * Callbacks' query strings are left to src/exotel/params.ts; every other route gets `request.query`
 * parsed by Fastify's own parser, as before (src/plugins/deferred-query.ts).
 */
import t from 'tap';
import Fastify from 'fastify';
import parseDeferredQuery, { deferredQuery } from '../../src/plugins/deferred-query.js';
import { ADMIN_KEY, buildTestApp } from '../helper.js';

t.test('a callback route leaves its query unparsed; any other route reads it parsed, repeated keys as arrays', async (t) => {
  const app = Fastify({ routerOptions: { querystringParser: deferredQuery } });
  t.teardown(() => app.close());
  const keys = async (request: { query: unknown }) => ({ keys: Object.keys(request.query as object), query: request.query });
  app.get('/exotel/passthru/:flow', keys);
  // As in the app: the plugin in the admin context, beside the callbacks'.
  await app.register(async (admin) => {
    await admin.register(parseDeferredQuery);
    admin.get('/admin/things', keys);
  });
  const q = 'CallSid=abc&From=%2B919812345678&a=1&a=2&empty=';

  const callback = (await app.inject({ method: 'GET', url: `/exotel/passthru/inbound?${q}` })).json();
  t.same(callback.keys, [], 'nothing parsed for a callback');

  const admin = (await app.inject({ method: 'GET', url: `/admin/things?${q}` })).json();
  t.same(admin.query, { CallSid: 'abc', From: '+919812345678', a: ['1', '2'], empty: '' });
  t.same((await app.inject({ method: 'GET', url: '/admin/things' })).json().query, {}, 'no query string: an empty object');
  t.same((await app.inject({ method: 'GET', url: `/nowhere?${q}` })).statusCode, 404);
});

t.test('in the app: admin filters from the query string still apply, and a callback still reads its parameters', async (t) => {
  const { app } = await buildTestApp(t);
  const bad = await app.inject({ method: 'GET', url: '/admin/cdrs?limit=0', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  t.equal(bad.statusCode, 400, 'the query string is validated');
  t.match(bad.json().message, /limit/);
  const cb = await app.inject({ method: 'GET', url: '/exotel/passthru/none?CallSid=dq-1' });
  t.equal(cb.statusCode, 404);
  const list = await app.inject({ method: 'GET', url: '/admin/cdrs?callSid=dq-1', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  t.equal(list.statusCode, 200);
  t.same(
    list.json().items.map((c: { callSid: string }) => c.callSid),
    ['dq-1'],
    'the callback read CallSid from its query string, the admin route its filter',
  );
});
