import t from 'tap';
import pg from 'pg';
import { buildSecondInstance, buildTestApp, lockWaiters } from '../../helper.js';
import { BOOTSTRAP_KEY_ID } from '../../../src/store/api-keys.js';
import { AuditQuerySchema } from '../../../src/schemas/audit.js';

interface Entry {
  number: string;
  name: string | null;
  tier: string | null;
  note: string | null;
  expiresAt: string | null;
}
interface AuditItem {
  action: string;
  entityId: string;
  apiKeyId: string | null;
  before: unknown;
  after: unknown;
}

/** `count` distinct valid Indian mobile numbers, national form without the 0: 98000xxxxx. */
const mobiles = (count: number, from = 0) => Array.from({ length: count }, (_, i) => `98${String(from + i).padStart(8, '0')}`);

t.test('admin VIP lists', async (t) => {
  const { admin, db } = await buildTestApp(t);
  const audit = async (slug: string): Promise<AuditItem[]> =>
    (await admin({ method: 'GET', url: `/admin/audit?entity=vip-list&entityId=${slug}` })).json().items;

  t.test('create answers 201 with the list, an entry count of 0 and timestamps', async (t) => {
    const res = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold customers' } });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.match(body, { slug: 'gold', name: 'Gold customers', description: null, entryCount: 0 });
    t.ok(Date.parse(body.createdAt) && Date.parse(body.updatedAt), 'createdAt and updatedAt are ISO instants');
    t.notOk('id' in body, 'the internal id is not part of the answer');
  });

  t.test('list answers every list by slug; get answers one', async (t) => {
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'blocked', name: 'Blocked', description: 'spam' } })).statusCode, 201);
    const list = await admin({ method: 'GET', url: '/admin/vip-lists' });
    t.equal(list.statusCode, 200);
    t.same(
      list.json().map((l: { slug: string }) => l.slug),
      ['blocked', 'gold'],
      'ordered by slug',
    );
    const one = await admin({ method: 'GET', url: '/admin/vip-lists/blocked' });
    t.equal(one.statusCode, 200);
    t.match(one.json(), { slug: 'blocked', name: 'Blocked', description: 'spam', entryCount: 0 });
  });

  t.test('patch changes only the fields given', async (t) => {
    const res = await admin({ method: 'PATCH', url: '/admin/vip-lists/blocked', payload: { name: 'Blocked callers' } });
    t.equal(res.statusCode, 200);
    t.match(res.json(), { slug: 'blocked', name: 'Blocked callers', description: 'spam' });
    const cleared = await admin({ method: 'PATCH', url: '/admin/vip-lists/blocked', payload: { description: null } });
    t.match(cleared.json(), { name: 'Blocked callers', description: null });
    t.match((await admin({ method: 'GET', url: '/admin/vip-lists/blocked' })).json(), { name: 'Blocked callers', description: null });
  });

  t.test('patch cannot rename the slug: it is an unknown field', async (t) => {
    const res = await admin({ method: 'PATCH', url: '/admin/vip-lists/blocked', payload: { slug: 'other' } });
    t.equal(res.statusCode, 400);
    t.match(res.json().message, 'body/slug: unknown field');
  });

  t.test('a second list with the same slug is 409', async (t) => {
    const res = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Again' } });
    t.equal(res.statusCode, 409);
    t.match(res.json(), { statusCode: 409, error: 'Conflict' });
    t.equal(
      res.json().message,
      "body/slug: a VIP list 'gold' already exists: choose another slug, or change that VIP list at /admin/vip-lists/gold",
      'the message names the field, the kind of object and the fix',
    );
    t.equal((await admin({ method: 'GET', url: '/admin/vip-lists/gold' })).json().name, 'Gold customers', 'the first is unchanged');
  });

  t.test('a slug with uppercase, spaces or over 64 characters is 400 naming body/slug', async (t) => {
    for (const slug of ['Gold', 'gold list', 'g'.repeat(65), '', 'gold_list']) {
      const res = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug, name: 'x' } });
      t.equal(res.statusCode, 400, JSON.stringify(slug));
      t.match(res.json(), { statusCode: 400, error: 'Bad Request', message: /^body\/slug: / }, JSON.stringify(slug));
    }
    t.ok((await db.prisma.vipList.findUnique({ where: { slug: 'g'.repeat(64) } })) === null);
    const longest = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'g'.repeat(64), name: 'x' } });
    t.equal(longest.statusCode, 201, '64 characters is still allowed');
  });

  t.test('unknown field, missing name and empty name are 400 naming the field', async (t) => {
    const extra = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'x', name: 'X', colour: 'red' } });
    t.equal(extra.statusCode, 400);
    t.match(extra.json().message, 'body/colour: unknown field');
    const missing = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'x' } });
    t.equal(missing.statusCode, 400);
    t.match(missing.json().message, 'body/name: is required');
    const empty = await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'x', name: '' } });
    t.equal(empty.statusCode, 400);
    t.match(empty.json().message, /^body\/name: /);
    t.equal(await db.prisma.vipList.count({ where: { slug: 'x' } }), 0, 'nothing was created');
  });

  t.test('a malformed JSON body is 400', async (t) => {
    const res = await admin({ method: 'POST', url: '/admin/vip-lists', payload: '{"slug": "x", ', headers: { 'content-type': 'application/json' } });
    t.equal(res.statusCode, 400);
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message: /JSON/ });
  });

  t.test('an unknown slug is 404 on get, patch, delete and entries', async (t) => {
    const calls = [
      { method: 'GET', url: '/admin/vip-lists/nope' },
      { method: 'PATCH', url: '/admin/vip-lists/nope', payload: { name: 'x' } },
      { method: 'DELETE', url: '/admin/vip-lists/nope' },
      { method: 'GET', url: '/admin/vip-lists/nope/entries' },
      { method: 'POST', url: '/admin/vip-lists/nope/entries', payload: { number: '09812345678' } },
      { method: 'POST', url: '/admin/vip-lists/nope/entries', payload: [{ number: '09812345678' }] },
      { method: 'DELETE', url: '/admin/vip-lists/nope/entries/09812345678' },
    ];
    for (const call of calls) {
      const res = await admin(call);
      t.equal(res.statusCode, 404, `${call.method} ${call.url}`);
      t.match(res.json(), { statusCode: 404, error: 'Not Found', message: /'nope' does not exist/ }, `${call.method} ${call.url}`);
    }
    t.equal(await db.prisma.vipEntry.count(), 0, 'no entry was written anywhere');
  });

  t.test('a malformed slug in the path is 400 naming params/slug', async (t) => {
    const res = await admin({ method: 'GET', url: '/admin/vip-lists/Gold' });
    t.equal(res.statusCode, 400);
    t.match(res.json().message, /^params\/slug: /);
  });

  t.test('one entry in national form is stored in E.164 and answered with 201', async (t) => {
    const res = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '09812345678' } });
    t.equal(res.statusCode, 201);
    t.match(res.json(), { number: '+919812345678', name: null, tier: null, note: null, expiresAt: null });
    t.equal((await admin({ method: 'GET', url: '/admin/vip-lists/gold' })).json().entryCount, 1);
  });

  t.test('the same number as +91… and 91… updates the entry (200), never a second row', async (t) => {
    const plus = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '+919812345678', name: 'Asha' } });
    t.equal(plus.statusCode, 200);
    t.match(plus.json(), { number: '+919812345678', name: 'Asha' });
    const bare = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '919812345678', name: 'Asha K' } });
    t.equal(bare.statusCode, 200);
    t.match(bare.json(), { number: '+919812345678', name: 'Asha K' });
    const rows = await db.prisma.vipEntry.findMany({ where: { list: { slug: 'gold' } } });
    t.same(
      rows.map((r) => [r.number, r.name]),
      [['+919812345678', 'Asha K']],
    );
  });

  t.test('name, tier, note and expiresAt round-trip, and an upsert replaces them all', async (t) => {
    const entry = { number: '+919812345679', name: 'Ravi', tier: 'platinum', note: 'CEO of a client', expiresAt: '2027-03-31T18:30:00.000Z' };
    const res = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: entry });
    t.equal(res.statusCode, 201);
    t.match(res.json(), entry);
    const listed = (await admin({ method: 'GET', url: '/admin/vip-lists/gold/entries?q=Ravi' })).json();
    t.match(listed.items, [entry]);
    t.equal(new Date(listed.items[0].expiresAt).getTime(), Date.parse(entry.expiresAt));
    const offset = await admin({
      method: 'POST',
      url: '/admin/vip-lists/gold/entries',
      payload: { number: '09812345679', expiresAt: '2027-04-01T00:00:00+05:30' },
    });
    t.equal(offset.statusCode, 200);
    t.match(offset.json(), { name: null, tier: null, note: null, expiresAt: '2027-03-31T18:30:00.000Z' }, 'fields not given are cleared; the instant is kept');
    const nulls = await admin({
      method: 'POST',
      url: '/admin/vip-lists/gold/entries',
      payload: { number: '09812345679', name: null, tier: '', note: null, expiresAt: null },
    });
    t.equal(nulls.statusCode, 200);
    t.strictSame(
      [nulls.json().name, nulls.json().tier, nulls.json().note, nulls.json().expiresAt],
      [null, '', null, null],
      'an explicit null stays null and an empty string stays empty (no type coercion between them)',
    );
  });

  t.test('a bad expiresAt or an unknown entry field is 400 naming it', async (t) => {
    const when = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '09812345670', expiresAt: 'next year' } });
    t.equal(when.statusCode, 400);
    t.match(when.json().message, /^body\/expiresAt: /);
    const extra = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: [{ number: '09812345670', vip: true }] });
    t.equal(extra.statusCode, 400);
    t.match(extra.json().message, 'body/0/vip: unknown field');
    t.equal(await db.prisma.vipEntry.count({ where: { number: '+919812345670' } }), 0);
  });

  t.test('an invalid number is 400 naming body/number', async (t) => {
    for (const number of ['12345', 'call me', '+1 555', '09812345678 ext 12']) {
      const res = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number } });
      t.equal(res.statusCode, 400, number);
      t.match(res.json().message, /^body\/number: .*(not a valid phone number|has an extension)/, number);
    }
  });

  t.test('in an array, an invalid number at index 2 is 400 naming body/2/number and nothing is written', async (t) => {
    const before = await db.prisma.vipEntry.count();
    const res = await admin({
      method: 'POST',
      url: '/admin/vip-lists/gold/entries',
      payload: [{ number: '09711111111' }, { number: '09722222222' }, { number: '0000' }, { number: '09733333333' }],
    });
    t.equal(res.statusCode, 400);
    t.match(res.json().message, /^body\/2\/number: '0000' is not a valid phone number/);
    t.equal(await db.prisma.vipEntry.count(), before, 'not even the valid entries before it');
  });

  t.test('an array wrapped in an object ({"entries": [...]}) is 400 saying to send the array itself', async (t) => {
    for (const key of ['entries', 'numbers', 'data']) {
      const res = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { [key]: [{ number: '09744444444' }] } });
      t.equal(res.statusCode, 400, key);
      t.match(res.json().message, new RegExp(`^body/${key}: send the array itself as the body`), key);
    }
    const field = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: ['09744444444'] } });
    t.match(field.json().message, /^body\/number: must be string/, 'an entry field holding an array is named as that field');
    t.equal(await db.prisma.vipEntry.count({ where: { number: '+919744444444' } }), 0);
  });

  t.test('an empty array is 400', async (t) => {
    const res = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: [] });
    t.equal(res.statusCode, 400);
  });

  t.test('10,000 numbers upsert in one request; the same again updates all of them', async (t) => {
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'bulk', name: 'Bulk' } })).statusCode, 201);
    const numbers = mobiles(10_000);
    const first = await admin({ method: 'POST', url: '/admin/vip-lists/bulk/entries', payload: numbers.map((n) => ({ number: `0${n}`, tier: 'gold' })) });
    t.equal(first.statusCode, 200);
    t.same(first.json(), { inserted: 10_000, updated: 0 });
    const second = await admin({ method: 'POST', url: '/admin/vip-lists/bulk/entries', payload: numbers.map((n) => ({ number: `+91${n}`, tier: 'silver' })) });
    t.equal(second.statusCode, 200);
    t.same(second.json(), { inserted: 0, updated: 10_000 });
    t.equal(await db.prisma.vipEntry.count({ where: { list: { slug: 'bulk' } } }), 10_000);
    t.equal(await db.prisma.vipEntry.count({ where: { list: { slug: 'bulk' }, tier: 'silver' } }), 10_000, 'the second request won');
    t.equal((await admin({ method: 'GET', url: '/admin/vip-lists/bulk' })).json().entryCount, 10_000);
  });

  t.test('more than 10,000 entries in one request is 400 and writes nothing', async (t) => {
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'too-many', name: 'Too many' } })).statusCode, 201);
    const res = await admin({ method: 'POST', url: '/admin/vip-lists/too-many/entries', payload: mobiles(10_001, 20_000).map((number) => ({ number })) });
    t.equal(res.statusCode, 400);
    t.match(res.json().message, 'body: must NOT have more than 10000 items');
    t.equal(await db.prisma.vipEntry.count({ where: { list: { slug: 'too-many' } } }), 0);
  });

  t.test('in one array a number given twice is one entry; the later one wins', async (t) => {
    const res = await admin({
      method: 'POST',
      url: '/admin/vip-lists/gold/entries',
      payload: [
        { number: '09744444444', name: 'first' },
        { number: '+919744444444', name: 'second' },
      ],
    });
    t.equal(res.statusCode, 200);
    t.same(res.json(), { inserted: 1, updated: 0 });
    t.same(
      (await db.prisma.vipEntry.findMany({ where: { number: '+919744444444' } })).map((e) => e.name),
      ['second'],
    );
  });

  t.test('paging with limit and cursor walks every entry once, oldest first', async (t) => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/admin/vip-lists/bulk/entries?limit=999${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await admin({ method: 'GET', url });
      t.equal(res.statusCode, 200);
      const page: { items: Entry[]; nextCursor: string | null } = res.json();
      t.ok(page.items.length <= 999);
      seen.push(...page.items.map((e) => e.number));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null && pages < 20);
    t.equal(pages, 11, '10,000 entries in pages of 999');
    t.equal(seen.length, 10_000);
    t.equal(new Set(seen).size, 10_000, 'no entry twice');
    t.same(seen.slice(0, 3), ['+919800000000', '+919800000001', '+919800000002'], 'in insertion order');
    const last = await admin({ method: 'GET', url: '/admin/vip-lists/bulk/entries?limit=10000' });
    t.equal(last.statusCode, 400, 'limit is at most 1000');
    t.match(last.json().message, /^querystring\/limit: /);
    const badCursor = await admin({ method: 'GET', url: '/admin/vip-lists/bulk/entries?cursor=abc' });
    t.equal(badCursor.statusCode, 400);
    t.match(badCursor.json().message, /^querystring\/cursor: /);
  });

  t.test('a cursor past the largest entry id (int4) ends the paging with an empty page, not a 500', async (t) => {
    for (const cursor of ['2147483647', '2147483648', '9999999999999999999']) {
      const res = await admin({ method: 'GET', url: `/admin/vip-lists/bulk/entries?cursor=${cursor}` });
      t.equal(res.statusCode, 200, `cursor=${cursor}: ${res.body.slice(0, 200)}`);
      t.same(res.json(), { items: [], nextCursor: null }, `cursor=${cursor}`);
    }
    const unknown = await admin({ method: 'GET', url: '/admin/vip-lists/no-such-list/entries?cursor=2147483648' });
    t.equal(unknown.statusCode, 404, 'an unknown list is still 404 whatever the cursor');
  });

  t.test('q finds entries by part of the number and by name, case-insensitive', async (t) => {
    await admin({
      method: 'POST',
      url: '/admin/vip-lists/blocked/entries',
      payload: [
        { number: '09811122233', name: 'Priya Sharma' },
        { number: '09655544433', name: 'PRIYANKA' },
        { number: '07012345678', name: 'Dev' },
      ],
    });
    const search = async (q: string) => {
      const res = await admin({ method: 'GET', url: `/admin/vip-lists/blocked/entries?q=${encodeURIComponent(q)}` });
      t.equal(res.statusCode, 200, q);
      return res
        .json()
        .items.map((e: Entry) => e.number)
        .sort();
    };
    t.same(await search('11122'), ['+919811122233'], 'digits in the middle of the number');
    t.same(await search('98111'), ['+919811122233']);
    t.same(await search('+91 70123'), ['+917012345678'], 'non-digits in q are ignored for the number');
    t.same(await search('priya'), ['+919655544433', '+919811122233'], 'name, any case');
    t.same(await search('SHARMA'), ['+919811122233']);
    t.same(await search('nobody'), []);
    t.same(await search('433'), ['+919655544433'], 'only entries of this list');
  });

  t.test('q as a whole number in national form (as entries are POSTed) finds its entry', async (t) => {
    const search = async (q: string) =>
      (await admin({ method: 'GET', url: `/admin/vip-lists/blocked/entries?q=${encodeURIComponent(q)}` })).json().items.map((e: Entry) => e.number);
    t.same(await search('09811122233'), ['+919811122233'], 'national form with the trunk 0');
    t.same(await search('098111 22233'), ['+919811122233'], 'national form with a space');
    t.same(await search('+919811122233'), ['+919811122233'], 'E.164');
    t.same(await search('9811122233'), ['+919811122233'], 'ten digits');
    t.same(await search('098111'), ['+919811122233'], 'the start of a national number, trunk 0 included');
    t.same(await search('09811122299'), [], 'another whole number finds nothing');
  });

  t.test('q is literal text in names: % and _ are not wildcards, nor is a backslash an escape', async (t) => {
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'names', name: 'Names' } })).statusCode, 201);
    const names = ['Asha', '50%_off', 'back\\slash', 'a_b'];
    const up = await admin({ method: 'POST', url: '/admin/vip-lists/names/entries', payload: names.map((name, i) => ({ number: `0981234500${i}`, name })) });
    t.equal(up.statusCode, 200);
    const search = async (q: string) =>
      (await admin({ method: 'GET', url: `/admin/vip-lists/names/entries?q=${encodeURIComponent(q)}` })).json().items.map((e: Entry) => e.name);
    t.same(await search('%'), ['50%_off'], 'only the name with a %');
    t.same(await search('_'), ['50%_off', 'a_b'], 'only the names with an _');
    t.same(await search('a%a'), [], 'no name contains the text a%a');
    t.same(await search('A_B'), ['a_b'], 'still any case');
    t.same(await search('k\\s'), ['back\\slash'], 'a backslash matches itself');
    t.same(await search('\\%'), [], 'no name contains a backslash followed by %');
  });

  t.test('DELETE of an entry by its national form is 204, then 404; an invalid number is 400', async (t) => {
    const res = await admin({ method: 'DELETE', url: '/admin/vip-lists/blocked/entries/09811122233' });
    t.equal(res.statusCode, 204);
    t.equal(res.body, '');
    t.equal(await db.prisma.vipEntry.count({ where: { number: '+919811122233' } }), 0);
    const again = await admin({ method: 'DELETE', url: `/admin/vip-lists/blocked/entries/${encodeURIComponent('+919811122233')}` });
    t.equal(again.statusCode, 404);
    t.match(again.json().message, /\+919811122233/);
    const bad = await admin({ method: 'DELETE', url: '/admin/vip-lists/blocked/entries/12ab' });
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /^params\/number: /);
    t.equal(await db.prisma.vipEntry.count({ where: { list: { slug: 'blocked' } } }), 2, 'the other entries stay');
  });

  t.test('a list a flow refers to cannot be deleted: 409 naming the flow', async (t) => {
    await db.prisma.flow.create({
      data: {
        slug: 'inbound',
        name: 'x',
        type: 'passthru',
        rules: [{ name: 'vip', when: { callerIn: 'gold' }, then: { branch: 'A' } }],
        otherwise: { branch: 'A' },
        onError: { branch: 'A' },
      },
    });
    const res = await admin({ method: 'DELETE', url: '/admin/vip-lists/gold' });
    t.equal(res.statusCode, 409);
    t.match(res.json(), { error: 'Conflict', message: /'inbound'/ });
    t.equal((await admin({ method: 'GET', url: '/admin/vip-lists/gold' })).statusCode, 200, 'the list is still there');
    t.ok((await db.prisma.vipEntry.count({ where: { list: { slug: 'gold' } } })) > 0, 'with its entries');
  });

  t.test('delete answers 204 and removes the list with its entries; then 404', async (t) => {
    const res = await admin({ method: 'DELETE', url: '/admin/vip-lists/blocked' });
    t.equal(res.statusCode, 204);
    t.equal(res.body, '');
    t.equal((await admin({ method: 'GET', url: '/admin/vip-lists/blocked' })).statusCode, 404);
    t.equal((await admin({ method: 'DELETE', url: '/admin/vip-lists/blocked' })).statusCode, 404);
    t.equal(await db.prisma.vipEntry.count({ where: { number: '+917012345678' } }), 0, 'entries went with it');
  });

  t.test('an array upsert is one audit entry with the updated rows as they were and as written', async (t) => {
    const res = await admin({
      method: 'POST',
      url: '/admin/vip-lists/names/entries',
      payload: [
        { number: '09812345009', name: 'New' },
        { number: '09812345000', name: 'Asha B', tier: 'gold', expiresAt: '2026-01-01T00:00:00Z' },
      ],
    });
    t.same(res.json(), { inserted: 1, updated: 1 });
    const [last] = await audit('names');
    t.match(last, {
      action: 'upsert-entries',
      before: { entries: [{ number: '+919812345000', name: 'Asha', tier: null, expiresAt: null }], entriesOmitted: 0 },
      after: {
        inserted: 1,
        updated: 1,
        numbers: ['+919812345009', '+919812345000'],
        numbersOmitted: 0,
        entries: [{ number: '+919812345000', name: 'Asha B', tier: 'gold', expiresAt: '2026-01-01T00:00:00.000Z' }],
        entriesOmitted: 0,
      },
    });
    t.equal((last!.before as { entries: unknown[] }).entries.length, 1, 'only the updated row, not the new one');

    const [second, first] = await audit('bulk');
    t.match(first, { before: null, after: { inserted: 10_000, updated: 0, numbersOmitted: 9_900, entries: [], entriesOmitted: 0 } });
    const b = second!.before as { entries: Entry[]; entriesOmitted: number };
    const a = second!.after as { numbers: string[]; numbersOmitted: number; entries: Entry[]; entriesOmitted: number };
    t.match(a, { inserted: 0, updated: 10_000, numbersOmitted: 9_900, entriesOmitted: 9_900 });
    t.equal(b.entriesOmitted, 9_900);
    t.same([a.numbers.length, b.entries.length, a.entries.length], [100, 100, 100], 'a bulk write shows the first 100 and counts the rest');
    t.match(b.entries[0], { number: '+919800000000', tier: 'gold' });
    t.match(a.entries[0], { number: '+919800000000', tier: 'silver' });
    t.same(
      a.entries.map((e) => e.number),
      b.entries.map((e) => e.number),
      'the same rows before and after',
    );
  });

  t.test('the audit filter documents the entity VIP entries are written under', async (t) => {
    const description = AuditQuerySchema.properties.entity.description ?? '';
    t.match(description, /vip-list/);
    t.notMatch(description, /vip-entry/, 'no entry is ever written with entity vip-entry');
    const asked = await admin({ method: 'GET', url: '/admin/audit?entity=vip-entry' });
    t.equal(asked.statusCode, 400, 'an entity nothing is written under is refused, not an empty trail');
    t.match(asked.json().message, /querystring\/entity/);
  });

  t.test('every write leaves an audit entry with the acting key, before and after', async (t) => {
    const blocked = await audit('blocked');
    t.same(
      blocked.map((a) => a.action),
      ['delete', 'delete-entry', 'upsert-entries', 'update', 'update', 'create'],
      'newest first',
    );
    t.ok(blocked.every((a) => a.apiKeyId === BOOTSTRAP_KEY_ID));
    const [deleted, deletedEntry, upserted, , renamed, created] = blocked;
    t.match(created, { before: null, after: { slug: 'blocked', name: 'Blocked', description: 'spam', entryCount: 0 } });
    t.match(renamed, { before: { name: 'Blocked' }, after: { name: 'Blocked callers' } });
    t.match(upserted, {
      before: null,
      after: { inserted: 3, updated: 0, numbers: ['+919811122233', '+919655544433', '+917012345678'], numbersOmitted: 0, entries: [], entriesOmitted: 0 },
    });
    t.match(deletedEntry, { before: { number: '+919811122233', name: 'Priya Sharma' }, after: null });
    t.match(deleted, { before: { slug: 'blocked', name: 'Blocked callers', entryCount: 2 }, after: null });

    const gold = await audit('gold');
    t.same(
      gold.map((a) => a.action),
      [...Array<string>(7).fill('upsert-entries'), 'create'],
    );
    t.match(gold[6], { before: null, after: { number: '+919812345678', name: null } }, 'one new entry: before null, after the row');
    t.match(
      gold[5],
      { before: { number: '+919812345678', name: null }, after: { number: '+919812345678', name: 'Asha' } },
      'an update by number is audited too',
    );
    t.match(
      gold[2],
      {
        before: { number: '+919812345679', name: 'Ravi', tier: 'platinum', note: 'CEO of a client', expiresAt: '2027-03-31T18:30:00.000Z' },
        after: { number: '+919812345679', name: null, tier: null, note: null, expiresAt: '2027-03-31T18:30:00.000Z' },
      },
      'one updated entry: the row as it was and as written',
    );

    t.same(
      (await audit('too-many')).map((a) => a.action),
      ['create'],
      'rejected writes leave no audit entry',
    );
    t.same(
      (await audit('nope')).map((a) => a.action),
      [],
    );
  });

  t.test('the audit shows a list and its entries as GET does: no internal row id, which no route takes', async (t) => {
    const gold = await audit('gold');
    const list = (await admin({ method: 'GET', url: '/admin/vip-lists/gold' })).json();
    const entries = (await admin({ method: 'GET', url: '/admin/vip-lists/gold/entries' })).json().items;
    const keys = (o: unknown) => Object.keys(o as object).sort();
    t.same(keys(gold.at(-1)!.after), keys(list), "the list's create: the fields GET shows");
    t.same(keys(gold[6]!.after), keys(entries[0]), "an entry's upsert: the fields GET .../entries shows");
    const ids: string[] = [];
    const walk = (value: unknown, where: string) => {
      if (value === null || typeof value !== 'object') return;
      for (const [k, v] of Object.entries(value)) {
        if (k === 'id' && !Array.isArray(value)) ids.push(`${where}/${k}`);
        else walk(v, `${where}/${k}`);
      }
    };
    for (const slug of ['gold', 'blocked', 'names', 'bulk']) {
      for (const [i, entry] of (await audit(slug)).entries()) {
        walk(entry.before, `${slug} ${i} ${entry.action} before`);
        walk(entry.after, `${slug} ${i} ${entry.action} after`);
      }
    }
    t.same(ids, [], 'no row id in any snapshot: creates, updates, upserts (one entry or many), deletes');
  });
});

