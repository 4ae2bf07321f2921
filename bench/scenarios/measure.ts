/**
 * One measured load run of one contender: CPU, RSS, exoroute's own counters and Postgres's
 * background work around it, printed as one line; and what keeps one run from paying for the one
 * before it (the vacuum after each run, the settling before each scenario).
 */
import { randomBytes } from 'node:crypto';
import { QUICK, log, sleep } from '../lib/config.js';
import type { Env } from '../lib/environment.js';
import { fmt, pct } from '../lib/format.js';
import type { LoadResult } from '../lib/load.js';
import { cpuSeconds, postgresCpuSeconds, rss, type Service } from '../lib/proc.js';
import { autovacuumWork, bucketP99, checkpoints, counters } from '../lib/scrape.js';
import { callbackPaths, type CallbackKind } from '../lib/traffic.js';

export interface Contender {
  name: string;
  svc: Service;
  kind: CallbackKind;
  flow: string;
}

export interface RunRecord {
  scenario: string;
  contender: string;
  round: number;
  result: LoadResult;
  /** CPU seconds during the run */
  cpu: { service: number; postgres: number; generator: number };
  /** highest RSS sampled during the run, MB */
  rssMb: number;
  /** exoroute only: CDR batches and records committed, CDRs spooled, seconds spent in batch inserts */
  cdr?: { batches: number; records: number; spooled: number; batchSeconds: number; batchP99UpToMs: number };
  /** exoroute dial runs only: dial-state statements (a request alone or a batch), the requests they answered, their seconds */
  dial?: { statements: number; requests: number; seconds: number };
  /** exoroute only: event-loop delay during the run (beyond prom-client's 10 ms sampling timer), ms */
  loop?: { p99Ms: number; maxMs: number };
  /**
   * exoroute only: share of the run's callbacks that exoroute's handler answered within 5 and 10 ms,
   * by its own histogram (`exoroute_callback_duration_seconds`). The load generator's latency adds
   * what happens outside the handler: waiting to be read, HTTP parsing and writing, the kernel, its own loop.
   */
  inside?: { within5: number; within10: number };
  /**
   * exoroute only: callbacks it answered from the flow's onError during the run (outcome `on-error`
   * in its metrics), and of them those whose CDR gives another reason than the budget running out
   * (`failed`: the dial state or the decision failed), with up to 3 of those reasons. Their status
   * is 200 or 302, so only this tells such an answer from the routed one it stands in for. One for
   * lack of time is a slow answer, not a wrong one (its CDR, spooled then, may not be stored yet).
   */
  onError?: { answers: number; failed: number; reasons: string[] };
  /** Postgres background work during the run: share of 200 ms samples with an autovacuum worker busy, what it did, checkpoints */
  background: { autovacuumShare: number; autovacuum: string[]; checkpoints: number };
  /** seconds the VACUUM (ANALYZE) of what the run wrote took, right after it (see vacuumWritten) */
  vacuumSeconds: number;
}

