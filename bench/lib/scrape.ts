/**
 * What the bench reads from the processes it drives, beside /proc (proc.ts): exoroute's own
 * Prometheus metrics, and Postgres's statistics views.
 */
import type pg from 'pg';
import { sleep } from './config.js';
import type { Service } from './proc.js';

/** exoroute's own counters (Prometheus text): CDR batches, records, spooled; callbacks by outcome and latency. */
export async function counters(svc: Service): Promise<Record<string, number>> {
  try {
    const text = await (await fetch(`${svc.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^(exoroute_cdr_(?:batches|records|spooled|batch_failures)_total) (\S+)$/gm)) out[m[1]!] = Number(m[2]);
    for (const m of text.matchAll(/^exoroute_cdr_batch_duration_seconds_(sum|count)\{result="committed"\} (\S+)$/gm))
      out[`batch_seconds_${m[1]}`] = Number(m[2]);
    for (const m of text.matchAll(/^exoroute_cdr_batch_duration_seconds_bucket\{le="([^"]+)",result="committed"\} (\S+)$/gm))
      out[`batch_le_${m[1]}`] = Number(m[2]);
    for (const m of text.matchAll(/^exoroute_dial_batch_size_(sum|count) (\S+)$/gm)) out[`dial_${m[1]}`] = Number(m[2]);
    for (const m of text.matchAll(/^exoroute_dial_batch_duration_seconds_sum\{result="answered"\} (\S+)$/gm)) out.dial_seconds = Number(m[1]);
    // Callbacks answered within each bucket of exoroute's own latency histogram, all endpoints and outcomes.
    for (const m of text.matchAll(/^exoroute_callback_duration_seconds_bucket\{([^}]*)\} (\S+)$/gm)) {
      const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
      if (le) out[`callback_le_${le}`] = (out[`callback_le_${le}`] ?? 0) + Number(m[2]);
    }
    for (const m of text.matchAll(/^exoroute_cdr_spool_depth (\S+)$/gm)) out.spool_depth = Number(m[1]);
    // Callbacks answered, by outcome (answered, async, on-error, rejected), all endpoints.
    for (const m of text.matchAll(/^exoroute_callback_duration_seconds_count\{([^}]*)\} (\S+)$/gm)) {
      const outcome = /outcome="([^"]+)"/.exec(m[1]!)?.[1];
      if (outcome) out[`callbacks_${outcome}`] = (out[`callbacks_${outcome}`] ?? 0) + Number(m[2]);
    }
    // Event-loop delay since the previous scrape (prom-client resets its histogram on every scrape).
    for (const m of text.matchAll(/^nodejs_eventloop_lag_(p99|max)_seconds (\S+)$/gm)) out[`loop_${m[1]}`] = Number(m[2]);
    return out;
  } catch {
    return {};
  }
}

/** Upper bound (bucket edge, ms) under which 99 % of the run's batch inserts took, from histogram deltas. */
export function bucketP99(before: Record<string, number>, after: Record<string, number>): number {
  const edges = Object.keys(after)
    .filter((k) => k.startsWith('batch_le_') && k !== 'batch_le_+Inf')
    .map((k) => Number(k.slice('batch_le_'.length)))
    .sort((a, b) => a - b);
  const count = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
  const total = count('batch_le_+Inf');
  if (!total) return NaN;
  const edge = edges.find((e) => count(`batch_le_${e}`) >= 0.99 * total);
  return edge === undefined ? Infinity : edge * 1000;
}

/** exoroute's V8 heap and external memory (prom-client's default metrics), MB. */
export async function heap(svc: Service): Promise<{ heapTotalMb: number; heapUsedMb: number; externalMb: number }> {
  const text = await (await fetch(`${svc.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text().catch(() => '');
  const mb = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20;
  return { heapTotalMb: mb('nodejs_heap_size_total_bytes'), heapUsedMb: mb('nodejs_heap_size_used_bytes'), externalMb: mb('nodejs_external_memory_bytes') };
}

/** What the autovacuum workers are busy with now, e.g. `VACUUM ANALYZE public.cdrs`; none: idle. */
export async function autovacuumWork(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ query: string }>("SELECT query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND state = 'active'");
  return rows.map((r) => r.query.replace(/^autovacuum: /, ''));
}

/** Checkpoints Postgres has started so far (timed and requested). */
export async function checkpoints(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('SELECT (num_timed + num_requested)::int AS n FROM pg_stat_checkpointer');
  return rows[0]?.n ?? NaN;
}

/**
 * What the Postgres backends serving the database are doing, sampled every 20 ms until `stop()`:
 * running (on CPU or runnable) or waiting, by wait event (Lock = row locks, IO:WALSync = fsync of
 * the commit, Client = waiting for the service to send or read).
 */
export function sampleBackends(pool: pg.Pool) {
  const counts = new Map<string, number>();
  let samples = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const { rows } = await pool.query<{ what: string; n: number }>(
        `SELECT coalesce(wait_event_type || ':' || wait_event, 'running') AS what, count(*)::int AS n
           FROM pg_stat_activity
          WHERE datname = current_database() AND backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()
          GROUP BY 1`,
      );
      samples++;
      for (const r of rows) counts.set(r.what, (counts.get(r.what) ?? 0) + r.n);
      await sleep(20);
    }
  })();
  return {
    async stop(): Promise<Array<{ what: string; backends: number }>> {
      stopped = true;
      await loop;
      return [...counts].map(([what, n]) => ({ what, backends: n / samples })).sort((a, b) => b.backends - a.backends);
    },
  };
}