t.test('two instances: a bulk import racing a delete of its list is 200/201 (the delete then takes the entries) or 404, never 500', async (t) => {
  const first = await buildTestApp(t);
  const second = await buildSecondInstance(t, first);
  for (let i = 0; i < 15; i++) {
    const slug = `race-${i}`;
    t.equal((await first.admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug, name: 'Race' } })).statusCode, 201);
    const [imported, deleted] = await Promise.all([
      first.admin({ method: 'POST', url: `/admin/vip-lists/${slug}/entries`, payload: mobiles(200, i * 1000).map((number) => ({ number })) }),
      second.admin({ method: 'DELETE', url: `/admin/vip-lists/${slug}` }),
    ]);
    t.equal(deleted.statusCode, 204, `round ${i}: the delete succeeds`);
    t.ok([200, 201, 404].includes(imported.statusCode), `round ${i}: the import is ${imported.statusCode}: ${imported.body.slice(0, 200)}`);
    if (imported.statusCode === 404) t.match(imported.json().message, `vip-list '${slug}' does not exist`);
    const left = await first.db.pool.query('SELECT count(*)::int AS n FROM vip_entries e LEFT JOIN vip_lists l ON l.id = e.list_id WHERE l.id IS NULL');
    t.equal(left.rows[0].n, 0, 'no entry outlives its list');
  }
});

