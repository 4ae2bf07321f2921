/**
 * POST /admin/vip-lists/:slug/entries?mode=replace: a VIP list kept in step with a CRM export. The
 * list afterwards holds exactly the entries sent, in one transaction; an empty or single-entry body,
 * or one with an invalid entry, changes nothing.
 */
import t from 'tap';
import type { Test } from 'tap';
import pg from 'pg';
import { buildTestApp, lockWaiters, type TestApp } from '../../helper.js';

interface AuditItem {
  action: string;
  before: unknown;
  after: unknown;
}

/** `count` distinct valid Indian mobile numbers, national form without the 0: 98000xxxxx. */
const mobiles = (count: number, from = 0) => Array.from({ length: count }, (_, i) => `98${String(from + i).padStart(8, '0')}`);

async function listWith(t: Test, ctx: TestApp, slug: string, entries: unknown[]) {
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug, name: slug } })).statusCode, 201);
  t.equal((await ctx.admin({ method: 'POST', url: `/admin/vip-lists/${slug}/entries`, payload: entries })).statusCode, 200);
}
const numbersOf = async (ctx: TestApp, slug: string) =>
  ((await ctx.admin({ method: 'GET', url: `/admin/vip-lists/${slug}/entries?limit=1000` })).json().items as Array<{ number: string }>)
    .map((e) => e.number)
    .sort();
const trail = async (ctx: TestApp, slug: string) =>
  (await ctx.admin({ method: 'GET', url: `/admin/audit?entity=vip-list&entityId=${slug}` })).json().items as AuditItem[];

t.test('mode=replace leaves exactly the entries sent: counts inserted, updated and removed; one replace-entries audit entry', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(t, ctx, 'gold', [
    { number: '09812345001', name: 'Asha' },
    { number: '09812345002', name: 'Ravi' },
    { number: '09812345003', name: 'Meena', tier: 'gold' },
  ]);
  const res = await ctx.admin({
    method: 'POST',
    url: '/admin/vip-lists/gold/entries?mode=replace',
    payload: [{ number: '+919812345001', name: 'Asha' }, { number: '09812345002', name: 'Ravi K' }, { number: '09812345004' }],
  });
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json(), { inserted: 1, updated: 1, removed: 1 }, 'Asha as stored counts as neither');
  t.same(await numbersOf(ctx, 'gold'), ['+919812345001', '+919812345002', '+919812345004'], 'Meena, not in the export, is gone');
  t.equal((await ctx.admin({ method: 'GET', url: '/admin/vip-lists/gold' })).json().entryCount, 3);
  const [last] = await trail(ctx, 'gold');
  t.match(last, {
    action: 'replace-entries',
    before: {
      entries: [{ number: '+919812345002', name: 'Ravi' }],
      entriesOmitted: 0,
      removed: [{ number: '+919812345003', name: 'Meena', tier: 'gold' }],
      removedOmitted: 0,
    },
    after: { inserted: 1, updated: 1, removed: 1, numbers: ['+919812345001', '+919812345002', '+919812345004'], entries: [{ name: 'Ravi K' }] },
  });
  t.notOk('id' in (last!.before as { removed: object[] }).removed[0]!, 'removed entries shown as GET shows them, no row id');

  const again = await ctx.admin({
    method: 'POST',
    url: '/admin/vip-lists/gold/entries?mode=replace',
    payload: [{ number: '09812345004' }, { number: '09812345001', name: 'Asha' }, { number: '09812345002', name: 'Ravi K' }],
  });
  t.same(again.json(), { inserted: 0, updated: 0, removed: 0 }, 'the same export again changes nothing');
  t.equal((await trail(ctx, 'gold')).length, 3, 'and leaves no audit entry');
});

t.test('without mode, or with mode=merge, entries not sent stay in the list', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(t, ctx, 'gold', [{ number: '09812345001' }, { number: '09812345002' }]);
  for (const url of ['/admin/vip-lists/gold/entries', '/admin/vip-lists/gold/entries?mode=merge']) {
    const res = await ctx.admin({ method: 'POST', url, payload: [{ number: '09812345003' }] });
    t.same(res.json(), { inserted: res.json().inserted, updated: 0 }, `${url}: no removed count`);
  }
  t.same(await numbersOf(ctx, 'gold'), ['+919812345001', '+919812345002', '+919812345003']);
  const bad = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=overwrite', payload: [{ number: '09812345004' }] });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /^querystring\/mode: .*merge.*replace/, 'an unknown mode names the field and its values');
  const typo = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mdoe=replace', payload: [{ number: '09812345004' }] });
  t.equal(typo.statusCode, 400, 'a misspelt parameter is not taken as a merge');
  t.match(typo.json().message, /^querystring\/mdoe: unknown/);
  t.same(await numbersOf(ctx, 'gold'), ['+919812345001', '+919812345002', '+919812345003'], 'neither wrote anything');
});

