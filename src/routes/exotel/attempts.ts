/**
 * Callback number per call, endpoint and flow, for the CDR's `attempt` (per instance, bounded).
 *
 * Two generations: when the young one is full it becomes the old one and the previous old one is
 * cleared; a key found only in the old one moves forward. A key is remembered for at least
 * `max / 2` newer keys, and never more than `max` keys are held.
 *
 * A generation is a hash table in typed arrays, not a Map: a Map entry with its key string costs
 * every callback ~600 bytes that live until the generation is dropped, so the garbage collector
 * promoted, kept and marked them all (measured under load: 60 MB of a 90 MB live heap at 100,000
 * keys, and longer pauses). Here a key is held as a 53-bit hash. Two keys sharing one would share
 * a count; with 100,000 keys held, the odds that any two do are about one in two million.
 */
export class AttemptCounter {
  private young: Generation;
  private old: Generation;
  private readonly generation: number;

  constructor(max: number) {
    this.generation = Math.max(1, Math.floor(max / 2));
    this.young = new Generation(this.generation);
    this.old = new Generation(this.generation);
  }

  /** Counts one more callback for `key` and returns its number (1 for the first). */
  next(key: string): number {
    const [hi, lo] = hash53(key);
    let slot = this.young.find(hi, lo);
    if (slot < 0) {
      const seen = this.old.count(hi, lo);
      if (this.young.size >= this.generation) {
        const dropped = this.old;
        this.old = this.young;
        this.young = dropped.clear();
      }
      slot = this.young.add(hi, lo, seen);
    }
    return this.young.increment(slot);
  }

  /** Keys held, both generations (a key moved forward may be counted twice). */
  get size(): number {
    return this.young.size + this.old.size;
  }
}

/** Open addressing with linear probing, at most half full; a slot whose `hi` is 0 is empty. */
class Generation {
  private readonly hi: Uint32Array;
  private readonly lo: Uint32Array;
  private readonly counts: Uint32Array;
  private readonly mask: number;
  size = 0;

  constructor(keys: number) {
    let capacity = 4;
    while (capacity < keys * 2) capacity *= 2;
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.counts = new Uint32Array(capacity);
    this.mask = capacity - 1;
  }

  /** The key's slot, or -1. */
  find(hi: number, lo: number): number {
    for (let i = lo & this.mask; ; i = (i + 1) & this.mask) {
      if (this.hi[i] === 0) return -1;
      if (this.hi[i] === hi && this.lo[i] === lo) return i;
    }
  }

  count(hi: number, lo: number): number {
    const slot = this.find(hi, lo);
    return slot < 0 ? 0 : this.counts[slot]!;
  }

  /** Adds a key that is not held, with a count so far; answers its slot. */
  add(hi: number, lo: number, count: number): number {
    let i = lo & this.mask;
    while (this.hi[i] !== 0) i = (i + 1) & this.mask;
    this.hi[i] = hi;
    this.lo[i] = lo;
    this.counts[i] = count;
    this.size++;
    return i;
  }

  increment(slot: number): number {
    return ++this.counts[slot]!;
  }

  clear(): this {
    this.hi.fill(0);
    this.size = 0;
    return this;
  }
}

/**
 * cyrb53 (bryc, public domain): a 53-bit string hash, as its high 21 bits (made non-zero: 0 marks
 * an empty slot) and low 32 bits.
 */
function hash53(s: string): [number, number] {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return [((h2 & 0x1fffff) | 0x200000) >>> 0, h1 >>> 0];
}
