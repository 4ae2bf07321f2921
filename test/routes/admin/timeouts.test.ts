import pg from 'pg';
import t, { type Test } from 'tap';
import { buildTestApp, lockWaiters } from '../../helper.js';

/** `work`'s outcome, or 'still waiting' after `ms`: a request that hangs fails its test instead of the file. */
const within = <T>(work: Promise<T>, ms: number) => Promise.race([work, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms).unref())]);

/** Another session holding `lock` (a LOCK TABLE or a row lock) in an open transaction, as a stuck session or migration would. */
async function holding(t: Test, url: string, lock: string): Promise<() => Promise<void>> {
  const blocker = new pg.Client({ connectionString: url });
  await blocker.connect();
  let open = true;
  const release = async () => {
    if (!open) return;
    open = false;
    await blocker.query('ROLLBACK');
    await blocker.end();
  };
  t.teardown(release);
  await blocker.query('BEGIN');
  await blocker.query(lock);
  return release;
}

const TIMED_OUT =
  /statement timeout \(ADMIN_STATEMENT_TIMEOUT_MS, 1000 ms; a VIP list's writes ADMIN_BULK_STATEMENT_TIMEOUT_MS, 4000 ms\), most often waiting on a lock.*retry in a few seconds/;

t.test('admin requests behind a lock another session holds are answered 503 within their statement timeout, and the connection serves the next', async (t) => {
  const { admin, db } = await buildTestApp(t, { ADMIN_STATEMENT_TIMEOUT_MS: '1000', ADMIN_BULK_STATEMENT_TIMEOUT_MS: '4000' });
  await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } });
  const release = await holding(t, db.url, 'LOCK TABLE flows, schedules, agent_availability, vip_lists IN ACCESS EXCLUSIVE MODE');
  const started = Date.now();
  const asked = {
    'a read (Prisma)': admin({ method: 'GET', url: '/admin/flows' }),
    'a write in a transaction (Prisma)': admin({ method: 'POST', url: '/admin/schedules', payload: { slug: 'support', name: 'Support', weekly: [] } }),
    'a read of its own SQL (GET /admin/agents)': admin({ method: 'GET', url: '/admin/agents' }),
  };
  for (const [what, answer] of Object.entries(asked)) {
    const res = await within(answer, 10_000);
    if (res === 'still waiting') {
      t.fail(`${what}: still waiting after 10 s`);
      continue;
    }
    t.equal(res.statusCode, 503, `${what}: 503`);
    t.match(res.json(), { statusCode: 503, error: 'Service Unavailable', message: TIMED_OUT }, `${what}: says what timed out and what to do`);
    t.equal(res.headers['retry-after'], '5', `${what}: Retry-After`);
  }
  t.ok(Date.now() - started < 8000, `answered in ${Date.now() - started} ms`);
  // A VIP list's write waits longer (ADMIN_BULK_STATEMENT_TIMEOUT_MS), and is answered 503 too.
  const write = await within(admin({ method: 'PATCH', url: '/admin/vip-lists/gold', payload: { name: 'Gold 2' } }), 15_000);
  t.match(write, { statusCode: 503 }, "a VIP list's write: 503 after ADMIN_BULK_STATEMENT_TIMEOUT_MS");
  t.ok(Date.now() - started >= 4000, `not before ADMIN_BULK_STATEMENT_TIMEOUT_MS: ${Date.now() - started} ms`);
  await release();
  t.equal((await admin({ method: 'GET', url: '/admin/schedules/support' })).statusCode, 404, 'the timed-out write left nothing');
  // Every connection of the admin pool (4) answers, as fast as ever.
  const next = await Promise.all([0, 1, 2, 3].map(() => within(admin({ method: 'GET', url: '/admin/flows' }), 5000)));
  t.same(
    next.map((r) => (r === 'still waiting' ? r : r.statusCode)),
    [200, 200, 200, 200],
    'the next requests are answered',
  );
});

t.test("a VIP list's write waits for the list's lock longer than ADMIN_STATEMENT_TIMEOUT_MS, within ADMIN_BULK_STATEMENT_TIMEOUT_MS", async (t) => {
  const { admin, db } = await buildTestApp(t, { ADMIN_STATEMENT_TIMEOUT_MS: '1000', ADMIN_BULK_STATEMENT_TIMEOUT_MS: '10000' });
  await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } });
  const release = await holding(t, db.url, "SELECT id FROM vip_lists WHERE slug = 'gold' FOR UPDATE");
  const started = Date.now();
  const write = admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: [{ number: '09812345678' }] });
  await lockWaiters(t, db.pool);
  await new Promise((r) => setTimeout(r, 2000));
  await release();
  const res = await within(write, 10_000);
  t.match(res, { statusCode: 200 }, `written once the lock was released, ${Date.now() - started} ms after it was sent`);
});

t.test('a CSV export is not cut by the statement timeout, and its connection is not handed on without one', async (t) => {
  const { admin, db } = await buildTestApp(t, { ADMIN_STATEMENT_TIMEOUT_MS: '500' });
  const release = await holding(t, db.url, 'LOCK TABLE cdrs IN ACCESS EXCLUSIVE MODE');
  const csv = admin({ method: 'GET', url: '/admin/cdrs.csv' });
  await lockWaiters(t, db.pool, 1, { query: 'COPY%' });
  await new Promise((r) => setTimeout(r, 1500));
  await release();
  const res = await within(csv, 10_000);
  t.match(res, { statusCode: 200, body: /^id,received_at,/ }, 'the whole file, once the lock was released');
  // The admin pool's four connections, each asked at once: every one still has its statement timeout.
  const settings = await Promise.all(
    [0, 1, 2, 3].map(async () => (await db.adminPool.query<{ s: string }>("SELECT current_setting('statement_timeout') AS s, pg_sleep(0.2)")).rows[0]!.s),
  );
  t.same(settings, ['500ms', '500ms', '500ms', '500ms'], 'every connection of the admin pool has its statement timeout');
});
