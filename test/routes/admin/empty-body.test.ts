import t from 'tap';
import { buildTestApp } from '../../helper.js';

const json = { 'content-type': 'application/json' };

t.test('an empty body with a JSON content type is no body: DELETE and GET work as curl users send them', async (t) => {
  const { admin } = await buildTestApp(t);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '09812345678' } })).statusCode, 201);
  const get = await admin({ method: 'GET', url: '/admin/vip-lists/gold', headers: json, payload: '' });
  t.equal(get.statusCode, 200, get.body);
  const entry = await admin({ method: 'DELETE', url: '/admin/vip-lists/gold/entries/09812345678', headers: json, payload: '' });
  t.equal(entry.statusCode, 204, entry.body);
  const list = await admin({ method: 'DELETE', url: '/admin/vip-lists/gold', headers: { 'content-type': 'application/json; charset=utf-8' }, payload: '' });
  t.equal(list.statusCode, 204, list.body);
});

t.test('where a body is expected, an empty one is still a 400 that names the body', async (t) => {
  const { admin } = await buildTestApp(t);
  const res = await admin({ method: 'POST', url: '/admin/vip-lists', headers: json, payload: '' });
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /^body/);
  const broken = await admin({ method: 'POST', url: '/admin/vip-lists', headers: json, payload: '{"slug":' });
  t.equal(broken.statusCode, 400, 'broken JSON is still refused');
});

t.test("a JSON body sent without the JSON content type (curl's -d alone sends a form) is a 415 saying to send application/json", async (t) => {
  const { admin } = await buildTestApp(t);
  const body = '{"slug":"gold","name":"Gold customers"}';
  for (const type of ['application/x-www-form-urlencoded', 'text/plain', 'text/plain; charset=utf-8']) {
    const res = await admin({ method: 'POST', url: '/admin/vip-lists', headers: { 'content-type': type }, payload: body });
    t.equal(res.statusCode, 415, type);
    t.equal(
      res.json().message,
      `the body must be JSON: send it with Content-Type: application/json (it came as ${type.split(';')[0]})`,
      `${type}: says what to send`,
    );
  }
  t.equal((await admin({ method: 'GET', url: '/admin/vip-lists/gold' })).statusCode, 404, 'nothing was written');
  const empty = await admin({ method: 'DELETE', url: '/admin/vip-lists/gold', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: '' });
  t.equal(empty.statusCode, 404, 'an empty body of another type is still no body');
});

t.test(
  "a mistyped path or a method the path does not take, sent as the README's `api` alias sends it (JSON content type, no body), is the 404 or 405 that says so, not 'Body cannot be empty'",
  async (t) => {
    const { admin } = await buildTestApp(t);
    const typo = await admin({ method: 'DELETE', url: '/admin/vip-list/gold', headers: json, payload: '' });
    t.equal(typo.statusCode, 404, typo.body);
    t.match(typo.json(), { message: 'no route DELETE /admin/vip-list/gold' });
    const method = await admin({ method: 'PUT', url: '/admin/cdrs', headers: json, payload: '' });
    t.equal(method.statusCode, 405, method.body);
    t.equal(method.headers.allow, 'GET, HEAD');
    // Nor does a body the route would not read decide the answer, whatever it holds or is sent as.
    for (const [type, payload] of [
      ['application/json', '{"slug":"gold",}'],
      ['application/x-www-form-urlencoded', 'slug=gold'],
      ['application/xml', '<slug>gold</slug>'],
    ]) {
      const res = await admin({ method: 'POST', url: '/admin/vip-list', headers: { 'content-type': type! }, payload: payload! });
      t.equal(res.statusCode, 404, `${type}: ${res.body}`);
    }
  },
);
