/**
 * `npm run bench:instructions`: the instructions Postgres executes per Exotel callback, counted by
 * callgrind (valgrind), for one build of exoroute or several side by side. `npm run bench`'s
 * throughput follows the host (bare Fastify, which no change of exoroute touches, ran at 15,645 to
 * 28,696 req/s in one session's runs); an instruction count does not: two runs of one build agree
 * within about 1 %. It answers "does this change make the database's share of a callback dearer?"
 * without that noise. It says nothing of exoroute's own process (JIT-compiled JavaScript is not
 * counted this way); `npm run bench` measures that as µs of CPU per request.
 *
 *   npm run bench:instructions                          # this checkout
 *   npm run bench:instructions -- ../before .           # builds in turns, the first the reference
 *
 * A build is a checkout of exoroute with `npm ci` and `npm run generate` done. Every build runs on
 * the same Postgres binaries (this checkout's). Per build, kind and round: a fresh Postgres under
 * callgrind, the build's service started on it (`node --import=tsx src/server.ts`), the bench's
 * rules set up through its admin API (bench/lib/admin.ts), 100 callbacks to warm up, then callbacks
 * one at a time: no two in flight, so none shares a batch; what one callback costs alone. With
 * BENCH_INFLIGHT=n, n workers share the count and keep n callbacks in flight (warm-up included; the
 * same totals), so dial requests share batches as under `npm run bench`'s load (~14 a statement at
 * 50 connections): BENCH_INFLIGHT=14 is the batched cost per callback. Callgrind
 * writes a process's count when it ends, so every figure is the difference between two such runs,
 * of CALLS + 200 and of 200 callbacks, divided by CALLS: what the start, the migrations and the
 * set-up cost cancels out.
 *
 * Environment: BENCH_CALLS (2000), BENCH_ROUNDS (2), BENCH_KINDS (dial-whom,connect; also passthru),
 * BENCH_INFLIGHT (1).
 * Needs valgrind (Debian: apt-get install valgrind). Each run takes one to three minutes.
 */
