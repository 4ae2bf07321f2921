import { LRUCache } from 'lru-cache';
import { DEFAULT_PAGE_LIMIT } from '../schemas/common.js';
import ipaddr from 'ipaddr.js';
import type pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { RefusalListQuery } from '../schemas/refusal.js';
import { parseId } from './ids.js';
import { timeRange } from './time-range.js';
import { DeadlineExceeded, withDeadline } from '../lib/deadline.js';

/**
 * Callbacks the guard refuses (wrong or missing secret, source outside EXOTEL_ALLOWED_CIDRS) come
 * from anyone who finds a callback URL, at any rate. Stored one CDR each, one client fills the disk
 * (issue 27). So each source address gets a few CDRs a minute, as samples; past that its refusals
 * are only counted, in memory, and added to `callback_refusals` (one row per address and minute)
 * every few seconds and at close. Past a higher count the address is answered 429.
 *
 * Every bound holds however many addresses take part: addresses are kept in an LRU, a minute has a
 * budget of CDRs and of rows for all addresses together, and what is beyond the row budget is
 * counted in one row, address `other`. Bounds are per instance; instances add to the same rows.
 */

/** Why the guard refused: the secret (missing or wrong), or the source address. */
export type RefusalReason = 'secret' | 'address';
/** What became of a refusal: a CDR as before, counted only, or counted and answered 429. */
export type RefusalHandling = 'cdr' | 'counted' | 'throttled';

export interface RefusalLimits {
  /** Refusals a minute, per address, stored as full CDRs. */
  cdrsPerAddress: number;
  /** Refusals a minute stored as full CDRs, all addresses together. */
  cdrsPerMinute: number;
  /** Past this many refusals a minute, an address is answered 429 with Retry-After. */
  throttleAfter: number;
  /** Addresses with a summary row of their own in a minute; the others share the row `other`. */
  rowsPerMinute: number;
  /** Addresses whose count in the current minute is remembered (LRU). */
  maxAddresses: number;
  /** Summaries kept in memory while Postgres does not take them (beyond: folded into `other`). */
  maxPending: number;
  /** How often the summaries go to Postgres. */
  flushIntervalMs: number;
}

export const DEFAULT_REFUSAL_LIMITS: RefusalLimits = {
  cdrsPerAddress: 10,
  cdrsPerMinute: 100,
  throttleAfter: 600,
  rowsPerMinute: 500,
  maxAddresses: 10_000,
  maxPending: 50_000,
  flushIntervalMs: 5_000,
};

/**
 * Longest close() waits for the last counts to be written: a stalled Postgres must not hold the
 * shutdown, which has 10 s for everything (src/server.ts).
 */
const CLOSE_WAIT_MS = 2000;

/** The `address` of the row that counts the addresses past a minute's row budget. */
export const OTHER_ADDRESSES = 'other';

interface Summary {
  minute: number;
  address: string;
  refusals: number;
  wrongSecret: number;
  outsideCidrs: number;
  cdrs: number;
  throttled: number;
  firstAt: number;
  lastAt: number;
}

const MINUTE_MS = 60_000;
const V4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/**
 * The address a bound applies to: IPv4 as it is (an IPv4-mapped IPv6 address as its IPv4 one), IPv6
 * by its /64 prefix, since one host commonly holds a whole /64.
 */
export function addressKey(ip: string): string {
  if (!ip.includes(':')) return ip;
  const mapped = V4_MAPPED.exec(ip)?.[1];
  if (mapped) return mapped;
  if (!ipaddr.IPv6.isValid(ip)) return ip;
  const parts = ipaddr.IPv6.parse(ip).parts.slice(0, 4);
  return `${new ipaddr.IPv6([...parts, 0, 0, 0, 0]).toString()}/64`;
}

/**
 * Adds an instance's counts to the rows of their minute and address. The whole batch travels as
 * one JSON parameter, as the CDR writer's fallback insert does.
 */
const UPSERT = `INSERT INTO callback_refusals (minute, address, refusals, wrong_secret, outside_cidrs, stored_as_cdrs, throttled, first_at, last_at)
  SELECT minute, address, refusals, wrong_secret, outside_cidrs, stored_as_cdrs, throttled, first_at, last_at
    FROM json_populate_recordset(NULL::callback_refusals, $1::json)
  ON CONFLICT (minute, address) DO UPDATE SET
    refusals = callback_refusals.refusals + EXCLUDED.refusals,
    wrong_secret = callback_refusals.wrong_secret + EXCLUDED.wrong_secret,
    outside_cidrs = callback_refusals.outside_cidrs + EXCLUDED.outside_cidrs,
    stored_as_cdrs = callback_refusals.stored_as_cdrs + EXCLUDED.stored_as_cdrs,
    throttled = callback_refusals.throttled + EXCLUDED.throttled,
    first_at = LEAST(callback_refusals.first_at, EXCLUDED.first_at),
    last_at = GREATEST(callback_refusals.last_at, EXCLUDED.last_at)`;

