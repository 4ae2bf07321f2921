import t from 'tap';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { capturedLog, quietLog } from '../helper.js';
import { EmbeddedPostgresError, startEmbeddedPostgres } from '../../src/store/embedded-postgres.js';

t.test('the embedded Postgres is reached through its Unix socket; loopback TCP works too', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-embedded-'));
  await chmod(dir, 0o755); // as root, initdb runs as a separate postgres user
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const db = await startEmbeddedPostgres(path.join(dir, 'pg'), quietLog, { persistent: false });
  t.teardown(() => db.stop());
  const peer = async (url: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<{ addr: string | null }>('SELECT inet_client_addr()::text AS addr')).rows[0]!.addr;
    } finally {
      await client.end();
    }
  };
  t.equal(await peer(db.url), null, 'no client address: a Unix-socket connection');
  t.equal(await peer(db.tcpUrl), '127.0.0.1/32');
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.teardown(() => client.end());
  t.equal((await client.query<{ wal_init_zero: string }>('SHOW wal_init_zero')).rows[0]!.wal_init_zero, 'off', 'new WAL segments are not zero-filled first');
});

t.test('a wrapper command runs the server (bench/instructions.ts runs it under valgrind)', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-embedded-'));
  await chmod(dir, 0o755); // as root, initdb runs as a separate postgres user
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const db = await startEmbeddedPostgres(path.join(dir, 'pg'), quietLog, { persistent: false, wrapper: ['/usr/bin/env', 'EXOROUTE_WRAPPED=yes'] });
  t.teardown(() => db.stop());
  const environ = (await readFile(`/proc/${db.pid}/environ`, 'utf8')).split('\0');
  t.ok(environ.includes('EXOROUTE_WRAPPED=yes'), 'the server was started by the wrapper');
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.teardown(() => client.end());
  t.equal((await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1, 'and serves');
});

t.test('a second start on a directory whose Postgres runs says whose it is and what to do, in one line', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-embedded-'));
  await chmod(dir, 0o755); // as root, initdb runs as a separate postgres user
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The first exoroute's Postgres, still running (or left running by an exoroute killed with SIGKILL).
  const first = await startEmbeddedPostgres(path.join(dir, 'pg'), quietLog);
  t.teardown(() => first.stop());
  const second = await startEmbeddedPostgres(path.join(dir, 'pg'), quietLog).then(
    (db) => db.stop().then(() => null),
    (err: Error) => err,
  );
  t.type(second, EmbeddedPostgresError);
  const message = second?.message ?? '';
  t.match(message, `the embedded Postgres in ${path.join(dir, 'pg')} is already running (PID ${first.pid})`, 'names the directory and the running Postgres');
  t.match(message, /another exoroute.*DATA_DIR of its own.*PORT/, 'says a second exoroute needs its own DATA_DIR and PORT');
  t.match(message, `kill -INT ${first.pid}`, 'says how to stop a Postgres left behind');
  t.notMatch(message, /\n/, 'one line');
  t.notMatch(message, /postmaster/, 'no Postgres jargon as the only explanation');
});

t.test('the embedded Postgres stopping under the service (killed, a PANIC) is an error line saying so, with its last words', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-embedded-'));
  await chmod(dir, 0o755); // as root, initdb runs as a separate postgres user
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { logger, lines } = capturedLog();
  const db = await startEmbeddedPostgres(path.join(dir, 'pg'), logger, { persistent: false });
  t.teardown(() => db.stop());
  // Stopped by someone else (an operator's kill, a package upgrade): its own lines are debug, unseen at info.
  process.kill(db.pid!, 'SIGTERM');
  const stopped = () => lines.map((l) => JSON.parse(l)).find((l) => /embedded Postgres stopped/.test(l.msg));
  for (let i = 0; i < 200 && !stopped(); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(stopped(), { level: 50, pid: db.pid, postgres: /shut down/ }, 'one error line, with what Postgres said last');

  // Stopped by the service itself (its shutdown): no such line.
  const { logger: ownLogger, lines: ownLines } = capturedLog();
  const own = await startEmbeddedPostgres(path.join(dir, 'own'), ownLogger, { persistent: false });
  await own.stop();
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(
    ownLines.some((l) => /embedded Postgres stopped/.test(l)),
    'nothing when the service stops it',
  );
});
