import t from 'tap';
import pg from 'pg';
import pino from 'pino';
import type { Database } from '../../src/store/database.js';
import { pruneOnce, RetentionJob, RETENTION_LOCK_KEY } from '../../src/store/retention.js';
import { buildTestApp, lockWaiters, migratedDatabase, quietLog, silencingPool } from '../helper.js';

const DAY = 86_400_000;
const NOW = new Date('2026-12-01T12:00:00Z');
const ago = (ms: number) => new Date(NOW.getTime() - ms);

/** Inserts one CDR per timestamp, in the given order (so ids follow the array, not the time). */
async function insertCdrs(db: Database, times: Date[], tag: string): Promise<void> {
  await db.pool.query(
    `INSERT INTO cdrs (received_at, endpoint, call_sid, params, outcome, http_status, handling_ms, idempotency_key)
     SELECT at, 'passthru', $2 || '-' || n, '{}'::jsonb, 'answered', 200, 1, $2 || '-' || n
     FROM unnest($1::timestamptz[]) WITH ORDINALITY AS u(at, n) ORDER BY n`,
    [times, tag],
  );
}

const remainingSids = async (db: Database) => (await db.pool.query<{ call_sid: string }>('SELECT call_sid FROM cdrs ORDER BY id')).rows.map((r) => r.call_sid);

t.test('pruneOnce deletes exactly the CDRs older than the retention, in several bounded batches', async (t) => {
  const db = await migratedDatabase(t);
  const old = (n: number) => Array.from({ length: n }, (_, i) => ago(40 * DAY + i * 1000));
  const recent = (n: number) => Array.from({ length: n }, (_, i) => ago(DAY + i * 1000));
  await insertCdrs(db, old(10), 'old-a');
  await insertCdrs(db, recent(3), 'new-a');
  await insertCdrs(db, old(10), 'old-b');
  await insertCdrs(db, recent(4), 'new-b');
  // Old CDRs with ids above recent ones (as a spool replay produces), and both sides of the cutoff.
  await insertCdrs(db, old(5), 'old-c');
  await insertCdrs(db, [new Date(ago(30 * DAY).getTime() - 1)], 'edge-old');
  await insertCdrs(db, [ago(30 * DAY)], 'edge-kept');

  const r = await pruneOnce(db.pool, { retentionDays: 30, now: NOW, batchSize: 4, pauseMs: 0 });
  t.equal(r.ran, true);
  t.equal(r.deleted.cdrs, 26, '25 old CDRs and the one a millisecond past the cutoff');
  // 26 rows in batches of 4 = 7 CDR statements, plus one for the refusal counts and one per dial-state, sticky and offers table.
  t.equal(r.batches, 7 + 1 + 4, 'CDRs went in batches of at most 4');
  t.same(await remainingSids(db), ['new-a-1', 'new-a-2', 'new-a-3', 'new-b-1', 'new-b-2', 'new-b-3', 'new-b-4', 'edge-kept-1']);

  const again = await pruneOnce(db.pool, { retentionDays: 30, now: NOW, batchSize: 4, pauseMs: 0 });
  t.equal(again.deleted.cdrs, 0, 'a second run finds nothing more');
});

t.test('pages a prune emptied and new CDRs refilled are not found by a search for the deleted days (BRIN re-summarized)', async (t) => {
  const db = await migratedDatabase(t);
  const pad = 'x'.repeat(600);
  const fill = (daysAgo: number, tag: string) =>
    db.pool.query(
      `INSERT INTO cdrs (received_at, endpoint, params, outcome, http_status, handling_ms, idempotency_key)
       SELECT $1::timestamptz + g * interval '1 second', 'passthru', jsonb_build_object('pad', $2::text), 'answered', 200, 1, $3 || g
       FROM generate_series(1, 3000) g`,
      [new Date(Date.now() - daysAgo * DAY), pad, tag],
    );
  await fill(40, 'old-');
  const r = await pruneOnce(db.pool, { retentionDays: 30, pauseMs: 0 });
  t.equal(r.deleted.cdrs, 3000);
  t.ok(r.brinRanges >= 2, `${r.brinRanges} ranges summarized afresh`);
  await db.pool.query('VACUUM cdrs');
  await fill(0, 'new-'); // lands in the freed pages
  const client = await db.pool.connect();
  try {
    await client.query('SET enable_seqscan = off');
    const plan = (await client.query(`EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM cdrs WHERE received_at < now() - interval '35 days'`)).rows
      .map((row: Record<string, string>) => row['QUERY PLAN'])
      .join('\n');
    t.match(plan, /Bitmap Index Scan on cdrs_received_at_idx/);
    t.notMatch(plan, /Heap Blocks:/, `no page range matches the deleted days:\n${plan}`);
  } finally {
    client.release();
  }
});

