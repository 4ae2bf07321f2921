/**
 * Graceful shutdown of the real server process (src/server.ts): SIGTERM while callbacks are in
 * flight and Postgres holds their CDR inserts. Every in-flight callback is answered, the process
 * exits 0 within its bound, and the CDRs it could not commit are in the spool, replayed by the
 * next run exactly once.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/store/database.js';
import { ADMIN_KEY, buildTestApp, listeningPort, lockWaiters, migratedDatabase, quietLog, untilReady } from '../helper.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('SIGTERM: in-flight callbacks are answered, CDRs flushed or spooled, exit 0 in bounded time', async (t) => {
  const db = await migratedDatabase(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-shutdown-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      ADMIN_API_KEY: ADMIN_KEY,
      LOG_LEVEL: 'info',
      // Callbacks wait up to 3 s for their CDR: time enough for all 40 to reach the server first, on a busy machine too.
      CDR_WRITE_TIMEOUT_MS: '3000',
      DECISION_BUDGET_MS: '5000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  server.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  server.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((r) => server.on('exit', (code) => r({ code, at: performance.now() })));
  t.teardown(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  const base = `http://127.0.0.1:${await listeningPort(t, server, () => stdout)}`;

  await untilReady(base);
  const admin = (url: string, body: unknown) =>
    fetch(`${base}${url}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const created = await admin('/admin/flows', { slug: 'bye', name: 'Bye', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'A' } });
  t.equal(created.status, 201, 'flow created on the running server');
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${base}/exotel/passthru/bye?CallSid=warmup-${i}`, { redirect: 'manual' });
    if (res.status === 302) break;
    await sleep(20);
  }

  // Hold every CDR insert: the callbacks below are in flight when SIGTERM arrives.
  const locker = await db.pool.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE cdrs IN ACCESS EXCLUSIVE MODE');
  const sids = Array.from({ length: 40 }, (_, i) => `bye-${i}`);
  const answers = sids.map((sid) =>
    fetch(`${base}/exotel/passthru/bye?CallSid=${sid}&CallFrom=%2B919800000001`, { redirect: 'manual' }).then(
      (r) => r.status,
      (err: Error) => `error: ${err.message}`,
    ),
  );
  // In flight: the CDR writer's batch (a prepared INSERT when small, else a COPY) waits on the lock.
  // Then a moment more, so that every request has been read (a request Node has not read yet counts
  // as an idle connection, closed at SIGTERM).
  await lockWaiters(t, db.pool, 1, { query: '% cdrs (received_at, %' });
  await sleep(500);
  const termAt = performance.now();
  server.kill('SIGTERM');
  const statuses = await Promise.all(answers);
  t.same(
    statuses.filter((s) => s !== 302),
    [],
    'every callback in flight at SIGTERM was answered (branch B)',
  );
  const { code, at } = await exited;
  t.equal(code, 0, 'exit code 0', { stderr });
  t.ok(at - termAt < 10_000, `exited ${(at - termAt).toFixed(0)} ms after SIGTERM`);
  t.notMatch(stderr + stdout, /shutdown failed|took longer/, 'no failed or forced shutdown');
  // The log is written in the background in 4 kB chunks: what was still buffered is flushed at exit.
  const lines = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; callSid?: string });
  t.same(
    sids.filter((sid) => !lines.some((l) => l.msg === 'callback' && l.callSid === sid)),
    [],
    'a log line for every callback answered at shutdown',
  );
  t.equal(lines.at(-1)?.msg, 'stopped', 'the last line, written just before exit, is in the log');
  await locker.query('ROLLBACK');
  locker.release();

  const spooled = await readdir(path.join(dataDir, 'spool'));
  t.ok(spooled.length > 0, 'CDRs the locked table could not take are in the spool');

  // The next run (in process here) replays them: each callback ends with exactly one CDR.
  const config = loadConfig({ DATABASE_URL: db.url, DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY });
  const nextDb = openDatabase(db.url, quietLog);
  const app = await buildApp({ config, db: nextDb, logger: quietLog });
  t.teardown(async () => {
    await app.close();
    await nextDb.close();
  });
  await app.ready();
  for (let i = 0; i < 200 && app.cdrWriter.spoolDepth > 0; i++) await sleep(25);
  t.equal(app.cdrWriter.spoolDepth, 0, 'spool replayed');
  const { rows } = await db.pool.query<{ call_sid: string; n: number }>(
    `SELECT call_sid, count(*)::int AS n FROM cdrs WHERE call_sid LIKE 'bye-%' GROUP BY call_sid ORDER BY call_sid`,
  );
  t.equal(rows.length, sids.length, 'a CDR for every callback');
  t.ok(
    rows.every((r) => r.n === 1),
    'exactly one each',
  );
});

t.test('a callback on a keep-alive connection while the server closes is answered with its CDR, not a bare 503', async (t) => {
  const { app, db, admin } = await buildTestApp(t);
  const created = await admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'bye', name: 'Bye', type: 'passthru', rules: [], otherwise: { branch: 'B' }, onError: { branch: 'A' } },
  });
  t.equal(created.statusCode, 201);
  for (let i = 0; i < 200 && !app.rules.current?.flows.has('bye'); i++) await sleep(10);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as net.AddressInfo;

  // A request in flight at shutdown (an admin list held up by a lock): its answer leaves with
  // `Connection: keep-alive`, and a client (a balancer) sends the next callback on that connection.
  const locker = await db.pool.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE flows IN ACCESS EXCLUSIVE MODE');
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  let sent = false;
  const ended = new Promise<void>((r) => socket.on('close', () => r()));
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString();
    if (!sent) {
      sent = true;
      socket.write('GET /exotel/passthru/bye?CallSid=while-closing HTTP/1.1\r\nHost: exoroute\r\n\r\n');
    }
  });
  socket.write(`GET /admin/flows HTTP/1.1\r\nHost: exoroute\r\nAuthorization: Bearer ${ADMIN_KEY}\r\n\r\n`);
  await lockWaiters(t, db.pool); // the admin request is in flight, held up
  const closing = app.close();
  await sleep(50);
  await locker.query('ROLLBACK');
  locker.release();
  await Promise.race([ended, sleep(5000)]);
  socket.destroy();
  await closing;
  const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
  t.same(statuses, [200, 302], 'the admin request, then the callback (branch B)');
  const { rows } = await db.pool.query(`SELECT outcome FROM cdrs WHERE call_sid = 'while-closing'`);
  t.equal(rows.length, 1, 'one CDR for the callback');
});

t.test('shutdown is bounded while Postgres stalls: refused-callback counts and a rules reload that get no answer do not hold it', async (t) => {
  const { app, db } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: 'shutdown-test-secret-0123' });
  // A refused callback (wrong secret): its count waits in memory for the next flush, or the one at close.
  const refused = await app.inject({ url: '/exotel/passthru/bye?CallSid=refused-1&token=wrong-secret-0123456789' });
  t.equal(refused.statusCode, 401);
  // Postgres stops answering the two (locks stand in for a stalled server): close() would write the
  // counts, and a rules reload (an admin change announced just before the stall) is under way.
  const locker = await db.pool.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE callback_refusals, schedules IN ACCESS EXCLUSIVE MODE');
  void app.rules.reload().catch(() => {});
  await lockWaiters(t, db.pool); // the reload waits for Postgres
  const t0 = performance.now();
  const closed = await Promise.race([app.close().then(() => 'closed'), sleep(8000).then(() => 'still closing after 8 s')]);
  t.equal(closed, 'closed', `app.close() returned (${(performance.now() - t0).toFixed(0)} ms), as SIGTERM's stop needs within its 10 s`);
  t.ok(performance.now() - t0 < 5000, 'within a few seconds');
  await locker.query('ROLLBACK');
  locker.release();
});

t.test("start and stop: one info line says the service listens (with the docs and PUBLIC_URL), not Fastify's as well", async (t) => {
  const db = await migratedDatabase(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-start-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  // Port 0: the system picks a free one, read back from the line under test (listeningPort).
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, DATABASE_URL: db.url, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  server.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  const exited = new Promise<number | null>((r) => server.on('exit', r));
  t.teardown(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  const port = await listeningPort(t, server, () => stdout);
  await untilReady(`http://127.0.0.1:${port}`);
  server.kill('SIGTERM');
  t.equal(await exited, 0);
  const lines = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string; docs?: string });
  const listening = lines.filter((l) => /listening/i.test(l.msg));
  t.same(
    listening.map((l) => [l.level, l.docs]),
    [[30, `http://127.0.0.1:${port}/docs`]],
    "one line, exoroute's own",
    { stdout },
  );
  t.equal(lines.at(-1)?.msg, 'stopped');
});

t.test("SIGHUP (a `kill -HUP` meant as a reload): a graceful stop with exit 129, which systemd's Restart=on-failure restarts", async (t) => {
  const db = await migratedDatabase(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-hup-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, DATABASE_URL: db.url, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  server.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  const exited = new Promise<number | null>((r) => server.on('exit', r));
  t.teardown(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });
  const port = await listeningPort(t, server, () => stdout);
  await untilReady(`http://127.0.0.1:${port}`);
  server.kill('SIGHUP');
  // 0 would read as a stop that was asked for: the unit (deploy/exoroute.service) would leave the service down.
  t.equal(await exited, 129, 'exit 129 (128 + SIGHUP), not 0');
  const lines = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; signal?: string });
  t.match(lines.find((l) => l.signal === 'SIGHUP')?.msg, /shutting down.*restart/, 'the log says a supervisor restarts it', { stdout });
  t.equal(lines.at(-1)?.msg, 'stopped', 'stopped gracefully first');
});
