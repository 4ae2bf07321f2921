/**
 * Everything a bench run starts on this machine: the build of exoroute, an embedded Postgres,
 * exoroute and the baselines as processes of their own, and what the report says of the machine.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { freePort, startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/store/embedded-postgres.js';
import { ADMIN_KEY, BASIC, CALLBACK_SECRET, CFG, REPO, log, sleep } from './config.js';
import { findPostmaster, startService, type Service } from './proc.js';

export interface Env {
  work: string;
  dist: string;
  pg: EmbeddedDatabase;
  postmaster: number;
  pool: pg.Pool;
  started: Service[];
}

const quiet = pino({ level: 'warn' });

/** Compiles src/ and bench/baselines/ to <work>/dist, next to links to prisma/ and node_modules/. */
function build(work: string): string {
  const dist = path.join(work, 'dist');
  const tsc = path.join(REPO, 'node_modules/.bin/tsc');
  const res = spawnSync(tsc, ['-p', path.join(REPO, 'bench/tsconfig.json'), '--outDir', dist], { encoding: 'utf8', timeout: 180_000 });
  // Type errors (someone's work in progress) still emit JavaScript; only a missing server is fatal.
  if (!existsSync(path.join(dist, 'src/server.js'))) throw new Error(`build failed:\n${res.stdout}${res.stderr}`);
  if (res.status !== 0) log(`tsc reported type errors (JavaScript emitted anyway):\n${res.stdout.split('\n').slice(0, 5).join('\n')}`);
  return dist;
}

/**
 * The temporary directory with the build, the embedded Postgres and its data. When a step fails
 * (the build, Postgres's start), what was made is removed before the error goes on: the caller has
 * no Env to tear down yet.
 */
export async function setUp(): Promise<Env> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'exoroute-bench-'));
  let db: EmbeddedDatabase | null = null;
  try {
    await chmod(work, 0o755); // as root, embedded-postgres runs initdb as a separate postgres user
    log(`working directory ${work}`);
    const dist = build(work);
    // dist/src/store/migrate.js finds the migrations at ../../../prisma; packages resolve upwards.
    await symlink(path.join(REPO, 'prisma'), path.join(work, 'prisma'));
    await symlink(path.join(REPO, 'node_modules'), path.join(work, 'node_modules'));
    db = await startEmbeddedPostgres(path.join(work, 'pg'), quiet, { persistent: false });
    const postmaster = findPostmaster();
    if (!postmaster) throw new Error('cannot find the embedded Postgres process');
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    // pool.end() resolves before its clients' sockets have closed, and Postgres, stopped right after,
    // may end such a connection itself: pg reports that as an error of the idle client, which without
    // a listener ended a run at its very end (exit 1 after the report).
    pool.on('error', (err) => log(`  bench's Postgres connection: ${err.message}`));
    return { work, dist, pg: db, postmaster, pool, started: [] };
  } catch (err) {
    await db?.stop().catch(() => undefined);
    if (!CFG.keep) await rm(work, { recursive: true, force: true, maxRetries: 3 });
    throw err;
  }
}

export async function startExoroute(env: Env, opts: { name?: string; logLevel?: string; nodeArgs?: string[] } = {}): Promise<Service> {
  const port = await freePort();
  const name = opts.name ?? 'exoroute';
  const dataDir = path.join(env.work, `data-${name}`);
  await mkdir(dataDir, { recursive: true });
  const svc = await startService({
    name,
    args: [...(opts.nodeArgs ?? []), path.join(env.dist, 'src/server.js')],
    env: {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL: env.pg.url,
      DATA_DIR: dataDir,
      ADMIN_API_KEY: ADMIN_KEY,
      EXOTEL_CALLBACK_SECRET: CALLBACK_SECRET,
      LOG_LEVEL: opts.logLevel ?? CFG.logLevel,
      NODE_OPTIONS: CFG.nodeOptions,
    },
    url: `http://127.0.0.1:${port}`,
    readyPath: '/readyz',
    stdoutFile: path.join(env.work, `${name}.log`),
  });
  env.started.push(svc);
  return svc;
}

/** A baseline of bench/baselines; `naive-state` is the naive one with `DIAL_STATE=1`. */
export async function startBaseline(env: Env, name: 'bare' | 'naive' | 'naive-state'): Promise<Service> {
  const port = await freePort();
  const script = name === 'bare' ? 'bare' : 'naive';
  const svc = await startService({
    name,
    args: [path.join(env.dist, `bench/baselines/${script}.js`)],
    env: { PORT: String(port), DATABASE_URL: env.pg.url, VIP_LIST: 'gold', ...(name === 'naive-state' ? { DIAL_STATE: '1' } : {}) },
    url: `http://127.0.0.1:${port}`,
    readyPath: name === 'bare' ? '/' : '/exotel/passthru/ready?CallSid=bench-ready&CallFrom=09800000000',
  });
  env.started.push(svc);
  return svc;
}

export async function tearDown(env: Env | null): Promise<void> {
  if (!env) return;
  for (const svc of env.started.reverse()) await svc.stop().catch(() => undefined);
  await env.pool.end().catch(() => undefined);
  await env.pg.stop().catch(() => undefined);
  if (!CFG.keep) await rm(env.work, { recursive: true, force: true });
  else log(`kept ${env.work}`);
}

/**
 * Waits until exoroute's snapshot has the flows (callbacks stop answering 404/503), for 10 s at
 * most: a request is given up at that deadline too, so a service that takes the connection and
 * never answers fails the run instead of hanging it.
 */
export async function waitForRules(svc: Service, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; ; i++) {
    const statuses = await Promise.all(
      ['passthru/inbound', 'dial-whom/agents'].map(async (p) => {
        const signal = AbortSignal.timeout(Math.max(100, deadline - Date.now()));
        try {
          const res = await fetch(`${svc.url}/exotel/${p}?CallSid=bench-ready-${i}&CallFrom=09800000000`, { headers: BASIC, redirect: 'manual', signal });
          await res.arrayBuffer();
          return res.status;
        } catch (err) {
          if (signal.aborted) return 'no answer';
          throw err;
        }
      }),
    );
    if (statuses.every((s) => s === 200 || s === 302)) return;
    if (Date.now() > deadline) throw new Error(`rules not loaded after ${ms / 1000} s (answers ${statuses.join(', ')})`);
    await sleep(100);
  }
}

/** The commit the service was built from, and whether src/ or prisma/ had uncommitted changes. */
function revision(): string {
  const git = (...a: string[]) => spawnSync('git', a, { cwd: REPO, encoding: 'utf8' }).stdout?.trim() ?? '';
  const head = git('rev-parse', '--short', 'HEAD') || 'unknown';
  return git('status', '--porcelain', '--', 'src', 'prisma') ? `${head} + uncommitted changes in src/ or prisma/` : head;
}

export function machine() {
  const cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? '?';
  return {
    nproc: os.availableParallelism(),
    cpu,
    memGb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    loadAvg: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
    revision: revision(),
  };
}
