import t, { type Test } from 'tap';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { capturedLog, migratedDatabase, quietLog } from '../helper.js';
import { CdrWriter, MAX_PREPARED_ROWS, newIdempotencyKey, type CdrRecord } from '../../src/store/cdr-writer.js';
import { CdrSpool } from '../../src/store/cdr-spool.js';
import type { Database } from '../../src/store/database.js';

const record = (over: Partial<CdrRecord> = {}): CdrRecord => ({
  receivedAt: new Date(),
  endpoint: 'passthru',
  flowSlug: 'f',
  callSid: 'c',
  callFrom: '+919812345678',
  callFromRaw: '09812345678',
  callTo: null,
  callToRaw: null,
  direction: 'incoming',
  callStatus: null,
  callType: null,
  digits: null,
  customField: null,
  dialCallStatus: null,
  dialWhomNumber: null,
  legs: null,
  params: { CallSid: 'c' },
  decision: { action: { branch: 'A' } },
  matchedRule: null,
  outcome: 'answered',
  reason: null,
  httpStatus: 200,
  responseBody: '',
  handlingMs: 0.5,
  attempt: 1,
  idempotencyKey: randomUUID(),
  ...over,
});

/** The two ways a batch goes in: small ones as a prepared INSERT, larger ones with COPY. */
const WAYS = [
  { way: 'prepared INSERT', size: 1 },
  { way: 'COPY', size: MAX_PREPARED_ROWS + 1 },
];
/** `size - 1` plain CDRs to share a batch with the one under test. */
const mates = (size: number, prefix: string) => Array.from({ length: size - 1 }, (_, i) => record({ callSid: `${prefix}${i}` }));

t.test('idempotency keys are UUIDv7: the time in ms first, so later keys sort later; random otherwise', async (t) => {
  const at = Date.UTC(2026, 10, 21, 3, 30);
  const key = newIdempotencyKey(at);
  t.match(key, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.equal(parseInt(key.slice(0, 8) + key.slice(9, 13), 16), at, 'the first 48 bits are the time');
  t.ok(newIdempotencyKey(at) < newIdempotencyKey(at + 1) && newIdempotencyKey(at + 1) < newIdempotencyKey(at + 3_600_000), 'later sorts later');
  const many = new Set(Array.from({ length: 10_000 }, () => newIdempotencyKey(at)));
  t.equal(many.size, 10_000, 'distinct within one millisecond');
});

t.test('CDRs handed over together share one insert and one commit', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog);
  await Promise.all(Array.from({ length: 500 }, (_, i) => writer.write(record({ callSid: `c${i}` }))));
  t.equal(writer.stats.batches, 1);
  t.equal(writer.stats.records, 500);
  t.equal(await db.prisma.cdr.count(), 500);
});

t.test('a CDR alone (one callback at a time) goes in as a prepared INSERT, parsed once per connection; larger batches with COPY', async (t) => {
  const db = await migratedDatabase(t);
  const pool = new pg.Pool({ connectionString: db.url, max: 1 });
  t.teardown(() => pool.end());
  const writer = new CdrWriter(pool, quietLog);
  for (let i = 0; i < 3; i++) t.equal(await writer.write(record({ callSid: `alone${i}` })), 'committed');
  await Promise.all(Array.from({ length: MAX_PREPARED_ROWS + 1 }, (_, i) => writer.write(record({ callSid: `together${i}` }))));
  t.equal(writer.stats.lastBatchSize, MAX_PREPARED_ROWS + 1);
  const { rows } = await pool.query<{ name: string }>(`SELECT name FROM pg_prepared_statements WHERE name LIKE 'cdr-%' ORDER BY name`);
  t.same(
    rows.map((r) => r.name),
    ['cdr-insert-1'],
    'one statement for the CDRs that came alone; none for the larger batch',
  );
  t.equal(await db.prisma.cdr.count(), 3 + MAX_PREPARED_ROWS + 1);
});

t.test('batches are capped at maxBatch', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog, { maxBatch: 100 });
  await Promise.all(Array.from({ length: 250 }, () => writer.write(record())));
  t.equal(writer.stats.batches, 3, '250 CDRs with a cap of 100: 3 commits');
  t.equal(await db.prisma.cdr.count(), 250);
});

