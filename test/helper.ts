/**
 * Builds the real app against a real Postgres: each test file gets a database of its own, freshly
 * migrated, on the server `npm test` provides (TEST_DATABASE_URL) — or DATABASE_URL when a test
 * file is run by hand against your own Postgres.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { Test } from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig, type Config } from '../src/config.js';
import { openDatabase, type Database } from '../src/store/database.js';
import { applyMigrations } from '../src/store/migrate.js';
import { databaseOptions } from '../src/store/setup.js';
import { ensureBootstrapKey } from '../src/store/api-keys.js';
import { freePort } from '../src/store/embedded-postgres.js';

export const ADMIN_KEY = 'exr_test-admin-key-0123456789';
export const quietLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** A logger that keeps every line it writes (JSON text, one per line), for tests that read the log. */
export function capturedLog(level: pino.Level = 'info'): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

function serverUrl(): string {
  const url = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  if (!url) throw new Error('run tests with `npm test` (it provides a Postgres), or set DATABASE_URL');
  return url;
}

/** A new, empty database on the test server; dropped when the test ends. */
export async function createTestDatabase(t: Test): Promise<string> {
  const base = new URL(serverUrl());
  const name = `exoroute_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base.toString() });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: base.toString() });
    await c.connect();
    // A pool's end() resolves once it has asked its connections to close, before their backends
    // have gone. FORCE would terminate a backend still going, and its FATAL error would reach a
    // closing client with nobody listening (a test's own pool): an uncaught error. Wait for them.
    for (let i = 0; i < 100; i++) {
      const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name]);
      if (rows[0]!.n === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A migrated database and a Database handle on it, closed at teardown. */
export async function migratedDatabase(t: Test, opts: Parameters<typeof openDatabase>[2] = {}): Promise<Database> {
  const url = await createTestDatabase(t);
  const db = openDatabase(url, quietLog, opts);
  t.teardown(() => db.close());
  await applyMigrations(db.pool);
  return db;
}

export interface TestApp {
  app: FastifyInstance;
  db: Database;
  config: Config;
  /** inject() with the bootstrap admin key */
  admin: (opts: { method: string; url: string; payload?: unknown; headers?: Record<string, string> }) => Promise<LightMyRequestResponse>;
}

/** The app as the server builds it, on a fresh migrated database, with ADMIN_KEY as bootstrap key. */
export async function buildTestApp(t: Test, env: Record<string, string> = {}, opts: { logger?: pino.Logger; random?: () => number } = {}): Promise<TestApp> {
  // The pools as the server opens them: the configuration without the database's URL, which comes next.
  const db = await migratedDatabase(t, databaseOptions(loadConfig({ ADMIN_API_KEY: ADMIN_KEY, ...env })));
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, DATABASE_URL: db.url, ...env });
  await ensureBootstrapKey(db.pool, { configuredKey: ADMIN_KEY, dataDir: config.DATA_DIR });
  const app = await buildApp({ config, db, logger: opts.logger ?? quietLog, ...(opts.random ? { random: opts.random } : {}) });
  t.teardown(() => app.close());
  await app.ready();
  const admin: TestApp['admin'] = (opts) =>
    app.inject({
      method: opts.method as 'GET',
      url: opts.url,
      ...(opts.payload !== undefined ? { payload: opts.payload as object } : {}),
      headers: { authorization: `Bearer ${ADMIN_KEY}`, ...opts.headers },
    });
  return { app, db, config, admin };
}

/**
 * A second instance of the app on the same database, as another server would run it: its own
 * pool, data directory (CDR spool) and rules snapshot, following changes through LISTEN/NOTIFY.
 */
export async function buildSecondInstance(t: Test, first: TestApp, env: Record<string, string> = {}): Promise<TestApp> {
  const db = openDatabase(first.db.url, quietLog);
  t.teardown(() => db.close());
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, DATABASE_URL: db.url, ...env });
  const app = await buildApp({ config, db, logger: quietLog });
  t.teardown(() => app.close());
  await app.ready();
  const admin: TestApp['admin'] = (opts) =>
    app.inject({
      method: opts.method as 'GET',
      url: opts.url,
      ...(opts.payload !== undefined ? { payload: opts.payload as object } : {}),
      headers: { authorization: `Bearer ${ADMIN_KEY}`, ...opts.headers },
    });
  return { app, db, config, admin };
}

/**
 * Waits until `count` sessions of the pool's database wait on a lock (pg_stat_activity:
 * wait_event_type 'Lock'; with `query`, only statements LIKE it), or `or()` holds, polling for at
 * most ~10 s, and asserts that one of them came about. A test of what happens while a statement
 * waits on a lock acts once it waits: after a fixed moment instead, on a busy machine the statement
 * may not even have been sent yet, and the test passes without the wait it is about.
 */
export async function lockWaiters(t: Test, pool: pg.Pool, count = 1, opts: { query?: string; or?: () => boolean } = {}): Promise<number> {
  const waiting = async () =>
    (
      await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND ($1::text IS NULL OR query LIKE $1)`,
        [opts.query ?? null],
      )
    ).rows[0]!.n;
  const done = (n: number) => n >= count || opts.or?.() === true;
  let n = await waiting();
  for (let i = 0; i < 1000 && !done(n); i++) {
    await new Promise((r) => setTimeout(r, 10));
    n = await waiting();
  }
  t.ok(done(n), `${count} session(s) waiting on a lock${opts.query ? ` (${opts.query})` : ''}${opts.or ? ', or done' : ''}: ${n} seen`);
  return n;
}