t.test('CDR_RETENTION_DAYS=0 keeps every CDR', async (t) => {
  const db = await migratedDatabase(t);
  await insertCdrs(db, [ago(5000 * DAY), ago(400 * DAY), ago(DAY)], 'any');
  const r = await pruneOnce(db.pool, { retentionDays: 0, now: NOW, batchSize: 1, pauseMs: 0 });
  t.equal(r.ran, true);
  t.equal(r.deleted.cdrs, 0);
  t.same(await remainingSids(db), ['any-1', 'any-2', 'any-3']);
});

t.test('refused-callback counts older than the CDR retention are pruned with the CDRs; kept all when it is 0', async (t) => {
  const db = await migratedDatabase(t);
  const minutes = [ago(40 * DAY), ago(31 * DAY), new Date(ago(30 * DAY).getTime() - 60_000), ago(30 * DAY), ago(DAY)];
  await db.pool.query(
    `INSERT INTO callback_refusals (minute, address, refusals, first_at, last_at)
     SELECT m, '203.0.113.' || n, 1, m, m FROM unnest($1::timestamptz[]) WITH ORDINALITY AS u(m, n)`,
    [minutes],
  );
  const keepAll = await pruneOnce(db.pool, { retentionDays: 0, now: NOW, pauseMs: 0 });
  t.equal(keepAll.deleted.callbackRefusals, 0);
  const r = await pruneOnce(db.pool, { retentionDays: 30, now: NOW, batchSize: 2, pauseMs: 0 });
  t.equal(r.deleted.callbackRefusals, 3);
  t.same(
    (await db.pool.query('SELECT address FROM callback_refusals ORDER BY minute')).rows.map((x) => x.address),
    ['203.0.113.4', '203.0.113.5'],
  );
});

t.test('dial state of finished calls and sticky links past any lookback are pruned whatever the CDR retention', async (t) => {
  const db = await migratedDatabase(t);
  for (const [sid, at] of [
    ['gone', ago(3 * DAY)],
    ['live', ago(3_600_000)],
  ] as const) {
    await db.pool.query(`INSERT INTO dial_calls (call_sid, endpoint, flow_slug, "order", tried, created_at) VALUES ($1, 'dial-whom', 'f', '{}', '{}', $2)`, [
      sid,
      at,
    ]);
    await db.pool.query(
      `INSERT INTO dial_answers (call_sid, endpoint, flow_slug, attempt_key, numbers, created_at) VALUES ($1, 'dial-whom', 'f', '1', '{}', $2)`,
      [sid, at],
    );
  }
  await db.pool.query(`INSERT INTO caller_agents (caller, agent, connected_at) VALUES ('+911', '+912', $1), ('+913', '+914', $2)`, [
    ago(400 * DAY),
    ago(300 * DAY),
  ]);
  await db.pool.query(`INSERT INTO agent_offers (call_sid, number, offered_at) VALUES ('old', '+912', $1), ('recent', '+912', $2)`, [
    ago(40 * DAY),
    ago(20 * DAY),
  ]);

  const r = await pruneOnce(db.pool, { retentionDays: 0, now: NOW, pauseMs: 0 });
  t.same(r.deleted, { cdrs: 0, callbackRefusals: 0, dialCalls: 1, dialAnswers: 1, callerAgents: 1, agentOffers: 1, auditEntries: 0 });
  t.same((await db.pool.query('SELECT call_sid FROM agent_offers')).rows, [{ call_sid: 'recent' }], 'offers are kept a month');
  t.same((await db.pool.query('SELECT call_sid FROM dial_calls')).rows, [{ call_sid: 'live' }]);
  t.same((await db.pool.query('SELECT call_sid FROM dial_answers')).rows, [{ call_sid: 'live' }]);
  t.same((await db.pool.query('SELECT caller FROM caller_agents')).rows, [{ caller: '+913' }], 'a link within the longest lookback (365 days) stays');
});