t.test('every field is stored as given; a replayed idempotency key is stored once; NUL and lone surrogates are cleaned', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog);
  const r = record({
    legs: [{ index: 0, number: { raw: '07200498123', e164: '+917200498123' } }],
    digits: 'a\u0000b',
    customField: 'x\ud800y',
    params: { CallSid: 'c', weird: 'q"\\u0000\'' },
    reason: 'why',
    responseBody: '{"select":"a"}',
    attempt: 3,
    handlingMs: 1.234,
  });
  await writer.write(r);
  await writer.write({ ...r });
  const rows = await db.prisma.cdr.findMany();
  t.equal(rows.length, 1);
  t.match(rows[0], {
    endpoint: 'passthru',
    callSid: 'c',
    callFrom: '+919812345678',
    callFromRaw: '09812345678',
    digits: 'ab',
    customField: 'x\ufffdy',
    reason: 'why',
    responseBody: '{"select":"a"}',
    attempt: 3,
    handlingMs: 1.234,
    idempotencyKey: r.idempotencyKey,
  });
  t.same(rows[0]!.params, { CallSid: 'c', weird: 'q"\\u0000\'' }, 'text that merely looks like an escape is kept');
  t.same(rows[0]!.legs, r.legs);
  t.equal(rows[0]!.receivedAt.toISOString(), r.receivedAt.toISOString());
});

for (const { way, size } of WAYS) {
  t.test(`${way}: tabs, newlines, carriage returns, backslashes and \\N arrive as given, in text and JSON columns`, async (t) => {
    const db = await migratedDatabase(t);
    const writer = new CdrWriter(db.pool, quietLog);
    const tricky = 'a\tb\nc\rd\\e\\N f\\\\g\\t';
    const r = record({
      callSid: 'tricky',
      reason: tricky,
      responseBody: '\\N',
      customField: '',
      digits: null,
      params: { CallSid: 'tricky', [tricky]: tricky, nested: '{"x":"\\u00e9"}' },
      decision: { trace: [tricky, 'é ✓ 🙂'] },
      legs: [],
      handlingMs: 0.000123,
      attempt: 2_000_000_000,
      httpStatus: 302,
    });
    const fates = await Promise.all([writer.write(r), ...mates(size, 'mate').map((m) => writer.write(m))]);
    t.same(fates, Array(size).fill('committed'));
    t.equal(writer.stats.lastBatchSize, size);
    const stored = await db.prisma.cdr.findFirstOrThrow({ where: { callSid: 'tricky' } });
    t.equal(stored.reason, tricky);
    t.equal(stored.responseBody, '\\N', 'a literal backslash-N is text, not NULL');
    t.equal(stored.customField, '', 'an empty string is not NULL');
    t.equal(stored.digits, null);
    t.same(stored.params, r.params);
    t.same(stored.decision, r.decision);
    t.same(stored.legs, []);
    t.equal(stored.handlingMs, 0.000123);
    t.equal(stored.attempt, 2_000_000_000);
    t.equal(stored.httpStatus, 302);
  });
}

for (const { way, size } of WAYS) {
  t.test(`a live batch the ${way} refuses (a key already stored) goes in again with ON CONFLICT: the rest of the batch is kept`, async (t) => {
    const db = await migratedDatabase(t);
    const writer = new CdrWriter(db.pool, quietLog);
    const stored = record({ callSid: 'first' });
    await writer.write(stored);
    const batch = [...mates(size + 1, 'mate'), { ...stored, callSid: 'again' }];
    t.same(await Promise.all(batch.map((r) => writer.write(r))), Array(size + 1).fill('committed'));
    t.equal(writer.stats.lastBatchSize, size + 1);
    t.same(
      (await db.prisma.cdr.findMany({ orderBy: { id: 'asc' } })).map((c) => c.callSid),
      ['first', ...batch.slice(0, -1).map((r) => r.callSid)],
      'the duplicate skipped, its batch mates stored',
    );
  });
}

for (const { way, size } of WAYS) {
  t.test(`a ${way} still unanswered after queryTimeoutMs is abandoned: its connection is dropped and the CDRs spooled`, async (t) => {
    const db = await migratedDatabase(t);
    const spool = await tempSpool(t);
    const writer = new CdrWriter(db.pool, quietLog, { spool, queryTimeoutMs: 300, replayIntervalMs: 3_600_000 });
    t.teardown(() => writer.close());
    const unlock = await lockCdrs(db);
    const t0 = performance.now();
    const held = [record({ callSid: 'held' }), ...mates(size, 'held-')];
    t.same(await Promise.all(held.map((r) => writer.write(r))), Array(size).fill('spooled'));
    t.ok(performance.now() - t0 < 2000, 'given up after the timeout');
    t.equal(writer.stats.failures, 1);
    await unlock();
    t.equal(await writer.write(record({ callSid: 'after' })), 'committed', 'the pool was not handed a connection stuck mid-statement');
    t.equal(await writer.replayNow(), size);
    await new Promise((r) => setTimeout(r, 200)); // the abandoned batch may still commit on its own (as a late commit would)
    t.equal(await db.prisma.cdr.count(), size + 1, 'each stored once');
  });
}

t.test('a failed commit rejects every CDR of its batch, and the writer goes on', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog);
  await db.pool.query('ALTER TABLE cdrs RENAME TO cdrs_away');
  const results = await Promise.allSettled([writer.write(record()), writer.write(record())]);
  t.same(
    results.map((r) => r.status),
    ['rejected', 'rejected'],
  );
  t.equal(writer.stats.failures, 1);
  await db.pool.query('ALTER TABLE cdrs_away RENAME TO cdrs');
  await writer.write(record());
  t.equal(await db.prisma.cdr.count(), 1);
  await writer.close();
  await t.rejects(writer.write(record()), /closed/);
});

