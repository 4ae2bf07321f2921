import t from 'tap';
import { buildTestApp } from '../../helper.js';

interface AuditPage {
  items: Array<{ id: string; action: string; entity: string; entityId: string }>;
  nextCursor: string | null;
}

t.test('admin audit trail', async (t) => {
  const { admin } = await buildTestApp(t);
  const slugs = ['a', 'b', 'c', 'd', 'e'].map((c) => `list-${c}`);
  for (const slug of slugs) {
    t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug, name: slug } })).statusCode, 201, slug);
  }
  const page = async (query: string): Promise<AuditPage> => {
    const res = await admin({ method: 'GET', url: `/admin/audit?${query}` });
    t.equal(res.statusCode, 200, `GET /admin/audit?${query}: ${res.body.slice(0, 200)}`);
    return res.json();
  };

  t.test('paging with limit and cursor walks every entry once, newest first', async (t) => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const body: AuditPage = await page(`entity=vip-list&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...body.items.map((i) => i.entityId));
      cursor = body.nextCursor;
      if (cursor) t.equal(cursor, body.items[body.items.length - 1]!.id, 'the cursor is the last id of the page');
      pages++;
    } while (cursor && pages < 10);
    t.equal(pages, 3, 'five entries in pages of two');
    t.same(seen, [...slugs].reverse(), 'every create once, newest first');
  });

  t.test('a cursor past the largest entry id (bigint) ends the paging with an empty page, not a 500', async (t) => {
    for (const cursor of ['9223372036854775807', '9223372036854775808', '9999999999999999999']) {
      const body = await page(`cursor=${cursor}&limit=1`);
      if (cursor === '9223372036854775807') t.equal(body.items.length, 1, 'the largest bigint is a cursor like any other');
      else t.same(body, { items: [], nextCursor: null }, `cursor=${cursor}`);
    }
  });
});