t.test('only one session prunes at a time: while another holds the lock, pruneOnce does nothing', async (t) => {
  const db = await migratedDatabase(t);
  await insertCdrs(db, [ago(40 * DAY)], 'old');
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('SELECT pg_advisory_lock($1)', [RETENTION_LOCK_KEY]);

  const blocked = await pruneOnce(db.pool, { retentionDays: 30, now: NOW, pauseMs: 0 });
  t.same(blocked, { ...blocked, ran: false, batches: 0 });
  t.same(await remainingSids(db), ['old-1']);

  await other.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK_KEY]);
  const done = await pruneOnce(db.pool, { retentionDays: 30, now: NOW, pauseMs: 0 });
  t.equal(done.deleted.cdrs, 1);
  // The lock was released: the other session can take it again at once.
  t.equal((await other.query('SELECT pg_try_advisory_lock($1) AS ok', [RETENTION_LOCK_KEY])).rows[0].ok, true);
});

t.test('the job runs at start, then on its interval, and stop() ends it', async (t) => {
  const db = await migratedDatabase(t);
  await insertCdrs(db, [new Date(Date.now() - 40 * DAY)], 'old');
  const job = new RetentionJob(db.pool, quietLog, { retentionDays: 30, startDelayMs: 0, intervalMs: 50, pauseMs: 0 });
  job.start();
  const t0 = Date.now();
  while (job.stats.runs < 3) {
    if (Date.now() - t0 > 5000) throw new Error(`only ${job.stats.runs} runs`);
    await new Promise((r) => setTimeout(r, 10));
  }
  await job.stop();
  const runs = job.stats.runs;
  t.equal(job.stats.deleted.cdrs, 1);
  t.equal(job.stats.failures, 0);
  t.ok(job.stats.lastSuccessAt);
  await new Promise((r) => setTimeout(r, 150));
  t.equal(job.stats.runs, runs, 'no run after stop()');
});

t.test('the app prunes by CDR_RETENTION_DAYS and reports it in /metrics', async (t) => {
  const { app, db } = await buildTestApp(t, { CDR_RETENTION_DAYS: '7' });
  await insertCdrs(db, [new Date(Date.now() - 8 * DAY), new Date(Date.now() - 6 * DAY)], 'cdr');
  await app.retention.run();
  t.same(await remainingSids(db), ['cdr-2']);
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(text, /^exoroute_retention_deleted_rows_total\{table="cdrs"\} 1$/m);
  t.match(text, /^exoroute_retention_last_success_timestamp_seconds [1-9]\d*(\.\d+)?$/m);
});

t.test('AUDIT_RETENTION_DAYS: the app prunes audit entries older than it, keeps the rest, and keeps every one with 0 (the default)', async (t) => {
  const { app, db, admin } = await buildTestApp(t, { AUDIT_RETENTION_DAYS: '30', CDR_RETENTION_DAYS: '7' });
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201, 'an entry made now');
  await db.pool.query(`INSERT INTO audit_entries (at, action, entity, entity_id) VALUES ($1, 'create', 'flow', 'old'), ($2, 'create', 'flow', 'edge')`, [
    new Date(Date.now() - 31 * DAY),
    new Date(Date.now() - 29 * DAY),
  ]);
  await app.retention.run();
  // (the first start's bootstrap key has its own entry, made now: kept, and not this test's)
  const kept = (await db.pool.query<{ entity_id: string }>(`SELECT entity_id FROM audit_entries WHERE entity <> 'api-key' ORDER BY id`)).rows.map(
    (r) => r.entity_id,
  );
  t.same(kept, ['gold', 'edge'], 'the entry past 30 days is gone');
  t.equal(app.retention.stats.deleted.auditEntries, 1);
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(text, /^exoroute_retention_deleted_rows_total\{table="auditEntries"\} 1$/m);

  const db2 = await migratedDatabase(t);
  await db2.pool.query(`INSERT INTO audit_entries (at, action, entity, entity_id) VALUES ($1, 'create', 'flow', 'ancient')`, [
    new Date(Date.now() - 3000 * DAY),
  ]);
  const r = await pruneOnce(db2.pool, { retentionDays: 7, pauseMs: 0 });
  t.equal(r.deleted.auditEntries, 0, 'without AUDIT_RETENTION_DAYS every entry is kept, whatever the CDR retention');
  t.equal((await db2.pool.query('SELECT count(*)::int AS n FROM audit_entries')).rows[0].n, 1);
});