/** A spool in a temporary directory, removed when the test ends. */
async function tempSpool(t: Test): Promise<CdrSpool> {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return new CdrSpool(path.join(dir, 'spool'), quietLog);
}

/** Holds an exclusive lock on `cdrs` in an open transaction: inserts wait, as on a stalled server. */
async function lockCdrs(db: Database): Promise<() => Promise<void>> {
  const client = await db.pool.connect();
  await client.query('BEGIN');
  await client.query('LOCK TABLE cdrs IN ACCESS EXCLUSIVE MODE');
  return async () => {
    await client.query('ROLLBACK');
    client.release();
  };
}

/**
 * A TCP proxy between a pool and Postgres that counts the client's turns: a turn is what the
 * client sends before Postgres answers, so each turn after the first costs a round trip.
 */
async function turnCountingPool(t: Test, url: string): Promise<{ pool: pg.Pool; turns: () => number }> {
  const target = new URL(url);
  const socketDir = target.searchParams.get('host');
  const port = Number(target.port || 5432);
  let turns = 0;
  const server = net.createServer((client) => {
    const upstream = socketDir ? net.connect(path.join(socketDir, `.s.PGSQL.${port}`)) : net.connect(port, target.hostname);
    let last: 'client' | 'server' = 'server';
    client.on('data', (chunk) => {
      if (last === 'server') turns++;
      last = 'client';
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      last = 'server';
      client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxied = new URL(url);
  proxied.searchParams.delete('host');
  proxied.hostname = '127.0.0.1';
  proxied.port = String((server.address() as net.AddressInfo).port);
  const pool = new pg.Pool({ connectionString: proxied.toString(), max: 2 });
  t.teardown(async () => {
    await pool.end();
    server.close();
  });
  return { pool, turns: () => turns };
}

for (const { way, size } of WAYS) {
  t.test(`a batch costs one round trip: the ${way} is sent with its data, on the connection the lane keeps`, async (t) => {
    const db = await migratedDatabase(t);
    const { pool, turns } = await turnCountingPool(t, db.url);
    const writer = new CdrWriter(pool, quietLog);
    await writer.write(record({ callSid: 'connects' })); // the connection and its handshake
    const before = turns();
    // A batch of two: its prepared INSERT is parsed now, in the same turn.
    const batch = [record({ callSid: 'one' }), ...mates(Math.max(size, 2), 'mate')];
    await Promise.all(batch.map((r) => writer.write(r)));
    t.equal(writer.stats.lastBatchSize, batch.length);
    t.equal(turns() - before, 1, 'statement and data in one turn (pg-copy-streams waits for CopyInResponse: two)');
    t.equal(await db.prisma.cdr.count(), batch.length + 1);
  });
}

t.test('a CDR handed over by the last callback a lane resumes still gets a lane (one in flight at most)', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog, { maxInFlight: 1 });
  for (let i = 0; i < 5; i++) t.equal(await writer.write(record({ callSid: `seq${i}` })), 'committed');
  t.equal(await db.prisma.cdr.count(), 5);
});

t.test('when a batch commits, the next one is sent before the committed callbacks resume', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog);
  const unlock = await lockCdrs(db);
  let lane: net.Socket | null = null;
  db.pool.on('acquire', (client) => {
    lane = (client as unknown as { connection: { stream: net.Socket } }).connection.stream;
  });
  const first = writer.write(record({ callSid: 'first' }));
  // Until the first batch waits on the lock (a fixed 50 ms was too short on a loaded machine). Asked
  // on a connection of its own: one from the writer's pool would be taken for the lane.
  const watcher = new pg.Client({ connectionString: db.url });
  await watcher.connect();
  for (let i = 0; i < 500; i++) {
    const { rows } = await watcher.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (lane && rows[0]!.n > 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  await watcher.end();
  const written = lane!.bytesWritten;
  const second = writer.write(record({ callSid: 'second' })); // queued behind it
  const sentBeforeFirstResumed = first.then(() => lane!.bytesWritten - written);
  await unlock();
  t.ok((await sentBeforeFirstResumed) > 0, "the second batch was handed to the lane's connection before the first one's callback ran");
  t.equal(await second, 'committed');
  t.equal(writer.stats.batches, 2);
});

t.test('with Postgres refusing, CDRs go to the fsynced spool and are replayed exactly once when it is back', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  const writer = new CdrWriter(db.pool, quietLog, { spool, replayIntervalMs: 3_600_000 });
  t.teardown(() => writer.close());
  await db.pool.query('ALTER TABLE cdrs RENAME TO cdrs_away');
  const records = Array.from({ length: 30 }, (_, i) => record({ callSid: `down${i}` }));
  const fates = await Promise.all(records.map((r) => writer.write(r)));
  t.same(new Set(fates), new Set(['spooled']), 'every write resolved as spooled, none rejected');
  t.equal(writer.spoolDepth, 30);
  const files = await readdir(spool.dir);
  const lines = (await Promise.all(files.map((f) => readFile(path.join(spool.dir, f), 'utf8')))).join('').trim().split('\n');
  t.equal(lines.length, 30, 'one NDJSON line per CDR on disk');
  t.equal(await writer.replayNow(), 0, 'replay while Postgres still refuses stores nothing');
  t.equal(writer.spoolDepth, 30, 'and keeps the spool');

  await db.pool.query('ALTER TABLE cdrs_away RENAME TO cdrs');
  t.equal(await writer.replayNow(), 30);
  t.equal(writer.spoolDepth, 0);
  t.same(await readdir(spool.dir), [], 'replayed segments are deleted');
  const stored = await db.pool.query<{ call_sid: string; n: number }>('SELECT call_sid, count(*)::int AS n FROM cdrs GROUP BY call_sid');
  t.equal(stored.rowCount, 30);
  t.ok(
    stored.rows.every((r) => r.n === 1),
    'each CDR stored once',
  );
  t.equal(writer.stats.spooled, 30);
  t.equal(writer.stats.replayed, 30);
});

t.test('a segment replayed twice (crash between commit and delete) still stores each CDR once', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  await spool.append([
    {
      idempotency_key: randomUUID(),
      received_at: new Date(),
      endpoint: 'passthru',
      outcome: 'answered',
      http_status: 200,
      handling_ms: 1,
      attempt: 1,
      params: {},
    },
  ]);
  await spool.close();
  const [segment] = await readdir(spool.dir);
  const copy = await readFile(path.join(spool.dir, segment!), 'utf8');
  const writer = new CdrWriter(db.pool, quietLog, { spool });
  t.equal(await writer.replayNow(), 1);
  await writeFile(path.join(spool.dir, segment!), copy); // as if the delete never happened
  const again = new CdrWriter(db.pool, quietLog, { spool: new CdrSpool(spool.dir, quietLog) });
  await again.start();
  t.equal(again.spoolDepth, 1, 'a new run counts what the old one left');
  t.equal(await again.replayNow(), 1);
  t.equal(await db.prisma.cdr.count(), 1);
  await writer.close();
  await again.close();
});

