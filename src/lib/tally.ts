import { performance } from 'node:perf_hooks';

/**
 * A count of things worth one log line a second rather than one each (CDRs spooled, batches or dial
 * events Postgres refused during an outage): `add()` counts, and answers how many since the last
 * line when one is due now, else 0.
 */
export class Tally {
  private count = 0;
  private reportedAt = -Infinity;

  constructor(private readonly everyMs = 1000) {}

  add(n = 1, now = performance.now()): number {
    this.count += n;
    if (now - this.reportedAt < this.everyMs) return 0;
    const count = this.count;
    this.reportedAt = now;
    this.count = 0;
    return count;
  }
}
