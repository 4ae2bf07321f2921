import t from 'tap';
import pg from 'pg';
import { capturedLog, createTestDatabase } from '../helper.js';
import { openDatabase } from '../../src/store/database.js';

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