t.test('a torn last line (a crash mid-append, never acknowledged) is skipped, the rest replayed', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  await spool.init();
  const row = (sid: string) =>
    JSON.stringify({
      idempotency_key: randomUUID(),
      call_sid: sid,
      received_at: new Date(),
      endpoint: 'passthru',
      outcome: 'answered',
      http_status: 200,
      handling_ms: 1,
      attempt: 1,
      params: {},
    });
  await writeFile(path.join(spool.dir, 'cdrs-0000000000001-000000.ndjson'), `${row('a')}\n${row('b')}\n{"idempotency_key":"x","call`);
  const writer = new CdrWriter(db.pool, quietLog, { spool: new CdrSpool(spool.dir, quietLog) });
  await writer.start();
  t.equal(writer.spoolDepth, 3, 'three lines counted');
  t.equal(await writer.replayNow(), 2);
  t.equal(writer.spoolDepth, 0);
  t.same(
    (await db.prisma.cdr.findMany({ orderBy: { callSid: 'asc' } })).map((c) => c.callSid),
    ['a', 'b'],
  );
  await writer.close();
});

t.test('a spool write that fails part-way (disk full) does not tear the CDRs appended after it', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  const row = (sid: string) => ({
    idempotency_key: randomUUID(),
    call_sid: sid,
    received_at: new Date(),
    endpoint: 'passthru',
    outcome: 'answered',
    http_status: 200,
    handling_ms: 1,
    attempt: 1,
    params: {},
  });
  await spool.append([row('before')]);
  // The disk fills mid-write: part of the line lands, then ENOSPC (as a short write then fails).
  const handle = (spool as unknown as { open: { handle: { appendFile: (data: string) => Promise<void> } } }).open.handle;
  const appendFile = handle.appendFile.bind(handle);
  handle.appendFile = async (data: string) => {
    await appendFile(data.slice(0, 20));
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  };
  await t.rejects(spool.append([row('lost')]), { code: 'ENOSPC' }, 'the failed append is reported, not acknowledged');
  handle.appendFile = appendFile; // space again
  await spool.append([row('after')]);
  const writer = new CdrWriter(db.pool, quietLog, { spool });
  t.equal(await writer.replayNow(), 2, 'every acknowledged CDR is replayed');
  t.same(
    (await db.prisma.cdr.findMany({ orderBy: { callSid: 'asc' } })).map((c) => c.callSid),
    ['after', 'before'],
  );
  await writer.close();
});
t.test('a commit that misses its deadline is spooled in time; the late commit and the replay still leave one row', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  const writer = new CdrWriter(db.pool, quietLog, { spool, replayIntervalMs: 3_600_000 });
  t.teardown(() => writer.close());
  const unlock = await lockCdrs(db);
  const r = record({ callSid: 'stalled' });
  const t0 = performance.now();
  t.equal(await writer.write(r, 150), 'spooled');
  const took = performance.now() - t0;
  t.ok(took >= 140 && took < 1000, `answered after the 150 ms deadline plus an fsync (${took.toFixed(0)} ms)`);
  t.equal(writer.spoolDepth, 1);
  await unlock();
  await writer.flush(); // the insert that was waiting on the lock commits now
  t.equal(await db.prisma.cdr.count(), 1, 'the late commit landed');
  t.equal(await writer.replayNow(), 1, 'the spooled copy is replayed');
  t.equal(await db.prisma.cdr.count({ where: { idempotencyKey: r.idempotencyKey } }), 1, 'and skipped as a duplicate');
});