t.test('two instances: concurrent PATCHes of one VIP list each audit as before what the other left', async (t) => {
  const first = await buildTestApp(t);
  const second = await buildSecondInstance(t, first);
  for (let i = 0; i < 15; i++) {
    const slug = `race-${i}`;
    t.equal((await first.admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug, name: 'Race' } })).statusCode, 201);
    const answers = await Promise.all([
      first.admin({ method: 'PATCH', url: `/admin/vip-lists/${slug}`, payload: { name: 'By one' } }),
      second.admin({ method: 'PATCH', url: `/admin/vip-lists/${slug}`, payload: { description: 'by two' } }),
    ]);
    t.same(
      answers.map((a) => a.statusCode),
      [200, 200],
    );
    const [later, earlier] = (await first.admin({ method: 'GET', url: `/admin/audit?entity=vip-list&entityId=${slug}` })).json().items;
    t.same(later.before, earlier.after, `round ${i}: the later PATCH audits what the earlier one left`);
    t.match((await first.admin({ method: 'GET', url: `/admin/vip-lists/${slug}` })).json(), { name: 'By one', description: 'by two' });
  }
});

t.test('two instances: two bulk imports of the same new numbers in opposite orders both succeed (no deadlock, no 500)', async (t) => {
  const first = await buildTestApp(t);
  const second = await buildSecondInstance(t, first);
  const entries = mobiles(1000).map((number) => ({ number }));
  for (let i = 0; i < 20; i++) {
    const slug = `race-${i}`;
    t.equal((await first.admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug, name: 'Race' } })).statusCode, 201);
    const answers = await Promise.all([
      first.admin({ method: 'POST', url: `/admin/vip-lists/${slug}/entries`, payload: entries }),
      second.admin({ method: 'POST', url: `/admin/vip-lists/${slug}/entries`, payload: [...entries].reverse() }),
    ]);
    t.same(
      answers.map((a) => a.statusCode),
      [200, 200],
      `round ${i}`,
    );
    t.same(
      answers.map((a) => a.json()).sort((a, b) => a.inserted - b.inserted),
      [
        { inserted: 0, updated: 0 },
        { inserted: 1000, updated: 0 },
      ],
      `round ${i}: one inserted every number, the other found them as it would write them`,
    );
    t.equal((await first.admin({ method: 'GET', url: `/admin/vip-lists/${slug}` })).json().entryCount, 1000);
  }
});