/** The backend holding the retention lock in this database (others hold their own), once `ready` says the run is under way (bounded wait). */
async function pruningBackend(db: Database, ready: () => Promise<boolean>): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const { rows } = await db.pool.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1 AND granted`,
      [RETENTION_LOCK_KEY],
    );
    if (rows[0] && (await ready())) return rows[0].pid;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the prune did not start');
}

t.test('a connection lost mid-run (Postgres restarted) fails that run, logged and counted; the process lives on and the next run finishes', async (t) => {
  const db = await migratedDatabase(t);
  await insertCdrs(
    db,
    Array.from({ length: 6 }, (_, i) => new Date(Date.now() - 40 * DAY + i * 1000)),
    'old',
  );
  const job = new RetentionJob(db.pool, quietLog, { retentionDays: 30, batchSize: 1, pauseMs: 300 });
  const running = job.run();
  // Between two batches (in the pause), as a restart would: the server ends the session.
  const pid = await pruningBackend(db, async () => (await remainingSids(db)).length < 6);
  await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
  await running;
  t.equal(job.stats.failures, 1, 'the run failed');
  t.equal(job.stats.runs, 0);

  const next = new RetentionJob(db.pool, quietLog, { retentionDays: 30, pauseMs: 0 });
  await next.run();
  t.equal(next.stats.failures, 0, 'the lock went with the session: the next run takes it');
  t.same(await remainingSids(db), []);
});

t.test('a run that fails part-way still counts what it deleted (the /metrics counter) and says so in its log line', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const db = await migratedDatabase(t);
  await insertCdrs(
    db,
    Array.from({ length: 6 }, (_, i) => new Date(Date.now() - 40 * DAY + i * 1000)),
    'old',
  );
  const job = new RetentionJob(db.pool, log, { retentionDays: 30, batchSize: 1, pauseMs: 300 });
  const running = job.run();
  const pid = await pruningBackend(db, async () => (await remainingSids(db)).length <= 4);
  await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
  await running;
  const gone = 6 - (await remainingSids(db)).length;
  t.ok(gone >= 2 && gone < 6, `${gone} deleted before the connection was lost`);
  t.equal(job.stats.failures, 1);
  t.equal(job.stats.deleted.cdrs, gone, 'the rows it deleted are counted');
  const failed = lines.find((l) => l.msg === 'retention: prune failed; next try at the next interval');
  t.same(failed?.deleted, { ...(failed?.deleted as object), cdrs: gone }, 'and the failure says how many');
});

t.test('a service role that does not own cdrs (migrations applied by another role) cannot re-summarize its BRIN ranges: the run says so, once', async (t) => {
  // brin_desummarize_range and brin_summarize_range need the index's owner. Refused, the emptied
  // ranges keep their summaries, which only widen as new CDRs refill them (vacuum summarizes only
  // ranges that have none): searches by time decay towards a full scan, and nobody was told.
  const db = await migratedDatabase(t);
  const role = `exoroute_not_owner_${process.pid}_${Date.now()}`;
  await db.pool.query(`CREATE ROLE "${role}"`);
  await db.pool.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "${role}"`);
  const pool = new pg.Pool({ connectionString: db.url, max: 1, onConnect: (client) => client.query(`SET ROLE "${role}"`) });
  t.teardown(async () => {
    await pool.end();
    await db.pool.query(`DROP OWNED BY "${role}"`);
    await db.pool.query(`DROP ROLE "${role}"`);
  });
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const old = () => Array.from({ length: 5 }, (_, i) => new Date(Date.now() - 40 * DAY + i * 1000));
  await insertCdrs(db, old(), 'old-a');
  const job = new RetentionJob(pool, log, { retentionDays: 30, pauseMs: 0 });
  await job.run();
  t.equal(job.stats.failures, 0, 'the prune itself works');
  t.equal(job.stats.deleted.cdrs, 5, 'and deletes the old CDRs');
  const warned = lines.filter((l) => l.level === 40 && /BRIN/.test(String(l.msg)));
  t.equal(warned.length, 1, 'a warning that the BRIN ranges were not summarized afresh');
  t.match(String(warned[0]?.msg), /owner/, 'saying why');
  t.match(String(warned[0]?.msg), /ALTER TABLE cdrs OWNER TO/, 'and what to do');
  await insertCdrs(db, old(), 'old-b');
  await job.run();
  t.equal(lines.filter((l) => l.level === 40 && /BRIN/.test(String(l.msg))).length, 1, 'once, not every hour');
});