t.test('close() is bounded: what a stalled Postgres has not committed is spooled, and replayed by the next run', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  const writer = new CdrWriter(db.pool, quietLog, { spool, closeTimeoutMs: 200 });
  const unlock = await lockCdrs(db);
  const writes = Array.from({ length: 5 }, (_, i) => writer.write(record({ callSid: `closing${i}` })));
  await new Promise((r) => setTimeout(r, 50));
  const t0 = performance.now();
  await writer.close();
  t.ok(performance.now() - t0 < 1000, 'close returned without waiting for the lock');
  t.same(await Promise.all(writes), Array(5).fill('spooled'));
  await unlock();
  const next = new CdrWriter(db.pool, quietLog, { spool: new CdrSpool(spool.dir, quietLog) });
  await next.start();
  t.equal(next.spoolDepth, 5);
  await next.replayNow();
  await new Promise((r) => setTimeout(r, 200)); // the first writer's insert, no longer waited for, may land too
  t.equal(await db.pool.query('SELECT DISTINCT call_sid FROM cdrs').then((q) => q.rowCount), 5);
  t.equal(await db.prisma.cdr.count(), 5, 'each exactly once');
  await next.close();
});

t.test('two instances on one DATA_DIR: a replay by one loses none of the CDRs the other still appends to its segment', async (t) => {
  const db = await migratedDatabase(t);
  const shared = await tempSpool(t);
  const other = new CdrSpool(shared.dir, quietLog); // the second instance's spool, in the same directory
  const row = (sid: string) => ({
    idempotency_key: randomUUID(),
    call_sid: sid,
    received_at: new Date(),
    endpoint: 'passthru',
    outcome: 'answered',
    http_status: 200,
    handling_ms: 1,
    attempt: 1,
    params: {},
  });
  const first = new CdrWriter(db.pool, quietLog, { spool: shared, replayIntervalMs: 3_600_000 });
  const second = new CdrWriter(db.pool, quietLog, { spool: other, replayIntervalMs: 3_600_000 });
  t.teardown(async () => {
    await first.close();
    await second.close();
  });
  await shared.append([row('first-1')]);
  await other.append([row('second-1')]); // the second instance's open segment
  await first.replayNow(); // Postgres is back: the first instance replays the directory
  await other.append([row('second-2'), row('second-3')]); // acknowledged: fsynced, its callbacks answered
  await second.replayNow();
  await first.replayNow();
  t.same(
    (await db.prisma.cdr.findMany({ orderBy: { callSid: 'asc' } })).map((c) => c.callSid),
    ['first-1', 'second-1', 'second-2', 'second-3'],
    'every acknowledged CDR is stored',
  );
  t.equal(await db.prisma.cdr.count(), 4, 'each once');
  t.equal(first.spoolDepth, 0, 'the first instance counts nothing left');
  t.equal(second.spoolDepth, 0, 'nor does the second (its /readyz is not held at 503)');
  t.same(await readdir(shared.dir), [], 'and the directory is empty');
});