t.test('two instances: two DELETEs of one VIP entry at once: one is 204, the other a 404 naming the entry; one audit entry', async (t) => {
  const first = await buildTestApp(t);
  const second = await buildSecondInstance(t, first);
  t.equal((await first.admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'race', name: 'Race' } })).statusCode, 201);
  for (let i = 0; i < 15; i++) {
    t.equal((await first.admin({ method: 'POST', url: '/admin/vip-lists/race/entries', payload: { number: '09812345678' } })).statusCode, 201);
    const answers = await Promise.all([first, second].map((app) => app.admin({ method: 'DELETE', url: '/admin/vip-lists/race/entries/09812345678' })));
    t.same(answers.map((a) => a.statusCode).sort(), [204, 404], `round ${i}`);
    const refused = answers.find((a) => a.statusCode === 404);
    if (refused) t.equal(refused.json().message, "entry of vip-list race '+919812345678' does not exist", `round ${i}: the 404 names the entry`);
  }
  const trail = (await first.admin({ method: 'GET', url: '/admin/audit?entity=vip-list&entityId=race&limit=100' })).json().items;
  t.equal(trail.filter((a: { action: string }) => a.action === 'delete-entry').length, 15, 'each entry deleted once');
});

t.test('entries sent again as they are stored (a sync script applying its list again) change nothing: no count, no updatedAt, no audit entry', async (t) => {
  const { admin } = await buildTestApp(t);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  const list = [
    { number: '09812345001', name: 'Asha', tier: 'gold', note: null, expiresAt: '2030-12-31T23:59:59+05:30' },
    { number: '09812345002' },
    ...mobiles(300).map((n) => ({ number: n, tier: 'silver' })),
  ];
  t.same((await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: list })).json(), { inserted: 302, updated: 0 });
  const trail = async () => (await admin({ method: 'GET', url: '/admin/audit?entity=vip-list&entityId=gold' })).json().items as AuditItem[];
  const page = async () => (await admin({ method: 'GET', url: '/admin/vip-lists/gold/entries?limit=1000' })).json().items;
  const stored = await page();
  const entries = (await trail()).length;

  const again = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: list });
  t.same(again.json(), { inserted: 0, updated: 0 }, 'nothing differed');
  const asListed = await admin({
    method: 'POST',
    url: '/admin/vip-lists/gold/entries',
    payload: stored.map(({ createdAt: _c, updatedAt: _u, ...e }: Record<string, unknown>) => e),
  });
  t.same(asListed.json(), { inserted: 0, updated: 0 }, 'the entries as GET lists them, too');
  const one = await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '+919812345002' } });
  t.equal(one.statusCode, 200);
  t.same(one.json(), stored[1], 'one entry: answered as it is');
  t.same(await page(), stored, 'every updatedAt kept');
  const listed = (await admin({ method: 'GET', url: '/admin/vip-lists/gold' })).json();
  const patched = await admin({ method: 'PATCH', url: '/admin/vip-lists/gold', payload: { name: listed.name, description: listed.description } });
  t.same(patched.json(), listed, "the list's PATCH with what it holds: answered as it is, updatedAt included");
  t.equal((await trail()).length, entries, 'no audit entry');

  const changed = await admin({
    method: 'POST',
    url: '/admin/vip-lists/gold/entries',
    payload: [...list.slice(0, 150), { number: `0${mobiles(300)[200]}`, tier: 'gold' }],
  });
  t.same(changed.json(), { inserted: 0, updated: 1 }, 'only the entry that differs is updated');
  const [last] = await trail();
  t.match(last, { action: 'upsert-entries', before: { entries: [{ tier: 'silver' }], entriesOmitted: 0 }, after: { updated: 1, entries: [{ tier: 'gold' }] } });
});