t.test('mode=replace with an empty array is 400 saying what to do, and changes nothing; allowEmpty=true empties the list', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(t, ctx, 'gold', [{ number: '09812345001' }, { number: '09812345002' }]);
  const res = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace', payload: [] });
  t.equal(res.statusCode, 400);
  t.equal(
    res.json().message,
    "body: an empty array with mode=replace would remove every entry of VIP list 'gold': send the list's entries, or add allowEmpty=true to the query string to empty it on purpose",
  );
  const merge = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: [] });
  t.equal(merge.statusCode, 400, 'an empty array to merge is still a 400');
  t.match(merge.json().message, /^body: the array is empty/);
  t.same(await numbersOf(ctx, 'gold'), ['+919812345001', '+919812345002'], 'nothing removed');
  t.equal((await trail(ctx, 'gold')).length, 2, 'nor audited');

  const emptied = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace&allowEmpty=true', payload: [] });
  t.equal(emptied.statusCode, 200, emptied.body);
  t.same(emptied.json(), { inserted: 0, updated: 0, removed: 2 });
  t.same(await numbersOf(ctx, 'gold'), []);
  t.match((await trail(ctx, 'gold'))[0], { action: 'replace-entries', before: { removed: [{ number: '+919812345001' }, { number: '+919812345002' }] } });
});

t.test('mode=replace with one entry (not an array) is 400 saying to send the array, and changes nothing', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(t, ctx, 'gold', [{ number: '09812345001' }, { number: '09812345002' }]);
  const res = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace', payload: { number: '09812345003' } });
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /^body: mode=replace takes the whole list as an array/);
  t.same(await numbersOf(ctx, 'gold'), ['+919812345001', '+919812345002']);
});

t.test('mode=replace with an invalid entry is 400 naming it, and nothing is removed or written', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(t, ctx, 'gold', [{ number: '09812345001' }, { number: '09812345002' }]);
  for (const [payload, message] of [
    [[{ number: '09812345003' }, { number: '0000' }], /^body\/1\/number: '0000' is not a valid phone number/],
    [[{ number: '09812345003' }, { number: '09812345004', tier: 7 }], /^body\/1\/tier: /],
  ] as const) {
    const res = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace', payload: [...payload] });
    t.equal(res.statusCode, 400);
    t.match(res.json().message, message);
  }
  t.same(await numbersOf(ctx, 'gold'), ['+919812345001', '+919812345002']);
});

