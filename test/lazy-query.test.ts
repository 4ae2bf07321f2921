import t from 'tap';
import { parse } from 'fast-querystring';
import { lazily, lazyQuerystring } from '../src/lazy-query.js';
import { buildTestApp } from './helper.js';

const QUERIES = ['', 'a=1', 'a=1&b=2&a=3', 'x=%20y+z&empty=&flag', '__proto__=1&constructor=2&toString=3', 'k%C3%A9y=v%E2%9C%93', 'limit=10&from=2026-01-01T00%3A00%3A00Z', 'bad=%zz'];

t.test('reads as fast-querystring, which Fastify would have used: values, keys, JSON, spread', async (t) => {
  for (const q of QUERIES) {
    const lazy = lazyQuerystring(q);
    const eager = parse(q) as Record<string, unknown>;
    t.same(Object.keys(lazy), Object.keys(eager), `keys of ${JSON.stringify(q)}`);
    t.equal(JSON.stringify(lazy), JSON.stringify(eager), `JSON of ${JSON.stringify(q)}`);
    t.same({ ...lazy }, { ...eager }, `spread of ${JSON.stringify(q)}`);
    for (const k of Object.keys(eager)) t.same(lazy[k], eager[k]);
    t.equal('a' in lazy, 'a' in eager);
  }
});

t.test('parsed at the first use, once; never when nothing reads it', async (t) => {
  let parses = 0;
  const counting = (text: string) => {
    parses++;
    return parse(text);
  };
  lazily('a=1&b=2', counting);
  t.equal(parses, 0, 'made, not read: not parsed');
  const q = lazily('a=1&b=2', counting);
  t.equal(q.a, '1');
  t.same(Object.keys(q), ['a', 'b']);
  t.equal(parses, 1, 'parsed once for all reads');
});

t.test('written in place as ajv coerces: set, define, delete', async (t) => {
  const q = lazyQuerystring('limit=10&x=1');
  q.limit = 10;
  Object.defineProperty(q, 'added', { value: true, enumerable: true, configurable: true, writable: true });
  delete q.x;
  t.same({ ...q }, { limit: 10, added: true });
});

t.test('through the app: an admin route still validates and coerces its query string', async (t) => {
  const app = await buildTestApp(t);
  const bad = await app.admin({ method: 'GET', url: '/admin/cdrs?limit=abc' });
  t.equal(bad.statusCode, 400, bad.body);
  t.match(bad.json().message, /limit/);
  const ok = await app.admin({ method: 'GET', url: '/admin/cdrs?limit=5' });
  t.equal(ok.statusCode, 200, ok.body);
});