/** Counts refused callbacks, decides which become CDRs, and writes the per-minute summaries. */
export class RefusalLog {
  readonly limits: RefusalLimits;
  /** Refusals since start, by reason and handling (mirrored as a Prometheus counter). */
  readonly stats: Record<RefusalReason, Record<RefusalHandling, number>> = {
    secret: { cdr: 0, counted: 0, throttled: 0 },
    address: { cdr: 0, counted: 0, throttled: 0 },
  };
  private readonly addresses: LRUCache<string, { minute: number; count: number }>;
  private minute = 0;
  private cdrsThisMinute = 0;
  /** Addresses with a row of their own in the current minute. */
  private readonly ownRows = new Set<string>();
  /** Counts not yet in Postgres, by `minute|address`. */
  private pending = new Map<string, Summary>();
  /** Counts on their way to Postgres, not yet answered. */
  private unanswered: Summary[] = [];
  private flushing: Promise<number> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    limits: Partial<RefusalLimits> = {},
  ) {
    this.limits = { ...DEFAULT_REFUSAL_LIMITS, ...limits };
    this.addresses = new LRUCache({ max: this.limits.maxAddresses });
  }

  /** Counts one refusal of a callback from `ip`; says whether to store it as a CDR or answer 429. */
  note(ip: string, reason: RefusalReason, now = Date.now()): RefusalHandling {
    const minute = Math.floor(now / MINUTE_MS);
    if (minute !== this.minute) {
      this.minute = minute;
      this.cdrsThisMinute = 0;
      this.ownRows.clear();
    }
    const key = addressKey(ip);
    let state = this.addresses.get(key);
    if (state === undefined || state.minute !== minute) {
      state = { minute, count: 0 };
      this.addresses.set(key, state);
    }
    const count = ++state.count;
    let handling: RefusalHandling = 'counted';
    if (count > this.limits.throttleAfter) handling = 'throttled';
    else if (count <= this.limits.cdrsPerAddress && this.cdrsThisMinute < this.limits.cdrsPerMinute) {
      handling = 'cdr';
      this.cdrsThisMinute++;
    }
    this.stats[reason][handling]++;

    let row = key;
    if (!this.ownRows.has(key)) {
      if (this.ownRows.size < this.limits.rowsPerMinute) this.ownRows.add(key);
      else row = OTHER_ADDRESSES;
    }
    let summary = this.pending.get(`${minute}|${row}`);
    if (summary === undefined) {
      if (this.pending.size >= this.limits.maxPending) row = OTHER_ADDRESSES;
      summary = this.pending.get(`${minute}|${row}`);
      if (summary === undefined) {
        summary = { minute, address: row, refusals: 0, wrongSecret: 0, outsideCidrs: 0, cdrs: 0, throttled: 0, firstAt: now, lastAt: now };
        this.pending.set(`${minute}|${row}`, summary);
      }
    }
    summary.refusals++;
    if (reason === 'secret') summary.wrongSecret++;
    else summary.outsideCidrs++;
    if (handling === 'cdr') summary.cdrs++;
    else if (handling === 'throttled') summary.throttled++;
    if (now < summary.firstAt) summary.firstAt = now;
    if (now > summary.lastAt) summary.lastAt = now;
    return handling;
  }

  /** Seconds until a throttled address's minute is over. */
  retryAfterSeconds(now = Date.now()): number {
    return Math.max(1, Math.ceil((MINUTE_MS - (now % MINUTE_MS)) / 1000));
  }

  /** Flushes the summaries every `flushIntervalMs` until close(). */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.flush(), this.limits.flushIntervalMs);
    this.timer.unref();
  }

  /**
   * Adds the counts so far to Postgres; resolves with the rows written. When Postgres refuses, the
   * counts stay in memory for the next flush (logged, never thrown).
   */
  flush(): Promise<number> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async write(): Promise<number> {
    if (this.pending.size === 0) return 0;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    this.unanswered = batch;
    const rows = batch.map((s) => ({
      minute: new Date(s.minute * MINUTE_MS).toISOString(),
      address: s.address,
      refusals: s.refusals,
      wrong_secret: s.wrongSecret,
      outside_cidrs: s.outsideCidrs,
      stored_as_cdrs: s.cdrs,
      throttled: s.throttled,
      first_at: new Date(s.firstAt).toISOString(),
      last_at: new Date(s.lastAt).toISOString(),
    }));
    try {
      await this.pool.query(UPSERT, [JSON.stringify(rows)]);
    } catch (err) {
      this.unanswered = [];
      for (const s of batch) this.putBack(s);
      this.log.warn({ err: (err as Error).message, pending: this.pending.size }, 'refused-callback summaries not stored; will retry');
      return 0;
    }
    this.unanswered = [];
    // One line a flush, however many refusals: the log must not grow with them either.
    let refusals = 0;
    let cdrs = 0;
    let top = batch[0]!;
    for (const s of batch) {
      refusals += s.refusals;
      cdrs += s.cdrs;
      if (s.refusals > top.refusals) top = s;
    }
    this.log.warn(
      { refusals, storedAsCdrs: cdrs, rows: batch.length, top: { address: top.address, refusals: top.refusals } },
      'callbacks refused (counts in callback_refusals, GET /admin/refusals)',
    );
    return batch.length;
  }

  /** Merges counts a failed flush took back into what is pending. */
  private putBack(s: Summary): void {
    const key = `${s.minute}|${s.address}`;
    const now = this.pending.get(key);
    if (!now) {
      this.pending.set(key, s);
      return;
    }
    now.refusals += s.refusals;
    now.wrongSecret += s.wrongSecret;
    now.outsideCidrs += s.outsideCidrs;
    now.cdrs += s.cdrs;
    now.throttled += s.throttled;
    now.firstAt = Math.min(now.firstAt, s.firstAt);
    now.lastAt = Math.max(now.lastAt, s.lastAt);
  }

  /** Stops the timer and writes what is left (waiting for a flush in progress first). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const written = (async () => {
      await this.flushing;
      await this.flush();
    })();
    await withDeadline(written, CLOSE_WAIT_MS, () => 'no answer', { unref: true }).catch((err: Error) => {
      if (!(err instanceof DeadlineExceeded)) throw err;
    });
    const lost = [...this.pending.values(), ...this.unanswered];
    if (lost.length > 0) {
      let refusals = 0;
      for (const s of lost) refusals += s.refusals;
      this.log.error({ refusals, rows: lost.length }, 'refused-callback summaries lost at close: Postgres did not take them');
    }
  }
}

const LIST_COLUMNS = `id::text AS id, minute, address, refusals, wrong_secret AS "wrongSecret", outside_cidrs AS "outsideAllowedCidrs",
  stored_as_cdrs AS "storedAsCdrs", throttled, first_at AS "firstAt", last_at AS "lastAt"`;

export interface RefusalRow {
  id: string;
  minute: Date;
  address: string;
  refusals: number;
  wrongSecret: number;
  outsideAllowedCidrs: number;
  storedAsCdrs: number;
  throttled: number;
  firstAt: Date;
  lastAt: Date;
}

/**
 * Refusal summaries, newest minute first, then by address; the cursor is the id of the previous
 * page's last row. A cursor whose row retention deleted (and everything older with it) ends the paging.
 */
