/**
 * Callback number per call, endpoint and flow, for the CDR's `attempt` (per instance, bounded).
 *
 * Two generations of plain Maps instead of an LRU: when the young one is full it becomes the old
 * one and the previous old one is dropped; a key found only in the old one moves forward. A key
 * is remembered for at least `max / 2` newer keys, and never more than `max` keys are held. Cheaper
 * per callback than an LRU's bookkeeping, and the exact eviction order does not matter here.
 */
export class AttemptCounter {
  private young = new Map<string, number>();
  private old = new Map<string, number>();
  private readonly generation: number;

  constructor(max: number) {
    this.generation = Math.max(1, Math.floor(max / 2));
  }

  /** Counts one more callback for `key` and returns its number (1 for the first). */
  next(key: string): number {
    let seen = this.young.get(key);
    if (seen === undefined) {
      seen = this.old.get(key) ?? 0;
      if (this.young.size >= this.generation) {
        this.old = this.young;
        this.young = new Map();
      }
    }
    this.young.set(key, seen + 1);
    return seen + 1;
  }

  /** Keys held, both generations (a key moved forward may be counted twice). */
  get size(): number {
    return this.young.size + this.old.size;
  }
}