/**
 * The port a server started with PORT=0 (src/server.ts, `npm start`) listens on: the kernel's pick,
 * read back from its `exoroute listening` log line (LOG_LEVEL info or lower) in `output()`. A port
 * chosen free beforehand (freePort()) can be taken before the server binds it, by another test
 * file or program, which then answers in its place. Fails the test when the server exits or
 * `ms` pass first.
 */
export async function listeningPort(t: Test, child: ChildProcess, output: () => string, ms = 30_000): Promise<number> {
  const found = () => /"docs":"http:\/\/[^"]*:(\d+)\/docs"/.exec(output());
  for (const until = Date.now() + ms; !found() && child.exitCode === null && child.signalCode === null && Date.now() < until; ) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(found()?.[1] ?? 0);
  t.ok(port, `the server listens on port ${port}`, port ? {} : { output: output() });
  return port;
}

/** Polls `base`/readyz every 100 ms until it answers 200, at most `tries` times; whether it did. */
export async function untilReady(base: string, tries = 300): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const ok = await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/**
 * What `start` returns on a port free a moment ago (freePort()), tried again on another one when
 * `taken(err)` says that port was taken in between (by another test file or program): up to 5 times.
 */
export async function onFreePort<T>(start: (port: number) => Promise<T>, taken: (err: unknown) => boolean): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(await freePort());
    } catch (err) {
      if (attempt === 5 || !taken(err)) throw err;
    }
  }
}

/** A seeded random source, so that the random and weighted dial strategies are reproducible. */
export function seeded(seed: number): () => number {
  const rng = xoroshiro128plus(seed);
  return () => uniformFloat64(rng);
}

/**
 * A zone where it is about noon now (12:00–12:59; Etc/GMT-12 … Etc/GMT+11), for `?timezone=` on
 * GET /admin/agents in tests that count an agent's offers "today": in the default zone, Asia/Kolkata,
 * "today" starts at 18:30 UTC, so an offer a test moves minutes back, or one made just before,
 * falls in yesterday when the test runs just after that. Here midnight is 11 hours away either side.
 */
export function zoneAtNoon(at: Date = new Date()): string {
  const offset = 12 - at.getUTCHours(); // local hour = UTC hour + offset = 12; Etc/GMT's sign is POSIX's, reversed
  return offset === 0 ? 'Etc/GMT' : `Etc/GMT${offset > 0 ? '-' : '+'}${Math.abs(offset)}`;
}

/**
 * A TCP proxy to the test's Postgres, and the database's URL through it: `silence()` makes the
 * connections made so far lose every packet, as after a failover to another host or a crash of
 * Postgres' machine (no FIN, no RST); new connections go through. `close()` ends it (also at teardown).
 */
export async function silencingProxy(
  t: Test,
  dbUrl: string,
): Promise<{ url: string; silence: (opts?: { deaf?: boolean }) => void; close: () => Promise<void> }> {
  const target = Number(new URL(dbUrl).port);
  const live = new Set<net.Socket>();
  const silenced = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const server = net.connect(target, '127.0.0.1');
    for (const [a, b] of [
      [client, server],
      [server, client],
    ] as const) {
      live.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  /** `deaf`: the end of one side is not passed on either (a NAT or firewall that dropped the connection tells neither end). */
  const silence = (opts: { deaf?: boolean } = {}) => {
    for (const s of live) {
      s.unpipe();
      s.pause();
      if (opts.deaf) {
        s.removeAllListeners('close');
        s.removeAllListeners('error');
        s.on('error', () => {});
      }
      silenced.add(s);
    }
    live.clear();
  };
  const url = new URL(dbUrl);
  url.searchParams.delete('host');
  url.hostname = '127.0.0.1';
  url.port = String((proxy.address() as net.AddressInfo).port);
  let closed: Promise<void> | null = null;
  const close = () =>
    (closed ??= (async () => {
      for (const s of [...live, ...silenced]) s.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
    })());
  t.teardown(close);
  return { url: url.toString(), silence, close };
}

/** A pool through silencingProxy: see there. Torn down with the test. */
export async function silencingPool(t: Test, dbUrl: string, max = 2): Promise<{ pool: pg.Pool; silence: (opts?: { deaf?: boolean }) => void }> {
  const proxy = await silencingProxy(t, dbUrl);
  const pool = new pg.Pool({ connectionString: proxy.url, max });
  pool.on('error', () => {});
  t.teardown(async () => {
    // the silenced connections first: a pool waits for a client still in use
    await proxy.close();
    await pool.end();
  });
  return { pool, silence: proxy.silence };
}
