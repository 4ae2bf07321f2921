import t from 'tap';
import pg from 'pg';
import { capturedLog, createTestDatabase, quietLog } from '../helper.js';
import { openDatabase } from '../../src/store/database.js';

// First in this file: pg warns of a deprecation once per process.
t.test("a new connection's first query runs alone, after its idle_in_transaction_session_timeout is set", async (t) => {
  // pg 8 warns when a query is sent to a client still running one (pg 9 refuses it): the pool's
  // 'connect' listener sent its SET while the caller's first query went out on the same client.
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  const db = openDatabase(await createTestDatabase(t), quietLog);
  t.teardown(() => db.close());
  for (const pool of [db.pool, db.adminPool]) {
    const { rows } = await pool.query<{ idle_in_transaction_session_timeout: string }>('SHOW idle_in_transaction_session_timeout');
    t.equal(rows[0]!.idle_in_transaction_session_timeout, '10s', 'set on the connection before its first query');
  }
  const client = await db.pool.connect();
  const { rows } = await client.query<{ idle_in_transaction_session_timeout: string }>('SHOW idle_in_transaction_session_timeout');
  client.release();
  t.equal(rows[0]!.idle_in_transaction_session_timeout, '10s', 'and on a connection taken with connect()');
  await new Promise((r) => setImmediate(r));
  t.same(
    warnings.filter((w) => /already executing a query/.test(w)),
    [],
    'no query sent to a busy client',
  );
});

t.test('an idle connection Postgres ends is one short warning: the error, not the pg client behind it', async (t) => {
  // pg-pool hangs the client on the error (err.client): logged whole, it was a 4 kB line per
  // connection (its connection parameters, statements, the backend's cancel key `secretKey`).
  const { logger, lines } = capturedLog();
  const url = await createTestDatabase(t);
  const db = openDatabase(url, logger);
  t.teardown(() => db.close());
  const { rows } = await db.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  t.equal(db.pool.idleCount, 1, 'the connection is back in the pool, idle');

  const other = new pg.Client({ connectionString: url });
  await other.connect();
  await other.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
  await other.end();
  for (let i = 0; i < 200 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 10));

  t.equal(lines.length, 1, 'one line');
  const line = JSON.parse(lines[0]!);
  t.equal(line.level, 40, 'a warning');
  t.equal(line.msg, 'idle database connection failed');
  t.match(JSON.stringify(line.err), /terminating connection due to administrator command/, 'says what Postgres said');
  t.notMatch(lines[0], /secretKey|connectionParameters|parsedStatements|_types/, 'nothing of the pg client');
  t.ok(lines[0]!.length < 1000, `a short line (${lines[0]!.length} characters)`);
});
