/**
 * The report of `npm run bench`: medians over rounds per scenario and contender, the targets met
 * or not, memory, and every figure as JSON.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AdminFigures } from '../scenarios/admin-imports.js';
import type { LoadFigures, Memory } from '../scenarios/callbacks.js';
import type { CdrTableFigures } from '../scenarios/cdr-table.js';
import { failures, type RunRecord } from '../scenarios/measure.js';
import { CFG, QUICK, log } from './config.js';
import { machine } from './environment.js';
import { fmt, table } from './format.js';
import { median } from './load.js';

export interface Figures extends AdminFigures, LoadFigures, CdrTableFigures {
  started: Date;
  /** 1-minute load average when the benchmark began */
  loadBefore: number;
  pgVersion: string;
}

interface Summary {
  scenario: string;
  contender: string;
  rounds: number;
  rps: number;
  rpsMin: number;
  rpsMax: number;
  p50: number;
  p99: number;
  p99FromDue: number;
  cpuServicePct: number;
  cpuPostgresPct: number;
  cpuGeneratorPct: number;
  serviceUsPerReq: number;
  postgresUsPerReq: number;
  cdrsPerBatch: number;
  /** mean time of one batch insert, ms, and the share of the run with a batch in flight */
  batchMs: number;
  writerBusyPct: number;
  batchP99UpToMs: number;
  loopP99Ms: number;
  loopMaxMs: number;
  /** shares of callbacks exoroute's handler answered within 5 and 10 ms by its own histogram, % */
  insideWithin5Pct: number;
  insideWithin10Pct: number;
  spooled: number;
  rssMb: number;
  failures: number;
}

function summarize(runs: RunRecord[]): Summary[] {
  const keys = [...new Set(runs.map((r) => `${r.scenario}\u0000${r.contender}`))];
  return keys.map((key) => {
    const [scenario, contender] = key.split('\u0000') as [string, string];
    const rs = runs.filter((r) => r.scenario === scenario && r.contender === contender);
    const m = (f: (r: RunRecord) => number) => median(rs.map(f));
    return {
      scenario,
      contender,
      rounds: rs.length,
      rps: m((r) => r.result.rps),
      rpsMin: Math.min(...rs.map((r) => r.result.rps)),
      rpsMax: Math.max(...rs.map((r) => r.result.rps)),
      p50: m((r) => r.result.latency.p50),
      p99: m((r) => r.result.latency.p99),
      p99FromDue: m((r) => r.result.p99FromDue ?? NaN),
      cpuServicePct: m((r) => (r.cpu.service / r.result.seconds) * 100),
      cpuPostgresPct: m((r) => (r.cpu.postgres / r.result.seconds) * 100),
      cpuGeneratorPct: m((r) => (r.cpu.generator / r.result.seconds) * 100),
      serviceUsPerReq: m((r) => (r.cpu.service / r.result.requests) * 1e6),
      postgresUsPerReq: m((r) => (r.cpu.postgres / r.result.requests) * 1e6),
      cdrsPerBatch: m((r) => (r.cdr ? r.cdr.records / r.cdr.batches : NaN)),
      batchMs: m((r) => (r.cdr ? (r.cdr.batchSeconds / r.cdr.batches) * 1000 : NaN)),
      writerBusyPct: m((r) => (r.cdr ? (r.cdr.batchSeconds / r.result.seconds) * 100 : NaN)),
      batchP99UpToMs: m((r) => r.cdr?.batchP99UpToMs ?? NaN),
      loopP99Ms: m((r) => r.loop?.p99Ms ?? NaN),
      loopMaxMs: m((r) => r.loop?.maxMs ?? NaN),
      insideWithin5Pct: m((r) => (r.inside ? r.inside.within5 * 100 : NaN)),
      insideWithin10Pct: m((r) => (r.inside ? r.inside.within10 * 100 : NaN)),
      spooled: rs.reduce((a, r) => a + (r.cdr?.spooled ?? 0), 0),
      rssMb: Math.max(...rs.map((r) => r.rssMb)),
      failures: rs.reduce((a, r) => a + failures(r), 0),
    };
  });
}

