/**
 * POST /admin/vip-lists/:slug/entries with Content-Type: text/csv: a CRM's CSV export imported as
 * the JSON array would be (merge, mode=replace, dryRun, maxRemoved), a header row naming the JSON
 * fields; a bad row is a 400 naming its line and column, and changes nothing.
 */
import t from 'tap';
import type { Test } from 'tap';
import { ADMIN_KEY, buildTestApp, type TestApp } from '../../helper.js';

const csv = (ctx: TestApp, url: string, payload: string) => ctx.admin({ method: 'POST', url, payload, headers: { 'content-type': 'text/csv' } });
const entriesOf = async (ctx: TestApp, slug: string) =>
  ((await ctx.admin({ method: 'GET', url: `/admin/vip-lists/${slug}/entries?limit=1000` })).json().items as Array<Record<string, unknown>>).map(
    ({ number, name, tier, note, expiresAt }) => ({ number, name, tier, note, expiresAt }),
  );
async function list(t: Test, ctx: TestApp, slug: string) {
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug, name: slug } })).statusCode, 201);
}

t.test('a CSV export with a header row is imported as the same entries in JSON would be', async (t) => {
  const ctx = await buildTestApp(t);
  await list(t, ctx, 'gold');
  await list(t, ctx, 'json');
  const rows = [
    { number: '09812345001', name: 'Asha', tier: 'platinum', note: 'line one\nline two, "quoted"', expiresAt: '2030-12-31T23:59:59+05:30' },
    { number: '+919812345002', name: 'Ravi', tier: null, note: null, expiresAt: null },
  ];
  const res = await csv(
    ctx,
    '/admin/vip-lists/gold/entries',
    '\ufeffnote,number,name,tier,expiresAt\r\n"line one\nline two, ""quoted""",09812345001,Asha,platinum,2030-12-31T23:59:59+05:30\r\n\r\n,+919812345002,Ravi,,\r\n',
  );
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json(), { inserted: 2, updated: 0 });
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/vip-lists/json/entries', payload: rows })).statusCode, 200);
  t.same(await entriesOf(ctx, 'gold'), await entriesOf(ctx, 'json'), 'the same entries as the JSON array gives: columns in any order, empty cells as null');

  const replaced = await csv(ctx, '/admin/vip-lists/gold/entries?mode=replace&dryRun=true', 'number\n09812345003\n');
  t.same(replaced.json(), { inserted: 1, updated: 0, removed: 2 }, 'mode=replace and dryRun as for JSON');
  const guarded = await csv(ctx, '/admin/vip-lists/gold/entries?mode=replace&maxRemoved=1', 'number\n09812345003\n');
  t.equal(guarded.statusCode, 409, 'and maxRemoved');
  t.equal((await entriesOf(ctx, 'gold')).length, 2);
  const header = await csv(ctx, '/admin/vip-lists/gold/entries?mode=replace', 'number,name\n');
  t.equal(header.statusCode, 400, 'a header alone is an empty export');
  t.match(header.json().message, /^body: an empty array with mode=replace would remove every entry/);
});

t.test('a bad CSV row is 400 naming its line and column, and nothing is written', async (t) => {
  const ctx = await buildTestApp(t);
  await list(t, ctx, 'gold');
  for (const [body, message] of [
    ['number,name\n09812345001,Asha\n\n"0000",Ravi\n', /^body: line 4, column number: '0000' is not a valid phone number/],
    ['number,note\n09812345001,"two\nlines"\n09812345002,ok\n09812345003,\n,no number\n', /^body: line 6, column number: is required$/],
    ['number,expiresAt\n09812345001,soon\n', /^body: line 2, column expiresAt: /],
    [`number,tier\n09812345001,${'x'.repeat(51)}\n`, /^body: line 2, column tier: /],
    [
      'number,phone\n09812345001,x\n',
      /^body: line 1: unknown column 'phone': the header row names the columns, of number \(required\), name, tier, note, expiresAt$/,
    ],
    ['name\nAsha\n', /^body: line 1: the header row has no 'number' column/],
    ['number,name,name\n09812345001,a,b\n', /^body: line 1: column 'name' is named twice/],
    ['number,name\n09812345001\n', /^body: is not valid CSV: Invalid Record Length: expect 2, got 1 on line 2/],
    ['number,name\n"09812345001,Asha\n', /^body: is not valid CSV: Quote Not Closed/],
    ['number,note\n09812345001,a\u0000b\n', /^body: line 2, column note: must not contain a NUL character/],
  ] as const) {
    const res = await csv(ctx, '/admin/vip-lists/gold/entries', body);
    t.equal(res.statusCode, 400, body);
    t.match(res.json().message, message);
  }
  t.same(await entriesOf(ctx, 'gold'), [], 'nothing written');
  const other = await ctx.admin({ method: 'POST', url: '/admin/vip-lists', payload: 'slug,name\ngold2,Gold\n', headers: { 'content-type': 'text/csv' } });
  t.equal(other.statusCode, 415, 'other routes still take JSON only');
  t.match(other.json().message, /^the body must be JSON: send it with Content-Type: application\/json \(it came as text\/csv\)/);
  const form = await ctx.admin({
    method: 'POST',
    url: '/admin/vip-lists/gold/entries',
    payload: 'number\n09812345001\n',
    headers: { 'content-type': 'text/plain' },
  });
  t.equal(form.statusCode, 415);
  t.equal(form.json().message, 'the body must be JSON or CSV: send it with Content-Type: application/json or text/csv (it came as text/plain)');
});