t.test(
  'a list with long notes sent again before Postgres has statistics of it (loaded batch after batch) is answered at once, not after minutes as a 500',
  async (t) => {
    const { admin, db } = await buildTestApp(t);
    // As right after a load: no statistics of the new rows (autovacuum would gather them within a
    // minute or so). A cap on statements, set before the admin API opens its connections, so that
    // the plan this is about fails in seconds rather than after minutes.
    await db.pool.query('ALTER TABLE vip_entries SET (autovacuum_enabled = false)');
    const { rows } = await db.pool.query<{ name: string }>('SELECT current_database() AS name');
    await db.pool.query(`ALTER DATABASE "${rows[0]!.name}" SET statement_timeout = '20s'`);
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'crm', name: 'CRM export' } })).statusCode, 201);
    const list = mobiles(6000).map((number, i) => ({ number, name: `Customer ${i}`, note: `${'account history '.repeat(90)}${i}` }));
    t.same((await admin({ method: 'POST', url: '/admin/vip-lists/crm/entries', payload: list })).json(), { inserted: 6000, updated: 0 });
    const again = await admin({ method: 'POST', url: '/admin/vip-lists/crm/entries', payload: list });
    t.equal(again.statusCode, 200, again.body.slice(0, 300));
    t.same(again.json(), { inserted: 0, updated: 0 }, 'nothing differed');
    const changed = list.map((e, i) => (i % 1000 === 999 ? { ...e, tier: 'gold' } : e));
    t.same((await admin({ method: 'POST', url: '/admin/vip-lists/crm/entries', payload: changed })).json(), { inserted: 0, updated: 6 }, 'the changed ones');
    const audit = (await admin({ method: 'GET', url: '/admin/audit?entity=vip-list&entityId=crm&limit=1' })).json().items[0] as AuditItem;
    t.match(audit.after, { updated: 6, entriesOmitted: 0 });
    t.same(
      (audit.after as { entries: Entry[] }).entries.map((e) => [e.number, e.tier]),
      [999, 1999, 2999, 3999, 4999, 5999].map((i) => [`+91${mobiles(1, i)[0]}`, 'gold']),
      'audited, by id',
    );
  },
);

