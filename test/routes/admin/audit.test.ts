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

  t.test('a misspelt or empty entity, or an empty entityId, is 400 naming it, not an empty (or unfiltered) list', async (t) => {
    for (const [query, field] of [
      ['entity=vip-lists', 'entity'],
      ['entity=dial_group', 'entity'],
      ['entity=Flow', 'entity'],
      ['entity=', 'entity'],
      ['entity=vip-list&entityId=', 'entityId'],
    ] as const) {
      const res = await admin({ method: 'GET', url: `/admin/audit?${query}` });
      t.equal(res.statusCode, 400, `${query}: ${res.body.slice(0, 200)}`);
      if (res.statusCode === 400) t.match(res.json().message, new RegExp(`^querystring/${field}: `), query);
    }
    const misspelt = await admin({ method: 'GET', url: '/admin/audit?entity=vip-lists' });
    t.match(misspelt.json().message, /vip-list, schedule, dial-group, flow, agent, api-key/, 'the message lists the entities there are');
    t.same(
      (await page('entity=vip-list&entityId=list-c')).items.map((i) => i.action),
      ['create'],
      'a right one still filters',
    );
  });
});

t.test("entity=agent: entityId is the agent's number in any form, as the agents API takes it", async (t) => {
  const { admin } = await buildTestApp(t);
  const group = { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09811100001' }, { number: '09811100002' }] };
  t.equal((await admin({ method: 'POST', url: '/admin/dial-groups', payload: group })).statusCode, 201);
  for (const number of ['09811100001', '09811100002']) {
    const away = await admin({ method: 'PUT', url: `/admin/agents/${number}/availability`, payload: { status: 'away', reason: 'lunch' } });
    t.equal(away.statusCode, 200, away.body);
  }
  const forms = [
    '09811100001', // national, as the README's agent examples write it
    '9811100001',
    '919811100001',
    '%2B919811100001',
    '+919811100001', // a + typed unencoded, read as a space
    '098111%2000001',
  ];
  for (const form of forms) {
    const res = await admin({ method: 'GET', url: `/admin/audit?entity=agent&entityId=${form}` });
    t.equal(res.statusCode, 200, `${form}: ${res.body.slice(0, 200)}`);
    t.match(res.json().items, [{ action: 'set-availability', entity: 'agent', entityId: '+919811100001', after: { status: 'away' } }], form);
    t.equal(res.json().items.length, 1, `${form}: that agent's change only`);
  }
  const bad = await admin({ method: 'GET', url: '/admin/audit?entity=agent&entityId=asha' });
  t.equal(bad.statusCode, 400, 'an agent is a number: another entityId is a 400, not an empty page');
  t.match(bad.json().message, /^querystring\/entityId: 'asha' is not a valid phone number/);
  const slug = await admin({ method: 'GET', url: '/admin/audit?entity=dial-group&entityId=sales' });
  t.equal(slug.statusCode, 200);
  t.equal(slug.json().items.length, 1, 'other entities are still found by their slug');
});

t.test('the trail filters by the key that made the change and by time, and a bad filter is 400 naming it', async (t) => {
  const { app, admin } = await buildTestApp(t);
  const created = await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'deploy bot', role: 'admin' } });
  t.equal(created.statusCode, 201);
  const bot = created.json() as { id: string; key: string };
  const asBot = { authorization: `Bearer ${bot.key}` };
  for (const slug of ['by-bot-1', 'by-bot-2']) {
    t.equal((await app.inject({ method: 'POST', url: '/admin/vip-lists', headers: asBot, payload: { slug, name: slug } })).statusCode, 201);
  }
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'by-hand', name: 'by hand' } })).statusCode, 201);

  const list = async (query: string) => {
    const res = await admin({ method: 'GET', url: `/admin/audit?${query}` });
    t.equal(res.statusCode, 200, `${query}: ${res.body.slice(0, 200)}`);
    return (res.json() as { items: Array<{ entityId: string; apiKeyId: string | null; at: string }> }).items;
  };
  const byBot = await list(`entity=vip-list&apiKeyId=${bot.id}`);
  t.same(
    byBot.map((i) => i.entityId),
    ['by-bot-2', 'by-bot-1'],
    "the bot's changes only",
  );

  const all = await list('entity=vip-list');
  t.equal(all.length, 3);
  const middle = all[1]!.at; // by-bot-2's
  const laterThan = (at: string) => all.filter((i) => i.at >= at).map((i) => i.entityId);
  t.same(
    (await list(`entity=vip-list&from=${encodeURIComponent(middle)}`)).map((i) => i.entityId),
    laterThan(middle),
    'from: at or after the instant',
  );
  t.same(
    (await list(`entity=vip-list&to=${encodeURIComponent(middle)}`)).map((i) => i.entityId),
    all.filter((i) => i.at < middle).map((i) => i.entityId),
    'to: before the instant',
  );
  t.same(await list('from=2999-01-01T00:00:00Z'), [], 'nothing in the future');

  for (const [query, field] of [
    ['apiKeyId=deploy-bot', 'apiKeyId'],
    ['from=yesterday', 'from'],
    ['to=2026-13-01T00:00:00Z', 'to'],
    ['from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z', 'to'],
  ] as const) {
    const res = await admin({ method: 'GET', url: `/admin/audit?${query}` });
    t.equal(res.statusCode, 400, `${query}: ${res.body.slice(0, 200)}`);
    t.match(res.json().message, new RegExp(`^querystring/${field}`), query);
  }
});