t.test('a spool file that cannot be read holds back neither the start, nor new spooling, nor the other files', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  const row = (sid: string) => ({
    idempotency_key: randomUUID(),
    call_sid: sid,
    received_at: new Date(),
    endpoint: 'passthru',
    outcome: 'answered',
    http_status: 200,
    handling_ms: 1,
    attempt: 1,
    params: {},
  });
  await spool.append([row('left-1'), row('left-2')]);
  await spool.close();
  // Oldest by its name, and unreadable: read() fails with EISDIR. (Tests run as root, for whom a
  // file without read permission, what an operator's copy as another user leaves, is still readable.)
  const unreadable = path.join(spool.dir, 'cdrs-0000000000001-000000.ndjson');
  await mkdir(unreadable);
  const writer = new CdrWriter(db.pool, quietLog, { spool: new CdrSpool(spool.dir, quietLog), replayIntervalMs: 3_600_000 });
  t.teardown(() => writer.close());
  await writer.start();
  t.equal(writer.spoolDepth, 2, 'the readable file is counted');
  await writer.replayNow();
  await db.pool.query('ALTER TABLE cdrs RENAME TO cdrs_away');
  t.equal(await writer.write(record({ callSid: 'new' })), 'spooled', 'a CDR Postgres refuses is still spooled');
  await db.pool.query('ALTER TABLE cdrs_away RENAME TO cdrs');
  await writer.replayNow();
  t.same(
    (await db.prisma.cdr.findMany({ orderBy: { callSid: 'asc' } })).map((c) => c.callSid),
    ['left-1', 'left-2', 'new'],
    'the files after it are replayed',
  );
  t.equal(writer.spoolDepth, 0);
  t.ok(
    (await readdir(spool.dir)).some((name) => name.startsWith('cdrs-0000000000001-000000.ndjson')),
    'the unreadable file is left for the operator',
  );
});

t.test('start() replays what an earlier run left, without being asked', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  await spool.append(
    [1, 2, 3].map((i) => ({
      idempotency_key: randomUUID(),
      call_sid: `left${i}`,
      received_at: new Date(),
      endpoint: 'passthru',
      outcome: 'answered',
      http_status: 200,
      handling_ms: 1,
      attempt: 1,
      params: {},
    })),
  );
  await spool.close();
  const writer = new CdrWriter(db.pool, quietLog, { spool: new CdrSpool(spool.dir, quietLog) });
  t.teardown(() => writer.close());
  await writer.start();
  for (let i = 0; i < 100 && writer.spoolDepth > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(writer.spoolDepth, 0);
  t.equal(await db.prisma.cdr.count(), 3);
});

t.test('a NUL or lone surrogate in a parameter name does not sink the batch it shares', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog);
  const poison = record({
    callSid: 'poison',
    params: JSON.parse('{"CallSid":"poison","a\\u0000b":"1","\\ud800":"2","__proto__":"kept"}') as Record<string, string>,
  });
  const fates = await Promise.all([writer.write(record({ callSid: 'mate-1' })), writer.write(poison), writer.write(record({ callSid: 'mate-2' }))]);
  t.same(fates, ['committed', 'committed', 'committed']);
  t.equal(writer.stats.batches, 1, 'one batch');
  const stored = await db.prisma.cdr.findFirst({ where: { callSid: 'poison' } });
  t.same(stored?.params, JSON.parse('{"CallSid":"poison","ab":"1","\\ufffd":"2","__proto__":"kept"}'), 'names cleaned, __proto__ kept as a plain key');
  t.equal(Object.keys(stored!.params as object).length, 4);
});

t.test('a spooled row Postgres refuses for its data is set aside; the rest of the spool is replayed', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  const row = (sid: string, over: Record<string, unknown> = {}) => ({
    idempotency_key: randomUUID(),
    call_sid: sid,
    received_at: new Date(),
    endpoint: 'passthru',
    outcome: 'answered',
    http_status: 200,
    handling_ms: 1,
    attempt: 1,
    params: {},
    ...over,
  });
  await spool.append([row('good-1'), row('bad', { http_status: 'not a number' }), row('good-2')]);
  await spool.append([row('good-3')]);
  await spool.close();
  const writer = new CdrWriter(db.pool, quietLog, { spool: new CdrSpool(spool.dir, quietLog) });
  await writer.start();
  t.equal(writer.spoolDepth, 4);
  await writer.replayNow();
  t.equal(writer.spoolDepth, 0, 'the spool drains');
  t.same(
    (await db.prisma.cdr.findMany({ orderBy: { callSid: 'asc' } })).map((c) => c.callSid),
    ['good-1', 'good-2', 'good-3'],
  );
  const rejected = (await readFile(path.join(spool.dir, 'rejected.ndjson'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { reason: string; row: { call_sid: string } });
  t.equal(rejected.length, 1);
  t.equal(rejected[0]!.row.call_sid, 'bad');
  t.match(rejected[0]!.reason, /integer/);
  t.equal(
    writer.stats.replayed,
    3,
    'exoroute_cdr_replayed_total counts the three stored once (start() and replayNow() share one replay), not the one set aside',
  );
  t.equal(writer.stats.setAside, 1, 'exoroute_cdr_set_aside_total counts it');
  await writer.close();
});

t.test("the spool holds callers' numbers: its directory and files are for the service's user only (0700, 0600)", async (t) => {
  const spool = await tempSpool(t);
  await spool.append([{ idempotency_key: randomUUID(), call_sid: 'mode', received_at: new Date(), endpoint: 'passthru', params: {} }]);
  await spool.setAside({ call_sid: 'aside' }, 'test');
  await spool.close();
  t.equal((await stat(spool.dir)).mode & 0o777, 0o700, 'the directory');
  for (const name of await readdir(spool.dir)) t.equal((await stat(path.join(spool.dir, name))).mode & 0o777, 0o600, name);
  t.equal((await readdir(spool.dir)).length, 2, 'a segment and rejected.ndjson');
});

/** Text no btree index entry takes: Postgres refuses it with SQLSTATE 54000 (program limit exceeded), whatever the column's type allows. */
const tooLongToIndex = () => Array.from({ length: 2000 }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 0x5000))).join('');