t.test('an import that waits its turn behind another write to the list for more than 5 s is written when its turn comes, not answered 500', async (t) => {
  const { admin, db } = await buildTestApp(t);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  // Another import into the list (as a big one with long notes on a busy database) holds its turn.
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('BEGIN');
  await other.query(`SELECT id FROM vip_lists WHERE slug = 'gold' FOR NO KEY UPDATE`);
  const pending = admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: mobiles(100).map((number) => ({ number })) });
  await lockWaiters(t, db.pool, 1, { query: '%FOR NO KEY UPDATE%' });
  // The turn lasts longer than Prisma's default transaction timeout (5 s): the duration is the case.
  await new Promise((r) => setTimeout(r, 5500));
  await other.query('COMMIT');
  const res = await pending;
  t.equal(res.statusCode, 200, res.body.slice(0, 300));
  t.same(res.json(), { inserted: 100, updated: 0 });
});

t.test('a rename or a delete of the list that waits its turn behind an import for more than 5 s is done when its turn comes, not answered 500', async (t) => {
  // Imports may take 60 s, waiting included; a PATCH or DELETE of the list (which lock its row as
  // an import does) kept Prisma's 5 s and was a 500 behind a long import.
  const { admin, db } = await buildTestApp(t);
  for (const slug of ['gold', 'silver']) {
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug, name: slug } })).statusCode, 201);
  }
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('BEGIN');
  await other.query(`SELECT id FROM vip_lists WHERE slug IN ('gold', 'silver') FOR NO KEY UPDATE`);
  const rename = admin({ method: 'PATCH', url: '/admin/vip-lists/gold', payload: { name: 'Gold customers' } });
  const remove = admin({ method: 'DELETE', url: '/admin/vip-lists/silver' });
  await lockWaiters(t, db.pool, 2, { query: '%FOR UPDATE%' });
  // The import's turn lasts longer than Prisma's default transaction timeout (5 s): the duration is the case.
  await new Promise((r) => setTimeout(r, 5500));
  await other.query('COMMIT');
  const [renamed, removed] = await Promise.all([rename, remove]);
  t.equal(renamed.statusCode, 200, renamed.body.slice(0, 300));
  t.equal(renamed.json().name, 'Gold customers');
  t.equal(removed.statusCode, 204, removed.body.slice(0, 300));
});