export async function measure(env: Env, scenario: string, c: Contender, round: number, load: (next: () => string) => Promise<LoadResult>): Promise<RunRecord> {
  const tag = randomBytes(11).toString('hex'); // 22 hex digits + 10 of the counter: a 32-digit CallSid
  const next = callbackPaths(c.kind, c.flow, tag, round * 7919 + scenario.length);
  const startedAt = new Date();
  const before = {
    svc: cpuSeconds(c.svc.pid),
    pg: postgresCpuSeconds(env.postmaster),
    gen: process.cpuUsage(),
    counters: await counters(c.svc),
    checkpoints: await checkpoints(env.pool),
  };
  let rssMax = 0;
  // Postgres's own background work during the run: autovacuum workers seen busy, and on which tables.
  const vacuum = { samples: 0, busy: 0, tables: new Set<string>() };
  const sampler = setInterval(() => {
    try {
      rssMax = Math.max(rssMax, rss(c.svc.pid).rssMb);
    } catch {
      // the process is gone; the run will show it
    }
    vacuum.samples++;
    autovacuumWork(env.pool).then(
      (work) => {
        if (work.length > 0) vacuum.busy++;
        for (const w of work) vacuum.tables.add(w);
      },
      () => undefined,
    );
  }, 200);
  let result: LoadResult;
  try {
    result = await load(next);
  } finally {
    clearInterval(sampler);
  }
  rssMax = Math.max(rssMax, rss(c.svc.pid).rssMb);
  const gen = process.cpuUsage(before.gen);
  const after = {
    svc: cpuSeconds(c.svc.pid),
    pg: postgresCpuSeconds(env.postmaster),
    counters: await counters(c.svc),
    checkpoints: await checkpoints(env.pool),
  };
  const delta = (k: string) => (after.counters[k] ?? NaN) - (before.counters[k] ?? NaN);
  const onErrorAnswers = delta('callbacks_on-error');
  const onError =
    onErrorAnswers > 0 ? { answers: onErrorAnswers, ...(await onErrorNotLate(env, c.svc, startedAt)) } : { answers: onErrorAnswers, failed: 0, reasons: [] };
  const record: RunRecord = {
    scenario,
    contender: c.name,
    round,
    result,
    cpu: { service: after.svc - before.svc, postgres: after.pg - before.pg, generator: (gen.user + gen.system) / 1e6 },
    rssMb: rssMax,
    background: {
      autovacuumShare: vacuum.samples ? vacuum.busy / vacuum.samples : 0,
      autovacuum: [...vacuum.tables],
      checkpoints: after.checkpoints - before.checkpoints,
    },
    vacuumSeconds: await vacuumWritten(env),
    ...(c.name.startsWith('exoroute')
      ? {
          cdr: {
            batches: delta('exoroute_cdr_batches_total'),
            records: delta('exoroute_cdr_records_total'),
            spooled: delta('exoroute_cdr_spooled_total'),
            batchSeconds: delta('batch_seconds_sum'),
            batchP99UpToMs: bucketP99(before.counters, after.counters),
          },
          ...(delta('dial_count') > 0 ? { dial: { statements: delta('dial_count'), requests: delta('dial_sum'), seconds: delta('dial_seconds') } } : {}),
          // prom-client samples with a 10 ms timer, so its figures include those 10 ms
          loop: { p99Ms: (after.counters.loop_p99 ?? NaN) * 1000 - 10, maxMs: (after.counters.loop_max ?? NaN) * 1000 - 10 },
          inside: { within5: delta('callback_le_0.005') / delta('callback_le_+Inf'), within10: delta('callback_le_0.01') / delta('callback_le_+Inf') },
          onError,
        }
      : {}),
  };
  log(runLine(record));
  await sleep(QUICK ? 300 : 1500); // let Postgres and the processes settle between runs
  return record;
}

/** The progress line of a run: its throughput and latency, then whatever else was measured. */
function runLine(record: RunRecord): string {
  const r = record.result;
  const bad = failures(record);
  return (
    `  ${record.scenario.padEnd(22)} ${record.contender.padEnd(20)} round ${record.round}: ${r.rps.toFixed(0).padStart(6)} req/s, p50 ${r.latency.p50.toFixed(2)} ms, ` +
    `p99 ${r.latency.p99.toFixed(2)} ms${r.p99FromDue !== undefined ? ` (from due time ${r.p99FromDue.toFixed(2)})` : ''}, ` +
    `CPU service/PG/generator ${pct(record.cpu.service, r.seconds)}/${pct(record.cpu.postgres, r.seconds)}/${pct(record.cpu.generator, r.seconds)}` +
    (record.cdr
      ? `, ${(record.cdr.records / record.cdr.batches).toFixed(1)} CDRs/batch of ${((record.cdr.batchSeconds / record.cdr.batches) * 1000).toFixed(1)} ms, ` +
        `a batch in flight ${pct(record.cdr.batchSeconds, r.seconds)} of the time, 99 % of batches within ${fmt(record.cdr.batchP99UpToMs, 1)} ms`
      : '') +
    (record.dial
      ? `, ${(record.dial.requests / record.dial.statements).toFixed(1)} dial requests/statement of ${((record.dial.seconds / record.dial.statements) * 1000).toFixed(1)} ms, ` +
        `one in flight ${pct(record.dial.seconds, r.seconds)} of the time`
      : '') +
    (record.loop ? `, event-loop delay p99 ${fmt(record.loop.p99Ms, 1)} ms, max ${fmt(record.loop.maxMs, 1)} ms` : '') +
    (record.inside
      ? `, in exoroute's handler ${fmt(record.inside.within5 * 100, 2)} % answered within 5 ms, ${fmt(record.inside.within10 * 100, 2)} % within 10 ms`
      : '') +
    (record.background.autovacuumShare > 0
      ? `, autovacuum busy ${pct(record.background.autovacuumShare, 1)} of the run (${record.background.autovacuum.join('; ')})`
      : '') +
    (record.background.checkpoints > 0 ? `, ${record.background.checkpoints} checkpoint(s)` : '') +
    `, then its rows vacuumed in ${record.vacuumSeconds.toFixed(1)} s` +
    (bad ? `, ${bad} failed (${failed(record).join('; ')})` : '')
  );
}

/**
 * What makes a run's figures those of something else than the work it times, however fast or slow
 * it was: answers with a status other than 2xx/3xx, requests that got no answer (a connection error,
 * or no answer within autocannon's 10 s: both count in `errors`), a run without a single answer,
 * and callbacks exoroute answered from the flow's onError for another reason than lack of time (a
 * 200 or 302 like the routed answer, but not its work). Empty when the run is sound. Any of these fails `npm run bench` (bench/run.ts).
 */
