/**
 * `npm run bench`: exoroute's load benchmarks (issue 6), everything on this machine:
 * an embedded Postgres, exoroute built and run as its own process, the baselines (bare Fastify,
 * the naive Prisma service, and for the dial runs the naive one with call state) as processes of
 * their own, autocannon driving them in turns, round after round; then a million CDRs for the
 * admin queries and the CSV export. Prints medians and the targets they meet. See bench/README.md.
 *
 *   npm run bench                 # the full run, a few minutes
 *   npm run bench -- --quick      # a smoke test of every scenario, well under a minute (also BENCH_QUICK=1)
 *   npm run bench -- --profile    # CPU profiles of exoroute under load, and logging at info vs warn
 *
 * Environment: BENCH_ROUNDS, BENCH_SECONDS (per run), BENCH_CDR_ROWS, BENCH_LOG_LEVEL (exoroute's
 * LOG_LEVEL, default info), BENCH_NODE_OPTIONS (NODE_OPTIONS for exoroute only, e.g.
 * --max-old-space-size=160), BENCH_JSON (where to write the results as JSON), BENCH_KEEP=1 (keep the
 * temporary directory: build, logs, profiles).
 *
 * lib/ holds the machinery (settings, environment, load generators, scraping, report), scenarios/
 * what is measured.
 */
import os from 'node:os';
import { adminClient } from './lib/admin.js';
import { ADMIN_KEY, PROFILE, QUICK, log } from './lib/config.js';
import { machine, setUp, startExoroute, tearDown, waitForRules, type Env } from './lib/environment.js';
import { report } from './lib/report.js';
import { adminImports } from './scenarios/admin-imports.js';
import { callbackScenarios } from './scenarios/callbacks.js';
import { cdrTableScenario } from './scenarios/cdr-table.js';
import { failed } from './scenarios/measure.js';
import { profiles } from './scenarios/profiles.js';

async function benchmark(env: Env): Promise<void> {
  const started = new Date();
  const loadBefore = os.loadavg()[0]!;
  const pgVersion = (await env.pool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
  const admin = await adminImports(env);
  const exo = await startExoroute(env);
  await waitForRules(exo);
  const load = await callbackScenarios(env, exo);
  const cdrTable = await cdrTableScenario(env, exo, adminClient(exo.url, ADMIN_KEY));
  await exo.stop();
  await report({ started, loadBefore, pgVersion, ...admin, ...load, ...cdrTable });

  // Timing never fails a run: the machine decides it. A wrong answer does (a status other than
  // 2xx/3xx, no answer, an answer from the flow's onError): something is broken, and the smoke run
  // in CI (--quick) is there to catch that.
  const wrong = load.runs.filter((r) => failed(r).length > 0);
  if (wrong.length > 0) {
    throw new Error(`load runs that failed: ${wrong.map((r) => `${r.scenario} / ${r.contender} round ${r.round}: ${failed(r).join(', ')}`).join('; ')}`);
  }
}

async function main(): Promise<number> {
  let env: Env | null = null;
  let stopping = false;
  const interrupt = () => {
    if (stopping) return;
    stopping = true;
    log('interrupted: stopping processes');
    // While setting up there is nothing to tear down yet: setUp() finishes (or fails and removes
    // what it made), then main() tears down and ends.
    if (env) void tearDown(env).finally(() => process.exit(130));
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  const m = machine();
  log(`exoroute bench${QUICK ? ' (quick)' : ''}${PROFILE ? ' (profiles)' : ''}: ${m.nproc} CPUs, ${m.cpu}, Node ${m.node}, load average ${m.loadAvg}`);
  try {
    env = await setUp();
    if (stopping) return 130;
    if (PROFILE) await profiles(env);
    else await benchmark(env);
    return 0;
  } catch (err) {
    if (stopping) return 130;
    console.error(err);
    for (const svc of env?.started ?? []) {
      const tail = svc.tail();
      if (tail) console.error(`--- ${svc.name} (last output) ---\n${tail.slice(-1500)}`);
    }
    return 1;
  } finally {
    await tearDown(env);
  }
}

main().then((code) => process.exit(code));