export async function listRefusals(pool: pg.Pool, q: RefusalListQuery): Promise<{ items: RefusalRow[]; nextCursor: string | null }> {
  const limit = q.limit ?? DEFAULT_PAGE_LIMIT;
  const { from, to } = timeRange(q);
  const where: string[] = [];
  const values: unknown[] = [];
  const param = (v: unknown) => {
    values.push(v);
    return `$${values.length}`;
  };
  if (q.address !== undefined) where.push(`address = ${param(q.address)}`);
  if (from) where.push(`minute >= date_trunc('minute', ${param(from)}::timestamptz)`);
  if (to) where.push(`minute < ${param(to)}::timestamptz`);
  if (q.cursor !== undefined) {
    if (parseId(q.cursor) === null) return { items: [], nextCursor: null };
    where.push(`(minute, address) < (SELECT minute, address FROM callback_refusals WHERE id = ${param(q.cursor)}::bigint)`);
  }
  const { rows } = await pool.query<RefusalRow>(
    `SELECT ${LIST_COLUMNS} FROM callback_refusals ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY minute DESC, address DESC LIMIT ${param(limit + 1)}`,
    values,
  );
  const page = rows.slice(0, limit);
  return { items: page, nextCursor: rows.length > limit ? page[page.length - 1]!.id : null };
}