t.test(
  "a DELETE of an entry sent while an import is changing it takes its turn: its audit entry's before is the entry it deleted, not the import's before",
  async (t) => {
    const { admin, db } = await buildTestApp(t);
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: { number: '09812345678', name: 'Asha' } })).statusCode, 201);
    // An import into the list (as a CRM export's) in progress: it holds the list's turn and has renamed the entry, uncommitted.
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    t.teardown(() => other.end());
    await other.query('BEGIN');
    await other.query(`SELECT id FROM vip_lists WHERE slug = 'gold' FOR NO KEY UPDATE`);
    await other.query(`UPDATE vip_entries SET name = 'Asha Rao', updated_at = now() WHERE number = '+919812345678'`);
    const pending = admin({ method: 'DELETE', url: '/admin/vip-lists/gold/entries/09812345678' });
    await lockWaiters(t, db.pool, 1);
    await other.query('COMMIT');
    const res = await pending;
    t.equal(res.statusCode, 204, res.body);
    const [last] = (await admin({ method: 'GET', url: '/admin/audit?entity=vip-list&entityId=gold&limit=1' })).json().items as AuditItem[];
    t.match(last, { action: 'delete-entry', before: { number: '+919812345678', name: 'Asha Rao' }, after: null }, 'the entry as it was deleted');
  },
);
