import t from 'tap';
import pg from 'pg';
import { migratedDatabase, quietLog } from '../helper.js';
import { OTHER_ADDRESSES, RefusalLog, addressKey, listRefusals } from '../../src/store/refusals.js';

const MINUTE = 60_000;
const T0 = Date.parse('2026-12-05T10:00:00.000Z');

interface Row {
  minute: Date;
  address: string;
  refusals: number;
  wrong_secret: number;
  outside_cidrs: number;
  stored_as_cdrs: number;
  throttled: number;
  first_at: Date;
  last_at: Date;
}
const rows = async (pool: pg.Pool) => (await pool.query<Row>('SELECT * FROM callback_refusals ORDER BY minute, address')).rows;

t.test('addresses: IPv4 as is, IPv4-mapped as IPv4, IPv6 by its /64', async (t) => {
  t.equal(addressKey('203.0.113.9'), '203.0.113.9');
  t.equal(addressKey('::ffff:203.0.113.9'), '203.0.113.9');
  t.equal(addressKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
  t.equal(addressKey('2001:db8:1:2::ffff'), '2001:db8:1:2::/64', 'two addresses of one /64 are one');
  t.equal(addressKey('::1'), '::/64');
  t.equal(addressKey('not-an-address'), 'not-an-address');
});

t.test('per address and minute: the first ones are CDRs, the rest counted, past the higher count throttled', async (t) => {
  const db = await migratedDatabase(t);
  const log = new RefusalLog(db.pool, quietLog, { cdrsPerAddress: 3, throttleAfter: 5 });
  const seen = Array.from({ length: 7 }, (_, i) => log.note('203.0.113.9', 'secret', T0 + i));
  t.same(seen, ['cdr', 'cdr', 'cdr', 'counted', 'counted', 'throttled', 'throttled']);
  t.equal(log.note('198.51.100.1', 'address', T0 + 10), 'cdr', 'another address has a budget of its own');
  t.equal(log.note('203.0.113.9', 'secret', T0 + MINUTE), 'cdr', 'and a new minute starts afresh');
  t.same(log.stats, { secret: { cdr: 4, counted: 2, throttled: 2 }, address: { cdr: 1, counted: 0, throttled: 0 } });
  t.equal(log.retryAfterSeconds(T0 + 15_500), 45, 'Retry-After: the rest of the minute');

  t.equal(await log.flush(), 3, 'one row per address and minute');
  t.same(
    (await rows(db.pool)).map((r) => [
      r.minute.getTime(),
      r.address,
      r.refusals,
      r.wrong_secret,
      r.outside_cidrs,
      r.stored_as_cdrs,
      r.throttled,
      r.first_at.getTime(),
      r.last_at.getTime(),
    ]),
    [
      [T0, '198.51.100.1', 1, 0, 1, 1, 0, T0 + 10, T0 + 10],
      [T0, '203.0.113.9', 7, 7, 0, 3, 2, T0, T0 + 6],
      [T0 + MINUTE, '203.0.113.9', 1, 1, 0, 1, 0, T0 + MINUTE, T0 + MINUTE],
    ],
  );
  t.equal(await log.flush(), 0, 'nothing new, nothing written');
});

t.test('counts of later flushes, and of other instances, add up in the same row', async (t) => {
  const db = await migratedDatabase(t);
  const a = new RefusalLog(db.pool, quietLog);
  const b = new RefusalLog(db.pool, quietLog);
  a.note('203.0.113.9', 'secret', T0 + 5_000);
  await a.flush();
  a.note('203.0.113.9', 'address', T0 + 9_000);
  b.note('203.0.113.9', 'secret', T0 + 1_000);
  b.note('203.0.113.9', 'secret', T0 + 30_000);
  await Promise.all([a.flush(), b.flush()]);
  const [row, ...more] = await rows(db.pool);
  t.same(more, []);
  t.match(row, { address: '203.0.113.9', refusals: 4, wrong_secret: 3, outside_cidrs: 1, stored_as_cdrs: 4 });
  t.same([row!.first_at.getTime(), row!.last_at.getTime()], [T0 + 1_000, T0 + 30_000]);
});

t.test('bounded however many addresses: CDRs and rows per minute, and the addresses remembered', async (t) => {
  const db = await migratedDatabase(t);
  const log = new RefusalLog(db.pool, quietLog, { cdrsPerAddress: 2, cdrsPerMinute: 50, rowsPerMinute: 20, maxAddresses: 100 });
  const spread = 10_000;
  let cdrs = 0;
  for (let i = 0; i < spread; i++) {
    // A spoofed-looking spread: every refusal from another IPv4 address, and as many IPv6 /64s.
    const ip = i % 2 ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` : `2001:db8:${i.toString(16)}::1`;
    if (log.note(ip, 'secret', T0 + i) === 'cdr') cdrs++;
  }
  t.equal(cdrs, 50, "CDRs: the minute's budget for all addresses");
  t.ok((log as unknown as { addresses: { size: number } }).addresses.size <= 100, "addresses remembered: the LRU's size");
  await log.flush();
  const stored = await rows(db.pool);
  t.equal(stored.length, 21, 'rows: 20 addresses of their own and one for the others');
  t.equal(
    stored.reduce((n, r) => n + r.refusals, 0),
    spread,
    'every refusal counted',
  );
  t.equal(stored.find((r) => r.address === OTHER_ADDRESSES)?.refusals, spread - 20);
});

t.test('Postgres refusing a flush: counts are kept and written by the next one; close() writes what is left', async (t) => {
  const db = await migratedDatabase(t);
  const broken = new pg.Pool({ connectionString: 'postgresql://nobody@127.0.0.1:1/none', connectionTimeoutMillis: 1000 });
  t.teardown(() => broken.end());
  const log = new RefusalLog(broken, quietLog);
  log.note('203.0.113.9', 'secret', T0);
  t.equal(await log.flush(), 0, 'not written');
  log.note('203.0.113.9', 'secret', T0 + 1);
  (log as unknown as { pool: pg.Pool }).pool = db.pool;
  await log.close();
  t.match(await rows(db.pool), [{ address: '203.0.113.9', refusals: 2 }]);
});

t.test('listRefusals: newest minute first, filters, cursor paging', async (t) => {
  const db = await migratedDatabase(t);
  const log = new RefusalLog(db.pool, quietLog);
  for (let m = 0; m < 3; m++) for (const ip of ['203.0.113.1', '203.0.113.2']) log.note(ip, 'secret', T0 + m * MINUTE);
  await log.flush();
  const all = await listRefusals(db.pool, { limit: 4 });
  t.same(
    all.items.map((r) => [r.minute.getTime() - T0, r.address]),
    [
      [2 * MINUTE, '203.0.113.2'],
      [2 * MINUTE, '203.0.113.1'],
      [MINUTE, '203.0.113.2'],
      [MINUTE, '203.0.113.1'],
    ],
  );
  const rest = await listRefusals(db.pool, { limit: 4, cursor: all.nextCursor! });
  t.same(
    rest.items.map((r) => r.address),
    ['203.0.113.2', '203.0.113.1'],
  );
  t.equal(rest.nextCursor, null);
  const one = await listRefusals(db.pool, {
    limit: 10,
    address: '203.0.113.1',
    from: new Date(T0 + MINUTE + 30_000).toISOString(),
    to: new Date(T0 + 2 * MINUTE).toISOString(),
  });
  t.same(
    one.items.map((r) => [r.minute.getTime() - T0, r.address]),
    [[MINUTE, '203.0.113.1']],
    'from: its whole minute; to: exclusive',
  );
  t.same(await listRefusals(db.pool, { limit: 10, cursor: '9999999999999999999' }), { items: [], nextCursor: null });
});