t.test('a CSV body has the JSON import limits: 10,000 rows and 16 MiB', async (t) => {
  const ctx = await buildTestApp(t);
  await list(t, ctx, 'gold');
  const rows = (count: number) => `number\n${Array.from({ length: count }, (_, i) => `98${String(i).padStart(8, '0')}`).join('\n')}\n`;
  const many = await csv(ctx, '/admin/vip-lists/gold/entries', rows(10_001));
  t.equal(many.statusCode, 400);
  t.match(many.json().message, /^body: has more than 10000 rows after the header row, the most one request takes: split the export/);
  // 16 MiB of short rows (1.5 million) is refused without parsing it all, which held the event loop (every callback) for seconds.
  let longest = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    longest = Math.max(longest, performance.now() - last);
    last = performance.now();
  }, 20);
  const huge = await csv(ctx, '/admin/vip-lists/gold/entries', `number\n${'9812345001\n'.repeat(1_500_000)}`);
  clearInterval(tick);
  longest = Math.max(longest, performance.now() - last); // the answer may come before a held-up tick does
  t.equal(huge.statusCode, 400);
  t.match(huge.json().message, /^body: has more than 10000 rows/);
  t.ok(longest < 1500, `the event loop was held ${Math.round(longest)} ms at most`);
  const big = await csv(ctx, '/admin/vip-lists/gold/entries', `number,note\n${'09812345001,x\n'.repeat(1_300_000)}`);
  t.equal(big.statusCode, 413);
  const full = await csv(ctx, '/admin/vip-lists/gold/entries', rows(10_000));
  t.same(full.json(), { inserted: 10_000, updated: 0 });
});

t.test(
  "an export saved as Excel's Windows-1252 is read in the charset its Content-Type names, and without one is a 400 naming the line, not stored as U+FFFD",
  async (t) => {
    const ctx = await buildTestApp(t);
    await list(t, ctx, 'gold');
    const latin = Buffer.from('number,name\n09812345001,Asha\n09812345002,José\n', 'latin1');
    const post = (type: string, payload: Buffer) =>
      ctx.app.inject({
        method: 'POST',
        url: '/admin/vip-lists/gold/entries',
        payload,
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': type },
      });
    const unnamed = await post('text/csv', latin);
    t.equal(unnamed.statusCode, 400, unnamed.body);
    t.match(unnamed.json().message, /^body: line 3 is not utf-8, the charset read when the Content-Type names none: save the export as UTF-8/);
    t.same(await entriesOf(ctx, 'gold'), [], 'nothing written');
    const unknown = await post('text/csv; charset=klingon', latin);
    t.equal(unknown.statusCode, 415);
    t.match(unknown.json().message, /^the body's charset "klingon" \(in its Content-Type\) is unknown/);
    const named = await post('text/csv; charset=windows-1252', latin);
    t.equal(named.statusCode, 200, named.body);
    t.same(
      (await entriesOf(ctx, 'gold')).map((e) => e.name),
      ['Asha', 'José'],
    );
    const utf8 = await post('text/csv; charset=utf-8', Buffer.from('number,name\n09812345003,Zoë\n'));
    t.equal(utf8.statusCode, 200);
    t.equal((await entriesOf(ctx, 'gold'))[2]?.name, 'Zoë');
  },
);

t.test('the OpenAPI document declares the CSV body beside JSON, and its example is an export the route imports', async (t) => {
  const ctx = await buildTestApp(t);
  await list(t, ctx, 'gold');
  const doc = (await ctx.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  const content = doc.paths['/admin/vip-lists/{slug}/entries'].post.requestBody.content;
  t.same(Object.keys(content).sort(), ['application/json', 'text/csv'], 'a generated client or Swagger UI can send either');
  t.equal(content['text/csv'].schema.type, 'string', 'a CSV is sent as text');
  t.match(content['text/csv'].schema.description, /header row/);
  const example = content['text/csv'].example as string;
  t.match(example, /^number,/, 'the example starts with its header row');
  const res = await csv(ctx, '/admin/vip-lists/gold/entries', example);
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json(), { inserted: 3, updated: 0 });
  t.ok(content['application/json'].schema, 'the JSON body is still declared');
});

t.test("a CSV saved by Excel where the list separator is ';' is a 400 saying so and how to re-save it, and nothing is written", async (t) => {
  // Excel in many European locales saves "CSV" with ';' between fields, and a comma inside a note
  // unquoted: the header row read as one unknown column, or a row with more cells than the header.
  const ctx = await buildTestApp(t);
  await list(t, ctx, 'gold');
  for (const body of [
    'number;name;tier\r\n09812345001;Asha;platinum\r\n09812345002;Ravi;\r\n',
    '\ufeffnumber;name;note\r\n09812345001;Asha;call after 5, weekdays\r\n',
  ]) {
    const res = await csv(ctx, '/admin/vip-lists/gold/entries', body);
    t.equal(res.statusCode, 400, JSON.stringify(body));
    t.match(
      res.json().message,
      /^body: line 1: the fields are separated by semicolons \(;\), not commas: save the file as comma-separated \(Excel: "CSV UTF-8 \(Comma delimited\)"/,
    );
  }
  t.same(await entriesOf(ctx, 'gold'), [], 'nothing written');
  const one = await csv(ctx, '/admin/vip-lists/gold/entries', 'number\n09812345001\n');
  t.equal(one.statusCode, 200, 'a file of one column, with no separator at all, is still taken');
});
