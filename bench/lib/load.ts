/**
 * Load generators, each bounded in time and in requests:
 * - `closedLoop`: autocannon, N connections each sending its next request when the answer arrives
 *   (throughput, latency at saturation); with `overallRate`, autocannon's own rate limit, which
 *   lets each connection send its share of a second's requests back to back, then waits for the
 *   next second (bursts, see bench/README.md);
 * - `paced`: an open loop that sends one request every 1/rate s on a keep-alive pool, whatever the
 *   answers do (what independent calls look like).
 * Latencies are recorded per response at full resolution (autocannon's histogram rounds to 1 ms).
 */
import http from 'node:http';
import autocannon from 'autocannon';

export interface LoadResult {
  /** answers received */
  requests: number;
  seconds: number;
  rps: number;
  /** ms: p50, p90, p99, max */
  latency: { p50: number; p90: number; p99: number; max: number };
  /** answers by status code */
  statuses: Record<string, number>;
  /** requests without an answer: connection errors, and timeouts (no answer within 10 s) */
  errors: number;
  /** of `errors`, the timeouts */
  timeouts: number;
  /** open loop only: p99 from the time each request was due, not sent (includes the generator's own lag) */
  p99FromDue?: number;
}

/** Exact percentile of a sorted array (nearest rank). */
export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

class Latencies {
  private values: Float64Array;
  private n = 0;
  constructor(capacity: number) {
    this.values = new Float64Array(capacity);
  }
  add(ms: number) {
    if (this.n < this.values.length) this.values[this.n++] = ms;
  }
  summary() {
    const sorted = this.values.slice(0, this.n).sort();
    return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN };
  }
}

export interface ClosedLoopOptions {
  url: string;
  connections: number;
  seconds: number;
  /** autocannon's overallRate (requests per second over all connections) */
  overallRate?: number;
  /** Path (with query) of the next request. */
  next: () => string;
  headers?: Record<string, string>;
  /** Stop after this many requests even if time is left. */
  maxRequests?: number;
}

/** autocannon, closed loop. */
export function closedLoop(opts: ClosedLoopOptions): Promise<LoadResult> {
  const maxRequests = opts.maxRequests ?? 2_000_000;
  const latencies = new Latencies(maxRequests);
  const statuses: Record<string, number> = {};
  let issued = 0;
  return new Promise((resolve, reject) => {
    let instance: autocannon.Instance | null = null;
    const hardStop = setTimeout(() => instance?.stop(), (opts.seconds + 30) * 1000);
    instance = autocannon(
      {
        url: opts.url,
        connections: opts.connections,
        duration: opts.seconds,
        ...(opts.overallRate ? { overallRate: opts.overallRate } : {}),
        timeout: 10,
        headers: opts.headers ?? {},
        requests: [
          {
            setupRequest: (req) => {
              if (++issued === maxRequests) setImmediate(() => instance?.stop());
              req.path = opts.next();
              return req;
            },
          },
        ],
      },
      (err, result) => {
        clearTimeout(hardStop);
        if (err) return reject(err);
        const s = latencies.summary();
        const requests = Object.values(statuses).reduce((a, b) => a + b, 0);
        resolve({
          requests,
          seconds: result.duration,
          rps: requests / result.duration,
          latency: s,
          statuses,
          errors: result.errors,
          timeouts: result.timeouts,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      latencies.add(responseTime);
    });
  });
}

export interface PacedOptions {
  url: string;
  rate: number;
  seconds: number;
  /** keep-alive connections at most */
  sockets: number;
  next: () => string;
  headers?: Record<string, string>;
}

/** Open loop at a fixed rate: request i is due at start + i/rate, sent then whatever came back. */
export function paced(opts: PacedOptions): Promise<LoadResult> {
  const { hostname, port } = new URL(opts.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.sockets });
  const total = Math.round(opts.rate * opts.seconds);
  const interval = 1000 / opts.rate;
  const sent = new Latencies(total);
  const due = new Latencies(total);
  const statuses: Record<string, number> = {};
  let errors = 0;
  let timeouts = 0;
  let issued = 0;
  let settled = 0;
  const t0 = performance.now() + 20;
  return new Promise((resolve) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(hardStop);
      agent.destroy();
      const seconds = (performance.now() - t0) / 1000;
      const requests = Object.values(statuses).reduce((a, b) => a + b, 0);
      resolve({ requests, seconds, rps: requests / seconds, latency: sent.summary(), p99FromDue: due.summary().p99, statuses, errors, timeouts });
    };
    const hardStop = setTimeout(finish, (opts.seconds + 15) * 1000);
    const settle = () => {
      if (++settled === total) finish();
    };
    const fire = (dueAt: number) => {
      const start = performance.now();
      const req = http.request({ agent, hostname, port, path: opts.next(), headers: opts.headers, timeout: 10_000 }, (res) => {
        res.resume();
        res.once('end', () => {
          const end = performance.now();
          statuses[res.statusCode ?? 0] = (statuses[res.statusCode ?? 0] ?? 0) + 1;
          sent.add(end - start);
          due.add(end - dueAt);
          settle();
        });
      });
      req.once('timeout', () => {
        timeouts++;
        req.destroy(new Error('timeout'));
      });
      req.once('error', () => {
        errors++;
        settle();
      });
      req.end();
    };
    const tick = () => {
      if (finished) return;
      const now = performance.now();
      while (issued < total && t0 + issued * interval <= now) fire(t0 + issued++ * interval);
      if (issued < total) setTimeout(tick, Math.max(0, t0 + issued * interval - performance.now()));
    };
    setTimeout(tick, 20);
  });
}
