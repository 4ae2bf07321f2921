/**
 * SIGTERM on the real server process (src/server.ts) when its Postgres connections died without a
 * word (a failover, a NAT or firewall dropping them: silencingProxy) while the retention job's run
 * waits for Postgres, or an admin request does: the process still stops gracefully within its bound,
 * and every callback it answered meanwhile has its CDR, stored exactly once by the next run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { type Database, openDatabase } from '../../src/store/database.js';
import { ADMIN_KEY, listeningPort, lockWaiters, migratedDatabase, quietLog, silencingProxy, untilReady } from '../helper.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The real server, every connection of it (both pools, the rules' LISTEN connection) through a silencing proxy, with a flow `bye`. */
async function startThroughProxy(t: Test) {
  const db = await migratedDatabase(t);
  const proxy = await silencingProxy(t, db.url);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-dead-shutdown-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, DATABASE_URL: proxy.url, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  server.stdout.on('data', (c: Buffer) => (output += c.toString()));
  server.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((r) => server.on('exit', (code) => r({ code, at: performance.now() })));
  t.teardown(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  const base = `http://127.0.0.1:${await listeningPort(t, server, () => output)}`;
  await untilReady(base);
  const created = await fetch(`${base}/admin/flows`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ slug: 'bye', name: 'Bye', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'A' } }),
  });
  t.equal(created.status, 201, 'flow created');
  return { db, proxy, dataDir, server, base, exited, output: () => output };
}

/** SIGTERM: exit 0 well within the forced exit's 10 s, the last line `stopped`. */
async function stopsGracefully(t: Test, server: ChildProcess, exited: Promise<{ code: number | null; at: number }>, output: () => string) {
  const termAt = performance.now();
  server.kill('SIGTERM');
  const { code, at } = await exited;
  t.equal(code, 0, 'exit code 0', { output: output() });
  t.ok(at - termAt < 9000, `exited ${(at - termAt).toFixed(0)} ms after SIGTERM, within the documented bound`);
  t.notMatch(output(), /shutdown failed|took longer/, 'no failed or forced shutdown');
  const lines = output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string });
  t.equal(lines.at(-1)?.msg, 'stopped', 'stopped gracefully');
}

/** The next run (in process here, on a live connection) stores each answered callback's CDR once. */
async function eachCdrOnce(t: Test, db: Database, dataDir: string, sids: string[]) {
  const config = loadConfig({ DATABASE_URL: db.url, DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY });
  const nextDb = openDatabase(db.url, quietLog);
  const app = await buildApp({ config, db: nextDb, logger: quietLog });
  t.teardown(async () => {
    await app.close();
    await nextDb.close();
  });
  await app.ready();
  for (let i = 0; i < 200 && app.cdrWriter.spoolDepth > 0; i++) await sleep(25);
  const { rows } = await db.pool.query<{ call_sid: string; n: number }>(
    'SELECT call_sid, count(*)::int AS n FROM cdrs WHERE call_sid = ANY($1) GROUP BY call_sid ORDER BY call_sid',
    [sids],
  );
  t.same(
    rows,
    sids.map((sid) => ({ call_sid: sid, n: 1 })),
    'one CDR for each callback answered',
  );
}

/** Callbacks answered (rules in memory), their CDRs spooled when Postgres does not take them. */
async function callbacks(t: Test, base: string, sids: string[]) {
  const statuses = await Promise.all(sids.map((sid) => fetch(`${base}/exotel/passthru/bye?CallSid=${sid}`, { redirect: 'manual' }).then((r) => r.status)));
  t.same(
    statuses,
    sids.map(() => 302),
    'callbacks answered while the connections are dead',
  );
}

t.test('SIGTERM with dead Postgres connections and a retention run waiting on one: exit 0 within a few seconds, no CDR lost', async (t) => {
  const { db, proxy, dataDir, server, base, exited, output } = await startThroughProxy(t);
  // The retention job's first run (15 s after start) waits for a lock held here: it is then on a
  // connection Postgres knows, which the proxy next silences for good (the lock is let go at once).
  // Its own client: the pool's connections end a transaction idle for 10 s.
  const locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
  t.teardown(() => locker.end());
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE dial_answers IN ACCESS EXCLUSIVE MODE');
  const waiting = async () => (await db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%dial_answers%'`)).rowCount;
  for (const until = Date.now() + 30_000; !(await waiting()) && Date.now() < until; ) await sleep(100);
  await lockWaiters(t, db.pool, 1, { query: '%dial_answers%' });
  proxy.silence();
  await locker.query('ROLLBACK');
  const sids = ['dead-1', 'dead-2', 'dead-3'];
  await callbacks(t, base, sids);
  await stopsGracefully(t, server, exited, output);
  await eachCdrOnce(t, db, dataDir, sids);
});

t.test('SIGTERM with an admin request in flight on a connection that died without a word: its connection is closed, and the stop is graceful', async (t) => {
  const { db, proxy, dataDir, server, base, exited, output } = await startThroughProxy(t);
  const headers = { authorization: `Bearer ${ADMIN_KEY}` };
  t.equal((await fetch(`${base}/admin/flows`, { headers })).status, 200, 'an admin request answered');
  proxy.silence();
  // Given up only after the statement timeouts and a grace (65 s by default): in flight at SIGTERM.
  const admin = fetch(`${base}/admin/flows`, { headers }).then(
    (r) => r.status,
    () => 'connection closed',
  );
  const sids = ['dead-admin-1', 'dead-admin-2'];
  await callbacks(t, base, sids);
  await stopsGracefully(t, server, exited, output);
  t.equal(await admin, 'connection closed', 'the admin request in flight: its connection closed');
  await eachCdrOnce(t, db, dataDir, sids);
});