t.test('a callback during a replace decides by the list as it was, and right after its answer by the new one', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(t, ctx, 'gold', [{ number: '09812345001' }, { number: '09812345002' }]);
  const flow = {
    slug: 'vip',
    name: 'VIP',
    type: 'passthru',
    rules: [{ when: { callerIn: 'gold' }, then: { branch: 'A' } }],
    otherwise: { branch: 'B' },
    onError: { branch: 'B' },
  };
  t.equal((await ctx.admin({ method: 'POST', url: '/admin/flows', payload: flow })).statusCode, 201);
  let sid = 0;
  const isVip = async (from: string) => {
    const res = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/vip?CallSid=replace-${++sid}&CallFrom=${from}` });
    return res.statusCode === 200;
  };
  // Another writer holds one of the new numbers (uncommitted): the replace has removed what it removes and waits to insert it.
  const { rows } = await ctx.db.pool.query<{ id: number }>(`SELECT id FROM vip_lists WHERE slug = 'gold'`);
  const other = new pg.Client({ connectionString: ctx.db.url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('BEGIN');
  await other.query(`INSERT INTO vip_entries (list_id, number, updated_at) VALUES ($1, '+919812345003', now())`, [rows[0]!.id]);
  const pending = ctx.admin({
    method: 'POST',
    url: '/admin/vip-lists/gold/entries?mode=replace',
    payload: [{ number: '09812345002' }, { number: '09812345003' }],
  });
  await lockWaiters(t, ctx.db.pool, 1, { query: '%INSERT INTO vip_entries%' });
  t.same([await isVip('09812345001'), await isVip('09812345002'), await isVip('09812345003')], [true, true, false], 'meanwhile: the old list, whole');
  await other.query('ROLLBACK');
  const res = await pending;
  t.same(res.json(), { inserted: 1, updated: 0, removed: 1 });
  t.same([await isVip('09812345001'), await isVip('09812345002'), await isVip('09812345003')], [false, true, true], 'after the answer: the new list');
});

t.test('10,000 entries replaced by 10,000 others in one request', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(
    t,
    ctx,
    'bulk',
    mobiles(10_000).map((number) => ({ number })),
  );
  const res = await ctx.admin({
    method: 'POST',
    url: '/admin/vip-lists/bulk/entries?mode=replace',
    payload: mobiles(10_000, 5_000).map((number) => ({ number, tier: 'gold' })),
  });
  t.equal(res.statusCode, 200, res.body.slice(0, 300));
  t.same(res.json(), { inserted: 5_000, updated: 5_000, removed: 5_000 });
  t.equal((await ctx.admin({ method: 'GET', url: '/admin/vip-lists/bulk' })).json().entryCount, 10_000);
  t.equal(await ctx.db.prisma.vipEntry.count({ where: { list: { slug: 'bulk' }, number: { lt: '+919800005000' } } }), 0, 'the first 5,000 are gone');
  const [last] = await trail(ctx, 'bulk');
  t.match(last, { action: 'replace-entries', before: { removedOmitted: 4_900, entriesOmitted: 4_900 }, after: { removed: 5_000, numbersOmitted: 9_900 } });
  t.equal((last!.before as { removed: unknown[] }).removed.length, 100, 'the first 100 removed are shown, the rest counted');
});

t.test('maxRemoved: a replace that would remove more entries (a truncated export) is 409 naming how many and the limit, and changes nothing', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(
    t,
    ctx,
    'gold',
    mobiles(20).map((number) => ({ number })),
  );
  const truncated = mobiles(3).map((number) => ({ number, tier: 'gold' }));
  const res = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace&maxRemoved=10', payload: truncated });
  t.equal(res.statusCode, 409, res.body);
  t.equal(
    res.json().message,
    "mode=replace would remove 17 of the 20 entries of VIP list 'gold', more than maxRemoved=10: nothing was changed; check that the export is whole, or raise maxRemoved if so many are meant to go",
  );
  t.equal((await numbersOf(ctx, 'gold')).length, 20, 'nothing removed');
  t.equal(await ctx.db.prisma.vipEntry.count({ where: { tier: 'gold' } }), 0, 'nothing updated');
  t.equal((await trail(ctx, 'gold')).length, 2, 'nor audited');

  const within = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace&maxRemoved=17', payload: truncated });
  t.equal(within.statusCode, 200, within.body);
  t.same(within.json(), { inserted: 0, updated: 3, removed: 17 }, 'exactly the limit is allowed');

  const merge = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?maxRemoved=0', payload: truncated });
  t.equal(merge.statusCode, 400);
  t.match(merge.json().message, /^querystring\/maxRemoved: limits what mode=replace removes/, 'without mode=replace it is a 400, not ignored');
  const negative = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace&maxRemoved=-1', payload: truncated });
  t.equal(negative.statusCode, 400);
  t.match(negative.json().message, /^querystring\/maxRemoved: /);
});

t.test('dryRun=true answers what a replace would do, and its refusals, but changes nothing and leaves no audit entry', async (t) => {
  const ctx = await buildTestApp(t);
  await listWith(t, ctx, 'gold', [{ number: '09812345001', name: 'Asha' }, { number: '09812345002', name: 'Ravi' }, { number: '09812345003' }]);
  const payload = [{ number: '09812345001', name: 'Asha' }, { number: '09812345002', name: 'Ravi K' }, { number: '09812345004' }];
  const dry = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace&dryRun=true', payload });
  t.equal(dry.statusCode, 200, dry.body);
  t.same(dry.json(), { inserted: 1, updated: 1, removed: 1 });
  t.same(await numbersOf(ctx, 'gold'), ['+919812345001', '+919812345002', '+919812345003'], 'the list is as it was');
  t.equal((await ctx.db.prisma.vipEntry.findFirst({ where: { number: '+919812345002' } }))?.name, 'Ravi', 'no entry updated');
  t.equal((await trail(ctx, 'gold')).length, 2, 'no audit entry');

  const refused = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace&dryRun=true&maxRemoved=0', payload });
  t.equal(refused.statusCode, 409, 'maxRemoved is checked in a dry run too');
  const one = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?dryRun=true', payload: { number: '09812345005', name: 'Meena' } });
  t.equal(one.statusCode, 201, 'one new entry: 201 and the entry, as a real write');
  t.match(one.json(), { number: '+919812345005', name: 'Meena' });
  t.equal((await numbersOf(ctx, 'gold')).length, 3, 'and it was not kept');
  const missing = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/nope/entries?mode=replace&dryRun=true', payload });
  t.equal(missing.statusCode, 404);

  const real = await ctx.admin({ method: 'POST', url: '/admin/vip-lists/gold/entries?mode=replace', payload });
  t.same(real.json(), dry.json(), 'the real write answers as the dry run did');
});