import { chmod, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { freePort, startEmbeddedPostgres } from '../src/store/embedded-postgres.js';
import { adminClient, seedRules } from './lib/admin.js';
import { ADMIN_KEY, BASIC, CALLBACK_SECRET, REPO, log, sleep } from './lib/config.js';
import { waitForRules } from './lib/environment.js';
import { startService } from './lib/proc.js';
import { callbackPaths, type CallbackKind } from './lib/traffic.js';

const positive = (name: string, fallback: number) => {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};
const CALLS = positive('BENCH_CALLS', 2000);
const ROUNDS = positive('BENCH_ROUNDS', 2);
/** Callbacks kept in flight: 1, none shares a dial batch; ~14, batches as under `npm run bench`'s load. */
const INFLIGHT = positive('BENCH_INFLIGHT', 1);
const KINDS = (process.env.BENCH_KINDS ?? 'dial-whom,connect').split(',').map((k) => k.trim()) as CallbackKind[];
const WARM_UP = 100;
const BASE = 200;
/** The dial flow's onError answer (bench/lib/admin.ts): a callback answered with it went wrong. */
const ON_ERROR_NUMBER = '8047110000';

/** Postgres' instructions, summed over all its processes, from start to stop, with `calls` callbacks of `kind`. */
async function countRun(build: string, kind: CallbackKind, calls: number): Promise<number> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'exoroute-instructions-'));
  await chmod(work, 0o755); // as root, Postgres runs as the postgres user
  const counts = path.join(work, 'callgrind');
  await mkdir(counts);
  await chmod(counts, 0o777);
  const quiet = pino({ level: 'warn' });
  const db = await startEmbeddedPostgres(path.join(work, 'pg'), quiet, {
    persistent: false,
    wrapper: ['valgrind', '--tool=callgrind', `--callgrind-out-file=${counts}/postgres.%p`],
  });
  try {
    // autovacuum's work depends on when its timer fires, not on the callbacks
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query('ALTER SYSTEM SET autovacuum = off');
    await admin.query('SELECT pg_reload_conf()');
    await admin.end();
    const port = await freePort();
    const svc = await startService({
      name: `exoroute (${build})`,
      args: ['--import=tsx', path.join(build, 'src/server.ts')],
      cwd: build,
      env: {
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: String(port),
        DATABASE_URL: db.url,
        DATA_DIR: path.join(work, 'data'),
        ADMIN_API_KEY: ADMIN_KEY,
        EXOTEL_CALLBACK_SECRET: CALLBACK_SECRET,
        // Under callgrind a statement may outlast the default 1.5 s, and a callback answered from
        // the flow's onError is not the callback to count: the longest budget there is.
        DECISION_BUDGET_MS: '30000',
        LOG_LEVEL: 'warn',
      },
      url: `http://127.0.0.1:${port}`,
      readyPath: '/readyz',
      readyTimeoutMs: 600_000,
    });
    try {
      await seedRules(adminClient(svc.url, ADMIN_KEY), 1000);
      await waitForRules(svc);
      const next = callbackPaths(kind, kind === 'passthru' ? 'inbound' : 'agents', 'instructions0', 7);
      // INFLIGHT workers share one count, so the totals are the same whatever INFLIGHT is
      let sent = 0;
      const worker = async () => {
        while (sent < WARM_UP + calls) {
          sent++;
          const res = await fetch(svc.url + next(), { headers: BASIC, redirect: 'manual', signal: AbortSignal.timeout(60_000) });
          const body = await res.text();
          if (res.status !== 200 && res.status !== 302) throw new Error(`${kind}: HTTP ${res.status} ${body.slice(0, 300)}`);
          if (kind !== 'passthru' && body.includes(ON_ERROR_NUMBER)) throw new Error(`${kind}: answered from the flow's onError: ${body.slice(0, 300)}`);
        }
      };
      await Promise.all(Array.from({ length: INFLIGHT }, worker));
      await sleep(3000); // the last CDRs' batch
    } finally {
      await svc.stop();
    }
  } finally {
    await db.stop();
  }
  let total = 0;
  for (const file of await readdir(counts)) {
    total += Number(/^summary:\s+(\d+)$/m.exec(await readFile(path.join(counts, file), 'utf8'))?.[1] ?? 0);
  }
  await rm(work, { recursive: true, force: true });
  return total;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<number> {
  if (spawnSync('valgrind', ['--version']).status !== 0) {
    console.error('valgrind is not installed (Debian: apt-get install valgrind)');
    return 1;
  }
  const builds = (process.argv.length > 2 ? process.argv.slice(2) : [REPO]).map((b) => path.resolve(b));
  for (const b of builds) {
    if (!existsSync(path.join(b, 'src/server.ts')) || !existsSync(path.join(b, 'node_modules/tsx'))) {
      console.error(`${b}: not a checkout of exoroute with npm ci done (src/server.ts, node_modules/tsx)`);
      return 1;
    }
  }
  const perCall = new Map<string, number[]>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const kind of KINDS) {
      for (const build of builds) {
        const small = await countRun(build, kind, BASE);
        const big = await countRun(build, kind, BASE + CALLS);
        const figure = (big - small) / CALLS;
        log(
          `round ${round}, ${kind}, ${build}, ${INFLIGHT} in flight: ${Math.round(figure).toLocaleString('en')} instructions per callback (${big.toLocaleString('en')} − ${small.toLocaleString('en')})`,
        );
        perCall.set(`${kind} ${build}`, [...(perCall.get(`${kind} ${build}`) ?? []), figure]);
      }
    }
  }
  const how = INFLIGHT === 1 ? 'one at a time' : `${INFLIGHT} in flight`;
  console.log(`\nPostgres' instructions per callback, ${how} (median of ${ROUNDS} rounds of ${CALLS}):\n`);
  console.log('| kind | build | instructions | rounds | vs the first build |\n|---|---|---|---|---|');
  for (const kind of KINDS) {
    const reference = median(perCall.get(`${kind} ${builds[0]}`)!);
    for (const build of builds) {
      const rounds = perCall.get(`${kind} ${build}`)!;
      const m = median(rounds);
      const each = rounds.map((r) => Math.round(r).toLocaleString('en')).join(', ');
      console.log(`| ${kind} | ${build} | ${Math.round(m).toLocaleString('en')} | ${each} | ${((m / reference) * 100).toFixed(1)} % |`);
    }
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