t.test(
  'a connection that dies without a word mid-run: the batch is cancelled, the run fails within its bound and drops the connection, and Postgres frees the lock for the next run',
  async (t) => {
    // Without a bound the run waited for the kernel to give the connection up (~12 minutes with
    // keepalive; here, for ever), holding a connection of the callbacks' pool and the retention lock.
    const db = await migratedDatabase(t);
    await db.pool.query(
      `INSERT INTO dial_answers (call_sid, endpoint, flow_slug, attempt_key, numbers, created_at) VALUES ('gone', 'dial-whom', 'f', '1', '{}', $1)`,
      [new Date(Date.now() - 3 * DAY)],
    );
    const { pool, silence } = await silencingPool(t, db.url);
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    t.teardown(() => locker.end());
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE dial_answers IN ACCESS EXCLUSIVE MODE');
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const job = new RetentionJob(pool, log, { retentionDays: 0, pauseMs: 0, statementTimeoutMs: 2000 });
    const t0 = performance.now();
    const running = job.run().then(() => performance.now() - t0);
    // Its first batch waits for the table's lock; then nothing more reaches either side.
    await lockWaiters(t, db.pool, 1, { query: '%dial_answers%' });
    silence({ deaf: true });
    const ms = await Promise.race([running, new Promise<null>((r) => setTimeout(() => r(null), 15_000))]);
    t.ok(ms !== null && ms < 12_000, `the run ended ${ms === null ? 'not within 15 s' : `${Math.round(ms)} ms`} after it started (its bound 2 s, and a grace)`);
    t.equal(job.stats.failures, 1, 'as a failure');
    t.match(lines.find((l) => l.msg === 'retention: prune failed; next try at the next interval')?.err, { message: 'Query read timeout' }, 'logged');
    t.equal(pool.totalCount - pool.idleCount, 0, 'no connection of the pool is held');

    const held = async () =>
      (
        await db.pool.query(
          `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1 AND granted`,
          [RETENTION_LOCK_KEY],
        )
      ).rowCount;
    const until = performance.now() + 30_000;
    while ((await held()) && performance.now() < until) await new Promise((r) => setTimeout(r, 100));
    t.equal(await held(), 0, `the lock is freed by Postgres (${Math.round(performance.now() - t0)} ms after the start), which ends the idle session`);
    t.equal((await locker.query('SELECT count(*)::int AS n FROM dial_answers')).rows[0].n, 1, 'the batch was cancelled: nothing deleted');
    await locker.query('ROLLBACK');
    const next = await pruneOnce(db.pool, { retentionDays: 0, pauseMs: 0 });
    t.equal(next.ran, true, 'the next run takes the lock');
    t.equal(next.deleted.dialAnswers, 1, 'and deletes what the failed one left');
  },
);