t.test('a CDR Postgres refuses for a limit (an index entry too large: 54000) does not hold back the spool or the CDRs batched with it', async (t) => {
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  const writer = new CdrWriter(db.pool, quietLog, { spool, replayIntervalMs: 3_600_000 });
  await writer.start();
  const fates = await Promise.all([
    writer.write(record({ callSid: 'ok-1' })),
    writer.write(record({ callSid: tooLongToIndex() })),
    writer.write(record({ callSid: 'ok-2' })),
  ]);
  t.same(fates, ['spooled', 'spooled', 'spooled'], 'the batch Postgres refused is spooled, as before');
  await writer.replayNow();
  t.equal(writer.spoolDepth, 0, 'the spool drains: the refused row is set aside, not retried forever');
  t.same(
    (await db.prisma.cdr.findMany({ orderBy: { callSid: 'asc' } })).map((c) => c.callSid),
    ['ok-1', 'ok-2'],
  );
  const rejected = (await readFile(path.join(spool.dir, 'rejected.ndjson'), 'utf8')).trim().split('\n');
  t.equal(rejected.length, 1);
  t.match(JSON.parse(rejected[0]!).reason, /index row size/);
  await writer.close();
});

t.test('while one batch waits on Postgres the next is inserted alongside, up to maxInFlight at once', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog, { maxInFlight: 3 });
  const unlock = await lockCdrs(db);
  const writes: Array<Promise<unknown>> = [];
  for (let i = 0; i < 10; i++) {
    writes.push(writer.write(record({ callSid: `lane${i}` })));
    await new Promise((r) => setTimeout(r, 15)); // each arrives while the earlier ones wait
  }
  // Each lane's batch reaches Postgres once its connection is made, which on a loaded machine can take
  // longer than the writes above: wait for the three (a fixed moment saw 1 when connecting took 150 ms).
  const waiting = async () =>
    (
      await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND (query LIKE 'COPY cdrs%' OR query LIKE 'INSERT INTO cdrs%') AND wait_event_type = 'Lock'`,
      )
    ).rows[0]!.n;
  for (let i = 0; i < 500 && (await waiting()) < 3; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(await waiting(), 3, 'three batches in flight, no more');
  await unlock();
  t.same(new Set(await Promise.all(writes)), new Set(['committed']));
  t.equal(await db.prisma.cdr.count(), 10);
  t.equal(writer.stats.batches, 4, 'the seven that queued meanwhile went in one more batch');
});

t.test('a spool segment is replayed as it is read, a chunk at a time, not read whole first', async (t) => {
  // A segment holds up to ~30 s of CDRs spooled at full rate: read whole, it sat in memory at once
  // (and past ~512 MB could not be read into one string at all).
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(path.join(dir, 'spool'));
  const line = (i: number) => `${JSON.stringify({ idempotency_key: `k${i}`, call_sid: `c${i}` })}\n`;
  const lines = Array.from({ length: 250 }, (_, i) => line(i));
  lines.splice(220, 0, '{"torn":\n'); // after the second chunk's rows
  await writeFile(path.join(dir, 'spool', 'cdrs-0000000000001-000000.ndjson'), lines.join(''));
  const events: string[] = [];
  const log = {
    ...quietLog,
    warn: (_o: unknown, msg?: string) => msg?.includes('torn') && events.push('torn line'),
    info: () => {},
    error: () => {},
  } as unknown as typeof quietLog;
  const spool = new CdrSpool(path.join(dir, 'spool'), log);
  const replayed = await spool.replay(async (rows) => {
    events.push(`insert ${rows.length}`);
  }, 100);
  t.equal(replayed, 250, 'every row stored, the torn line skipped');
  t.same(events, ['insert 100', 'insert 100', 'torn line', 'insert 50'], 'the first chunks were inserted before the rest of the file was read');
  t.same(await readdir(path.join(dir, 'spool')), [], 'and the segment deleted');
});

t.test('Postgres down under traffic: the failed batches are one error line a second, not one per batch', async (t) => {
  // During an outage every callback is a batch of its own, and each failed with an error line and
  // its stack, beside the `CDRs spooled locally` warning that is kept to one a second.
  const lines: { level: string; msg: string; batchesFailed?: number }[] = [];
  const log = {
    ...quietLog,
    error: (o: { batchesFailed?: number }, msg: string) => lines.push({ level: 'error', msg, batchesFailed: o.batchesFailed }),
    warn: (_o: unknown, msg: string) => lines.push({ level: 'warn', msg }),
    info: () => {},
    debug: () => {},
  } as unknown as typeof quietLog;
  const refused = net.createServer((socket) => socket.destroy());
  await new Promise<void>((r) => refused.listen(0, '127.0.0.1', r));
  t.teardown(() => refused.close());
  const pool = new pg.Pool({ connectionString: `postgresql://x@127.0.0.1:${(refused.address() as net.AddressInfo).port}/x`, connectionTimeoutMillis: 1000 });
  pool.on('error', () => {});
  t.teardown(() => pool.end());
  const spool = await tempSpool(t);
  const writer = new CdrWriter(pool, log, { spool, replayIntervalMs: 3_600_000 });
  t.teardown(() => writer.close());
  for (let i = 0; i < 20; i++) t.equal(await writer.write(record({ callSid: `down-${i}` })), 'spooled');
  t.equal(writer.stats.failures, 20, 'each CDR was a batch of its own, and each failed');
  const failed = lines.filter((l) => l.msg === 'CDR batch insert failed');
  t.ok(failed.length >= 1 && failed.length <= 2, `${failed.length} error lines for 20 failed batches`);
  t.equal(failed[0]!.batchesFailed, 1, 'the first failure at once');
  t.ok(lines.filter((l) => l.msg === 'CDRs spooled locally').length <= 2, 'and the spool warning as before');
});

