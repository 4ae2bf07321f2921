/**
 * The CDR table at size: a million CDRs seeded (bench/seed-cdrs.ts), then `/admin/cdrs` queries of
 * each kind and the CSV export of the whole table while exoroute's RSS is watched.
 */
import http from 'node:http';
import type { Api } from '../lib/admin.js';
import { ADMIN_KEY, CFG, log } from '../lib/config.js';
import type { Env } from '../lib/environment.js';
import { median } from '../lib/load.js';
import { rss, watchRss, type Service } from '../lib/proc.js';
import { random } from '../lib/traffic.js';
import { AGENTS, CALLBACKS_PER_CALL, EXOPHONES, SEED_DAYS, seedCaller, seedCallSid, seedCdrs } from '../seed-cdrs.js';

export interface QueryFigure {
  kind: string;
  target: boolean;
  medianMs: number;
  maxMs: number;
  items: number;
}

export interface CsvFigure {
  rows: number;
  bytes: number;
  seconds: number;
  rssBeforeMb: number;
  peakRssMb: number;
  exactPeak: boolean;
}

export interface CdrTableFigures {
  seedMs: number;
  tableSize: { n: string; size: string };
  queries: QueryFigure[];
  csv: CsvFigure;
}

/** Seeds `cdrs` afresh, then queries it through `api` and exports it from `svc`. */
export async function cdrTableScenario(env: Env, svc: Service, api: Api): Promise<CdrTableFigures> {
  log(`CDR table: ${CFG.cdrRows.toLocaleString('en')} rows (INSERT … SELECT generate_series, indexes rebuilt after)`);
  await env.pool.query('TRUNCATE cdrs');
  const end = new Date();
  const seedMs = await seedCdrs(env.pool, { rows: CFG.cdrRows, end, rebuildIndexes: true, log });
  await env.pool.query('VACUUM ANALYZE cdrs');
  const tableSize = (
    await env.pool.query<{ n: string; size: string }>(`SELECT count(*)::text AS n, pg_size_pretty(pg_total_relation_size('cdrs')) AS size FROM cdrs`)
  ).rows[0]!;
  log(`  ${Number(tableSize.n).toLocaleString('en')} rows, ${tableSize.size} with indexes, in ${(seedMs / 1000).toFixed(1)} s`);
  log('/admin/cdrs (limit 100), different values each request');
  const queries = await cdrQueries(api, CFG.cdrRows, end);
  log('CSV export of the whole table');
  const csv = await csvExport(svc);
  log(
    `  ${csv.rows.toLocaleString('en')} rows, ${(csv.bytes / 2 ** 20).toFixed(0)} MB in ${csv.seconds.toFixed(1)} s; ` +
      `exoroute RSS ${csv.rssBeforeMb.toFixed(0)} MB before, peak ${csv.peakRssMb.toFixed(0)} MB${csv.exactPeak ? '' : ' (sampled)'}`,
  );
  return { seedMs, tableSize, queries, csv };
}

async function cdrQueries(api: Api, rows: number, end: Date): Promise<QueryFigure[]> {
  const calls = Math.floor(rows / CALLBACKS_PER_CALL);
  const rnd = random(42);
  const pick = (n: number) => Math.floor(rnd() * n);
  const span = SEED_DAYS * 86_400_000;
  const window = (ms: number) => {
    const from = end.getTime() - span + pick(span - ms);
    return `from=${encodeURIComponent(new Date(from).toISOString())}&to=${encodeURIComponent(new Date(from + ms).toISOString())}`;
  };
  const kinds: Array<{ kind: string; target: boolean; query: () => string }> = [
    { kind: 'by callSid', target: true, query: () => `callSid=${seedCallSid(pick(calls))}` },
    { kind: 'by number (a caller)', target: true, query: () => `number=0${seedCaller(pick(calls)).slice(3)}` },
    { kind: 'by time range (1 hour)', target: true, query: () => window(3_600_000) },
    { kind: 'by time range (1 day)', target: true, query: () => window(86_400_000) },
    { kind: 'by number (an ExoPhone: ¼ of rows)', target: false, query: () => `number=${encodeURIComponent(EXOPHONES[pick(4)]!)}` },
    { kind: 'by number (an agent)', target: false, query: () => `number=${encodeURIComponent(AGENTS[pick(8)]!)}` },
    { kind: 'by flow and 1 day', target: false, query: () => `flow=inbound&${window(86_400_000)}` },
    { kind: 'newest page, no filter', target: false, query: () => '' },
  ];
  // Prisma's query compiler is loaded at an instance's first admin request and its WebAssembly
  // warms up over the next few: measured kinds get 10 requests of warm-up between them first.
  for (let i = 0; i < 10; i++) await api('GET', `/admin/cdrs?limit=100&${kinds[i % kinds.length]!.query()}`);
  const out: QueryFigure[] = [];
  for (const k of kinds) {
    const times: number[] = [];
    let items = 0;
    for (let i = 0; i < CFG.queryReps + 2; i++) {
      const a = await api('GET', `/admin/cdrs?limit=100&${k.query()}`);
      if (a.status !== 200) throw new Error(`/admin/cdrs ${k.kind}: HTTP ${a.status} ${JSON.stringify(a.body).slice(0, 300)}`);
      if (i >= 2) times.push(a.ms); // two warm-ups
      items = (a.body as { items: unknown[] }).items.length;
    }
    times.sort((a, b) => a - b);
    out.push({ kind: k.kind, target: k.target, medianMs: median(times), maxMs: times[times.length - 1]!, items });
    log(`  ${k.kind.padEnd(36)} median ${median(times).toFixed(1)} ms, max ${times[times.length - 1]!.toFixed(1)} ms (${items} items a page)`);
  }
  return out;
}

/** Downloads the whole table as CSV while watching exoroute's RSS. */
function csvExport(svc: Service): Promise<CsvFigure> {
  const before = rss(svc.pid).rssMb;
  const watch = watchRss(svc.pid, 50);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get(`${svc.url}/admin/cdrs.csv`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } }, (res) => {
      if (res.statusCode !== 200) {
        watch.stop();
        res.resume();
        return reject(new Error(`/admin/cdrs.csv: HTTP ${res.statusCode}`));
      }
      let bytes = 0;
      let lines = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
      });
      res.once('end', () => {
        clearTimeout(limit);
        const seconds = (performance.now() - t0) / 1000;
        const peak = watch.stop();
        resolve({ rows: lines - 1, bytes, seconds, rssBeforeMb: before, peakRssMb: peak.peakMb, exactPeak: peak.exactPeak });
      });
      res.once('error', reject);
    });
    req.once('error', reject);
    const limit = setTimeout(() => req.destroy(new Error('CSV export took longer than 10 minutes')), 600_000);
  });
}