export function failed(record: RunRecord): string[] {
  const out = loadFailed(record.result);
  if (record.onError?.failed) out.push(`${record.onError.failed} callbacks answered from the flow's onError: ${record.onError.reasons.join(' | ')}`);
  return out;
}

/** What failed() finds in the load generator's result alone (the --profile runs have nothing else). */
export function loadFailed(r: LoadResult): string[] {
  const out: string[] = [];
  const wrong = wrongAnswers(r);
  if (wrong > 0) out.push(`${wrong} answers with a status other than 2xx/3xx ${JSON.stringify(r.statuses)}`);
  if (r.errors > 0) out.push(`${r.errors} requests without an answer (${r.timeouts} of them timed out)`);
  if (r.requests === 0) out.push('no answer at all');
  return out;
}

/** How many requests of a run failed (see failed()): the report's `failed` column and the run's line. */
export function failures(record: RunRecord): number {
  return record.result.errors + wrongAnswers(record.result) + (record.onError?.failed ?? 0) + (record.result.requests === 0 ? 1 : 0);
}

/** The budget ran out (src/routing/dial/answer.ts, own-availability.ts): exoroute answered onError in time, as it should. */
const LATE = '% ms left of the budget';

/**
 * The on-error CDRs of exoroute since `since` whose reason is not lack of time: how many, and up to
 * 3 reasons. A CDR whose commit had no time left is in exoroute's spool, stored by its replay (every
 * second): waited for first, at most 15 s.
 */
async function onErrorNotLate(env: Env, svc: Service, since: Date): Promise<{ failed: number; reasons: string[] }> {
  for (let i = 0; i < 75 && ((await counters(svc)).spool_depth ?? 0) > 0; i++) await sleep(200);
  const { rows } = await env.pool.query<{ reason: string | null; n: number }>(
    `SELECT reason, count(*)::int AS n FROM cdrs
      WHERE received_at >= $1 AND outcome = 'on-error' AND reason NOT LIKE $2
      GROUP BY reason ORDER BY n DESC`,
    [since, LATE],
  );
  return { failed: rows.reduce((a, r) => a + r.n, 0), reasons: rows.slice(0, 3).map((r) => `${r.n}× ${r.reason ?? '(no reason)'}`) };
}

/** Answers in a load run with a status other than 2xx/3xx (exoroute's branch B is a 302). */
export function wrongAnswers(result: LoadResult): number {
  return Object.entries(result.statuses)
    .filter(([status]) => !/^[23]/.test(status))
    .reduce((a, [, n]) => a + n, 0);
}

/** The tables callbacks write: exoroute's CDRs and dial state, and the naive baselines' CDRs and call state. */
const CALLBACK_TABLES = ['cdrs', 'dial_calls', 'caller_agents', 'agent_states', 'agent_offers'];

/**
 * VACUUM (ANALYZE) of the tables callbacks write, after each run (and after the warm-ups), so that
 * the next contender does not run beside the autovacuum of the rows the one before it wrote (the
 * exoroute dial runs leave 24,000–39,000 CDRs each; bench/README.md). A manual VACUUM is not
 * throttled, and Postgres cancels an autovacuum of the same table that would hold it up. Its time
 * is reported with the run that left the work.
 */
export async function vacuumWritten(env: Env): Promise<number> {
  const started = performance.now();
  await env.pool.query(`VACUUM (ANALYZE) ${CALLBACK_TABLES.join(', ')}`);
  return (performance.now() - started) / 1000;
}

/**
 * Before a scenario, as pgbench vacuums before its runs: waits until no autovacuum worker has been
 * busy for a second (at most 60 s; 10 in a quick run), then has Postgres write out its dirty
 * buffers (CHECKPOINT), so that a scenario does not pay for what the one before it wrote. The dial
 * runs leave `cdrs` and `dial_calls` to vacuum.
 */
export async function settle(env: Env): Promise<void> {
  const started = Date.now();
  const limit = QUICK ? 10_000 : 60_000;
  let idleSince = Date.now();
  while (Date.now() - idleSince < 1000 && Date.now() - started < limit) {
    if ((await autovacuumWork(env.pool)).length > 0) idleSince = Date.now();
    await sleep(200);
  }
  const t = Date.now();
  const stillBusy = t - idleSince < 1000;
  await env.pool.query('CHECKPOINT');
  log(
    `  Postgres settled: autovacuum ${stillBusy ? 'still busy after' : 'idle after'} ${((t - started) / 1000).toFixed(1)} s, checkpoint ${((Date.now() - t) / 1000).toFixed(1)} s`,
  );
}
