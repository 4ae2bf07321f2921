/**
 * `npm run bench -- --profile`: exoroute under --cpu-prof for each scenario (the load window cut out
 * of the profile by its timestamps), Postgres transactions per callback, and passthru throughput at
 * LOG_LEVEL info vs warn.
 */
import { randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { adminClient, seedRules } from '../lib/admin.js';
import { ADMIN_KEY, BASIC, CFG, QUICK, log, sleep } from '../lib/config.js';
import { machine, startExoroute, waitForRules, type Env } from '../lib/environment.js';
import { fmt } from '../lib/format.js';
import { closedLoop, median, type LoadResult } from '../lib/load.js';
import { loadFailed } from './measure.js';
import { cpuSeconds, type Service } from '../lib/proc.js';
import { formatProfile, summarizeProfile, type ProfileSummary } from '../lib/profile.js';
import { sampleBackends } from '../lib/scrape.js';
import { callbackPaths } from '../lib/traffic.js';

export async function profiles(env: Env): Promise<void> {
  const seedSvc = await startExoroute(env, { name: 'exoroute-seed' });
  await seedRules(adminClient(seedSvc.url, ADMIN_KEY));
  await seedSvc.stop();
  const seconds = Math.max(CFG.seconds, QUICK ? 2 : 8);
  const results: Array<{
    scenario: string;
    summary: ProfileSummary;
    rps: number;
    xactPerReq: number;
    rowsPerReq: number;
    backends: Array<{ what: string; backends: number }>;
  }> = [];
  for (const [scenario, kind, flow] of [
    ['passthru', 'passthru', 'inbound'],
    ['dial-whom', 'dial-whom', 'agents'],
  ] as const) {
    const dir = path.join(env.work, `profile-${scenario}`);
    const svc = await startExoroute(env, { name: `exoroute-prof-${scenario}`, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
    await waitForRules(svc);
    await closedLoop({
      url: svc.url,
      connections: CFG.connections,
      seconds: CFG.warmupSeconds,
      next: callbackPaths(kind, flow, randomBytes(11).toString('hex')),
      headers: BASIC,
    });
    await sleep(11_000); // Postgres backends publish their statistics when idle, at the latest after 10 s
    const stats = async () =>
      (
        await env.pool.query<{ x: string; w: string }>(
          `SELECT (xact_commit + xact_rollback)::text AS x, (tup_inserted + tup_updated + tup_deleted)::text AS w FROM pg_stat_database WHERE datname = current_database()`,
        )
      ).rows[0]!;
    const s0 = await stats();
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    const sampler = sampleBackends(env.pool);
    const r = await closedLoop({
      url: svc.url,
      connections: CFG.connections,
      seconds,
      next: callbackPaths(kind, flow, randomBytes(11).toString('hex')),
      headers: BASIC,
    });
    const backends = await sampler.stop();
    mustBeSound(`exoroute ${scenario}`, r);
    const toUs = Number(process.hrtime.bigint() / 1000n);
    await sleep(11_000);
    const s1 = await stats();
    await svc.stop();
    const file = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`no CPU profile in ${dir}`);
    const summary = summarizeProfile(path.join(dir, file), fromUs, toUs);
    const xactPerReq = (Number(s1.x) - Number(s0.x)) / r.requests;
    const rowsPerReq = (Number(s1.w) - Number(s0.w)) / r.requests;
    results.push({ scenario, summary, rps: r.rps, xactPerReq, rowsPerReq, backends });
    console.log(
      `\n${formatProfile(`exoroute ${scenario}, ${fmt(r.rps)} req/s, ${fmt(xactPerReq, 2)} Postgres transactions and ${fmt(rowsPerReq, 2)} rows written per callback`, summary)}`,
    );
    console.log(
      `  Postgres backends busy with exoroute's queries (average number, sampled every 20 ms): ` +
        backends.map((b) => `${b.what} ${fmt(b.backends, 2)}`).join(', '),
    );
  }

  log(`passthru at LOG_LEVEL info vs warn (${CFG.rounds} rounds of ${seconds} s each)`);
  const info = await startExoroute(env, { name: 'exoroute-info', logLevel: 'info' });
  const warn = await startExoroute(env, { name: 'exoroute-warn', logLevel: 'warn' });
  await waitForRules(info);
  await waitForRules(warn);
  const byLevel: Record<string, number[]> = { info: [], warn: [] };
  const cpuByLevel: Record<string, number[]> = { info: [], warn: [] };
  for (const svc of [info, warn]) {
    await closedLoop({
      url: svc.url,
      connections: CFG.connections,
      seconds: CFG.warmupSeconds,
      next: callbackPaths('passthru', 'inbound', randomBytes(11).toString('hex')),
      headers: BASIC,
    });
  }
  for (let round = 1; round <= CFG.rounds; round++) {
    for (const [name, svc] of (round % 2
      ? [
          ['info', info],
          ['warn', warn],
        ]
      : [
          ['warn', warn],
          ['info', info],
        ]) as Array<[string, Service]>) {
      const cpu0 = cpuSeconds(svc.pid);
      const r = await closedLoop({
        url: svc.url,
        connections: CFG.connections,
        seconds,
        next: callbackPaths('passthru', 'inbound', randomBytes(11).toString('hex')),
        headers: BASIC,
      });
      mustBeSound(`LOG_LEVEL=${name} round ${round}`, r);
      const usPerReq = ((cpuSeconds(svc.pid) - cpu0) / r.requests) * 1e6;
      byLevel[name]!.push(r.rps);
      cpuByLevel[name]!.push(usPerReq);
      log(`  LOG_LEVEL=${name} round ${round}: ${fmt(r.rps)} req/s, p99 ${fmt(r.latency.p99, 2)} ms, ${fmt(usPerReq)} µs CPU per callback`);
      await sleep(1500);
    }
  }
  console.log(
    `\npassthru, medians: LOG_LEVEL=info ${fmt(median(byLevel.info!))} req/s and ${fmt(median(cpuByLevel.info!))} µs CPU per callback, ` +
      `warn ${fmt(median(byLevel.warn!))} req/s and ${fmt(median(cpuByLevel.warn!))} µs`,
  );
  const file = process.env.BENCH_JSON ?? path.join(os.tmpdir(), `exoroute-bench-profile-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify({ machine: machine(), results, byLevel, cpuByLevel }, null, 2));
  log(`profile summaries as JSON: ${file}${CFG.keep ? '' : ' (set BENCH_KEEP=1 to keep the .cpuprofile files)'}`);
}

/** A profiled run that got wrong answers or none profiled something else: the run stops (bench/README.md, "Exit status"). */
function mustBeSound(what: string, r: LoadResult): void {
  const problems = loadFailed(r);
  if (problems.length > 0) throw new Error(`${what}: ${problems.join(', ')}`);
}