t.test('a spool replay is one info line (how many stored, what is left), not one more per segment', async (t) => {
  const db = await migratedDatabase(t);
  const { logger, lines } = capturedLog();
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const writer = new CdrWriter(db.pool, logger, { spool: new CdrSpool(path.join(dir, 'spool'), logger), replayIntervalMs: 3_600_000 });
  t.teardown(() => writer.close());
  await writer.start();
  await db.pool.query('ALTER TABLE cdrs RENAME TO cdrs_away');
  for (let i = 0; i < 3; i++) t.equal(await writer.write(record({ callSid: `once${i}` })), 'spooled');
  await db.pool.query('ALTER TABLE cdrs_away RENAME TO cdrs');
  lines.length = 0;
  t.equal(await writer.replayNow(), 3);
  const info = lines.map((l) => JSON.parse(l)).filter((l) => l.level === 30);
  t.same(
    info.map((l) => [l.msg, l.replayed, l.spoolDepth]),
    [['spooled CDRs stored in Postgres', 3, 0]],
  );
});

t.test('spool writes that keep failing (a full disk) are one error line a second, not one per write', async (t) => {
  // With Postgres down too (a full disk stops it as well), every callback's CDR went to the spool and
  // failed there: an error line with its stack per write, beside the `CDR not stored` of each callback.
  const { logger, lines } = capturedLog();
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new CdrSpool(path.join(dir, 'spool'), logger);
  await spool.init();
  // No segment can be opened any more (as root, permissions would not stop it: a file where the directory was).
  await rm(spool.dir, { recursive: true });
  await writeFile(spool.dir, '');
  for (let i = 0; i < 10; i++) await t.rejects(spool.append([{ idempotency_key: randomUUID(), call_sid: `full-${i}` }]), `write ${i} fails`);
  const failed = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'CDR spool write failed');
  t.ok(failed.length >= 1 && failed.length <= 2, `${failed.length} error lines for 10 failed writes`);
  t.match(failed[0], { level: 50, writesFailed: 1 }, 'the first at once');
});

t.test('once Postgres takes CDRs again, the spool is replayed at once, not after the backoff the outage built up', async (t) => {
  // The outage doubled the replay's wait (up to 30 s); a batch that committed ("Postgres is back")
  // left that timer alone, so /readyz stayed 503 and the CDRs out of Postgres that much longer.
  const db = await migratedDatabase(t);
  const spool = await tempSpool(t);
  const writer = new CdrWriter(db.pool, quietLog, { spool, replayIntervalMs: 100 });
  t.teardown(() => writer.close());
  await db.pool.query('ALTER TABLE cdrs RENAME TO cdrs_away');
  t.equal(await writer.write(record({ callSid: 'while-down' })), 'spooled');
  // Replays fail at 0.1, 0.3, 0.7, 1.5 and 3.1 s; the next waits until 6.3 s.
  await new Promise((r) => setTimeout(r, 3500));
  await db.pool.query('ALTER TABLE cdrs_away RENAME TO cdrs');
  t.equal(await writer.write(record({ callSid: 'back' })), 'committed');
  for (let i = 0; i < 30 && writer.spoolDepth > 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(writer.spoolDepth, 0, 'replayed within 1.5 s of the first commit');
  t.equal((await db.pool.query(`SELECT 1 FROM cdrs WHERE call_sid = 'while-down'`)).rowCount, 1);
});