/** Per-round ratios of two contenders' throughput (each round's contenders ran back to back), their median and range. */
function ratio(runs: RunRecord[], s1: string, c1: string, s2: string, c2: string) {
  const rounds = [...new Set(runs.map((r) => r.round))];
  const rs = rounds
    .map((round) => {
      const a = runs.find((r) => r.scenario === s1 && r.contender === c1 && r.round === round);
      const b = runs.find((r) => r.scenario === s2 && r.contender === c2 && r.round === round);
      return a && b ? a.result.rps / b.result.rps : NaN;
    })
    .filter(Number.isFinite);
  return { median: median(rs), min: Math.min(...rs), max: Math.max(...rs) };
}

const range = (r: { min: number; max: number }, d = 1) => `${fmt(r.min, d)}–${fmt(r.max, d)}`;
const yes = (ok: boolean) => (ok ? 'met' : 'NOT met');

/** Prints the report and writes the JSON (BENCH_JSON, or a file in os.tmpdir()). */
export async function report(f: Figures): Promise<void> {
  const { runs, vip, queries, csv, tableSize } = f;
  const summaries = summarize(runs);
  const get = (s: string, c: string) => summaries.find((x) => x.scenario === s && x.contender === c);
  const exoP = get('passthru', 'exoroute');
  const acRate = get('passthru 1000/s (ac)', 'exoroute');
  const pacedRate = get('passthru 1000/s (paced)', 'exoroute');
  const vsNaive = ratio(runs, 'passthru', 'exoroute', 'passthru', 'naive');
  const vsBare = ratio(runs, 'passthru', 'exoroute', 'passthru', 'bare fastify');
  const dialVsNaive = ratio(runs, 'dial', 'exoroute dial-whom', 'dial', 'naive dial-whom');
  const connectVsNaive = ratio(runs, 'dial', 'exoroute connect', 'dial', 'naive dial-whom');
  const dialVsNaiveState = ratio(runs, 'dial', 'exoroute dial-whom', 'dial', 'naive with call state dial-whom');
  const connectVsNaiveState = ratio(runs, 'dial', 'exoroute connect', 'dial', 'naive with call state dial-whom');
  const vipInsert = median(vip.map((v) => v.insertMs));
  const vipUpdate = median(vip.map((v) => v.updateMs));

  const m = machine();
  const loadAfter = os.loadavg()[0]!;
  const out: string[] = [];
  out.push('', `# exoroute bench — ${f.started.toISOString().slice(0, 10)}${QUICK ? ' (quick smoke run: figures are not meaningful)' : ''}`);
  out.push(
    `machine: ${m.nproc} CPUs (${m.cpu}), ${m.memGb} GB; Node ${m.node}; Postgres ${f.pgVersion} (embedded, same machine, default settings but wal_init_zero off); exoroute ${m.revision}`,
  );
  out.push(
    `load average (1 min) before ${f.loadBefore.toFixed(2)}, after ${loadAfter.toFixed(2)}` +
      (Math.max(f.loadBefore, loadAfter) > 2.5 ? ' — the machine was busy with other work: figures are noisy' : ''),
  );
  out.push(
    `exoroute: built JavaScript (tsc), LOG_LEVEL=${CFG.logLevel} (stdout to a file), callback secret on (HTTP Basic)` +
      `${CFG.nodeOptions ? `, NODE_OPTIONS=${CFG.nodeOptions}` : ''}; ` +
      `${CFG.rounds} rounds × ${CFG.seconds} s per contender, ${CFG.connections} connections, medians over rounds`,
    '',
  );

  out.push(
    table(
      [
        'scenario',
        'contender',
        'req/s (median)',
        'range',
        'p50 ms',
        'p99 ms',
        'CPU % service/PG/generator',
        'CPU µs/req service, PG',
        'CDRs/batch, ms/batch (p99 ≤), writer busy',
        'event-loop delay p99, max ms',
        'failed',
      ],
      summaries.map((s) => [
        s.scenario,
        s.contender,
        fmt(s.rps),
        `${fmt(s.rpsMin)}–${fmt(s.rpsMax)}`,
        fmt(s.p50, 2),
        `${fmt(s.p99, 2)}${Number.isFinite(s.p99FromDue) ? ` (${fmt(s.p99FromDue, 2)} from due)` : ''}`,
        `${fmt(s.cpuServicePct)}/${fmt(s.cpuPostgresPct)}/${fmt(s.cpuGeneratorPct)}`,
        `${fmt(s.serviceUsPerReq)}, ${fmt(s.postgresUsPerReq)}`,
        Number.isFinite(s.cdrsPerBatch) ? `${fmt(s.cdrsPerBatch, 1)}, ${fmt(s.batchMs, 1)} (${fmt(s.batchP99UpToMs)}), ${fmt(s.writerBusyPct)} %` : '–',
        Number.isFinite(s.loopP99Ms) ? `${fmt(s.loopP99Ms, 1)}, ${fmt(s.loopMaxMs, 1)}` : '–',
        String(s.failures + s.spooled),
      ]),
    ),
  );

  const targets: string[][] = [
    ['passthru, 50 conn.: throughput vs naive', '≥ 8×', `${fmt(vsNaive.median, 1)}× (rounds ${range(vsNaive)})`, yes(vsNaive.median >= 8)],
    [
      'passthru, 50 conn.: throughput vs bare Fastify',
      '≥ 20 %',
      `${fmt(vsBare.median * 100)} % (rounds ${range({ min: vsBare.min * 100, max: vsBare.max * 100 }, 0)})`,
      yes(vsBare.median >= 0.2),
    ],
    [
      'passthru, 50 conn.: p99 latency',
      '≤ 10 ms',
      `${fmt(exoP?.p99 ?? NaN, 2)} ms (in exoroute's handler ${fmt(exoP?.insideWithin10Pct ?? NaN, 2)} % within 10 ms)`,
      yes((exoP?.p99 ?? Infinity) <= 10),
    ],
    ['passthru at 1,000/s (autocannon overallRate): p99', '≤ 5 ms', `${fmt(acRate?.p99 ?? NaN, 2)} ms`, yes((acRate?.p99 ?? Infinity) <= 5)],
    [
      'passthru at 1,000/s (evenly paced): p99',
      '≤ 5 ms',
      `${fmt(pacedRate?.p99 ?? NaN, 2)} ms (${fmt(pacedRate?.p99FromDue ?? NaN, 2)} from due time; in exoroute's handler ${fmt(pacedRate?.insideWithin5Pct ?? NaN, 2)} % within 5 ms)`,
      yes((pacedRate?.p99 ?? Infinity) <= 5),
    ],
    [
      'dial-whom, 50 conn.: throughput vs naive with call state',
      '≥ 5×',
      `${fmt(dialVsNaiveState.median, 1)}× (rounds ${range(dialVsNaiveState)})`,
      yes(dialVsNaiveState.median >= 5),
    ],
    [
      'connect, 50 conn.: throughput vs naive with call state',
      '≥ 5×',
      `${fmt(connectVsNaiveState.median, 1)}× (rounds ${range(connectVsNaiveState)})`,
      yes(connectVsNaiveState.median >= 5),
    ],
    ['VIP bulk upsert, 10,000 entries (new / all updated)', '< 1 s', `${fmt(vipInsert)} ms / ${fmt(vipUpdate)} ms`, yes(Math.max(vipInsert, vipUpdate) < 1000)],
    ...queries
      .filter((x) => x.target)
      .map((x) => [`${tableSize.n} CDRs: /admin/cdrs ${x.kind}`, '< 20 ms', `${fmt(x.medianMs, 1)} ms (max ${fmt(x.maxMs, 1)})`, yes(x.medianMs < 20)]),
    [
      `CSV export of ${csv.rows.toLocaleString('en')} CDRs: peak RSS`,
      '< 300 MB',
      `${fmt(csv.peakRssMb)} MB (${fmt(csv.seconds, 1)} s, ${fmt(csv.bytes / 2 ** 20)} MB)`,
      yes(csv.peakRssMb < 300),
    ],
    ['RSS under load (peak over all load runs)', '≤ 250 MB', `${fmt(f.underLoadPeakMb)} MB${f.rssReset ? '' : ' (sampled)'}`, yes(f.underLoadPeakMb <= 250)],
  ];
  out.push('', table(['target', 'wanted', 'measured (median)', ''], targets));
  // The dial target is against the naive baseline with call state: the plain one keeps no per-call
  // state, so it does not do what Exotel's re-fetch requires (bench/README.md, "Baselines").
  out.push(
    '',
    `For information (not a target): dial-whom ${fmt(dialVsNaive.median, 1)}× (rounds ${range(dialVsNaive)}) and ` +
      `connect ${fmt(connectVsNaive.median, 1)}× (rounds ${range(connectVsNaive)}) the throughput of the plain naive baseline, which keeps no per-call state.`,
  );
  out.push(
    '',
    table(
      ['/admin/cdrs query', 'median ms', 'max ms', 'items'],
      queries.map((x) => [x.kind, fmt(x.medianMs, 1), fmt(x.maxMs, 1), String(x.items)]),
    ),
  );
  const mem = (m: Memory) =>
    `RSS ${fmt(m.rssMb)} (V8 heap ${fmt(m.heapTotalMb)}, of it used ${fmt(m.heapUsedMb)}; external ${fmt(m.externalMb)}; the rest — code, Prisma's WASM query compiler, allocator — ${fmt(m.rssMb - m.heapTotalMb - m.externalMb)})`;
  out.push(
    '',
    `Memory of exoroute, MB: idle with the rules loaded ${mem(f.idle)}; at load start ${fmt(f.rssAtLoadStart)}; peak under load ${fmt(f.underLoadPeakMb)}; ` +
      `after the load ${mem(f.afterLoad)}; CSV export ${fmt(csv.rssBeforeMb)} → peak ${fmt(csv.peakRssMb)}. ` +
      `The instance that served the admin set-up and bulk imports peaked at ${fmt(f.adminPeakMb)}. Baselines' peaks: bare ${fmt(f.baselineRss.bare)}, naive ${fmt(f.baselineRss.naive)}, naive with call state ${fmt(f.baselineRss.naiveState)}.`,
  );
  out.push(`VIP import of gold (10,000, first import on an empty table): ${fmt(f.goldImportMs)} ms. CDR seeding: ${fmt(f.seedMs / 1000, 1)} s.`);
  console.log(out.join('\n'));

  const { idle, rssAtLoadStart, underLoadPeakMb, afterLoad, adminPeakMb, baselineRss } = f;
  const json = {
    date: f.started.toISOString(),
    quick: QUICK,
    config: CFG,
    machine: m,
    postgres: f.pgVersion,
    runs,
    summaries,
    vip,
    goldImportMs: f.goldImportMs,
    queries,
    csv,
    rss: { idle, rssAtLoadStart, underLoadPeakMb, afterLoad, adminPeakMb, baselineRss },
    cdrTable: { ...tableSize, seedMs: f.seedMs },
  };
  const file = process.env.BENCH_JSON ?? path.join(os.tmpdir(), `exoroute-bench-${f.started.toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(
    file,
    JSON.stringify(json, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2),
  );
  log(`results as JSON: ${file}`);
}
