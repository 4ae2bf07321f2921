import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { CdrRow, CdrSpool } from './cdr-spool.js';
import { CDR_FIELDS, columnOf, type CdrRecord } from './cdr-columns.js';
import { Tally } from '../lib/tally.js';
import { isoInstant } from '../lib/iso-instant.js';
import { QUERY_TIMEOUT_MS, withQueryTimeout } from './database.js';

export type { CdrRecord };

/** Every column but the id, with its field: the order of COPY lines and of the JSON insert. */
const COLUMNS = CDR_FIELDS.filter((f): f is keyof CdrRecord => f !== 'id').map((f) => [f, columnOf(f)] as const);
const COLUMN_LIST = COLUMNS.map(([, c]) => c).join(', ');
/**
 * The whole batch travels as one JSON parameter; Postgres turns it into rows. One statement, one
 * commit, however many CDRs. A replayed CDR (same idempotency key) is skipped.
 */
const INSERT = `INSERT INTO cdrs (${COLUMN_LIST})
  SELECT ${COLUMN_LIST} FROM json_populate_recordset(NULL::cdrs, $1::json)
  ON CONFLICT (idempotency_key) DO NOTHING`;

/**
 * Fresh CDRs (new random idempotency keys) go in with `COPY … FROM STDIN`: measured on a table of
 * a million CDRs, it costs Postgres about 30 µs of CPU per row against 54 µs for the JSON insert
 * above, and each callback makes its own values instead of a JSON document per batch.
 * COPY has no ON CONFLICT: a batch it refuses for its data is inserted again the JSON way.
 */
const COPY = `COPY cdrs (${COLUMN_LIST}) FROM STDIN`;

/**
 * Batches of up to this many CDRs go in as a prepared INSERT instead. A COPY is parsed, its columns
 * looked up by name and its insert state set up anew for every batch, which is most of what it costs
 * for one row (one callback at a time: every batch is one CDR); a prepared statement is parsed and
 * planned once per connection and size. From about four rows on, COPY's cheaper rows win.
 */
export const MAX_PREPARED_ROWS = 3;
const preparedInserts: { name: string; text: string }[] = [];
/** The prepared INSERT of `rows` CDRs: one named statement per size. */
function preparedInsert(rows: number): { name: string; text: string } {
  let statement = preparedInserts[rows];
  if (!statement) {
    const tuples = Array.from({ length: rows }, (_, r) => `(${COLUMNS.map((_c, i) => `$${r * COLUMNS.length + i + 1}`).join(', ')})`);
    statement = { name: `cdr-insert-${rows}`, text: `INSERT INTO cdrs (${COLUMN_LIST}) VALUES ${tuples.join(', ')}` };
    preparedInserts[rows] = statement;
  }
  return statement;
}
const JSON_COLUMNS = new Set(['legs', 'params', 'decision']);
/** COPY's text format: backslash, newline, carriage return and tab are written as escapes. */
const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIALS = /[\\\n\r\t]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * One column's value as Postgres takes it in text form (null is NULL): NUL dropped and lone
 * surrogates made well formed, which Postgres text refuses.
 */
function fieldText(isJson: boolean, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return String(v);
  if (v instanceof Date) return isoInstant(v) ?? v.toISOString();
  if (isJson) {
    const s = JSON.stringify(v);
    // JSON text has no raw tab or line break, and every escape (\u0000 and lone surrogates
    // included) starts with a backslash: without one there is nothing to clean.
    return s.includes('\\') && NEEDS_CLEANING.test(s) ? JSON.stringify(cleanDeep(v)) : s;
  }
  const s = String(v);
  // A lone surrogate becomes U+FFFD when the value is encoded as UTF-8, as toWellFormed() does.
  return s.includes('\u0000') ? s.replaceAll('\u0000', '') : s;
}

/** A value (fieldText) in COPY's text format (`\N` is NULL). */
function copyField(isJson: boolean, s: string | null): string {
  if (s === null) return '\\N';
  // JSON text has no raw tab or line break: only its backslashes need escaping.
  if (isJson) return s.includes('\\') ? s.replaceAll('\\', '\\\\') : s;
  return COPY_SPECIAL.test(s) ? s.replace(COPY_SPECIALS, (c) => COPY_ESCAPES[c]!) : s;
}

const KEYS = COLUMNS.map(([key]) => key);
const IS_JSON = COLUMNS.map(([, column]) => JSON_COLUMNS.has(column));

/** A record's values, in COLUMN_LIST order. */
function valuesOf(r: CdrRecord): (string | null)[] {
  const values = new Array<string | null>(KEYS.length);
  for (let i = 0; i < KEYS.length; i++) values[i] = fieldText(IS_JSON[i]!, r[KEYS[i]!]);
  return values;
}

/** A record's values as one line of COPY text: tab-separated. */
function copyLine(values: (string | null)[]): string {
  let line = copyField(IS_JSON[0]!, values[0]!);
  for (let i = 1; i < values.length; i++) line += `\t${copyField(IS_JSON[i]!, values[i]!)}`;
  return `${line}\n`;
}

/** The part of pg's connection a COPY needs (`sendCopyFromChunk` and `endCopyFrom` are untyped). */
type CopyConnection = pg.Connection & { sendCopyFromChunk(chunk: Buffer): void; endCopyFrom(): void };

/**
 * One `COPY … FROM STDIN` with its data written right behind the statement, in one socket write:
 * one round trip, where pg-copy-streams makes two (it sends the data only once Postgres has
 * answered CopyInResponse). The protocol allows it: when a COPY fails, before or during copy-in,
 * Postgres drops the CopyData and CopyDone that follow (PostgreSQL docs, "COPY Operations").
 * A pg Submittable: the client runs it in turn and hands it Postgres's answers.
 */
class PipelinedCopy implements pg.Submittable {
  constructor(
    private readonly data: Buffer,
    private readonly done: (err?: Error) => void,
  ) {}

  submit(connection: pg.Connection): void {
    const c = connection as CopyConnection;
    c.stream.cork();
    c.query(COPY);
    c.sendCopyFromChunk(this.data);
    c.endCopyFrom();
    c.stream.uncork();
  }

  handleCopyInResponse(): void {} // the data is already on its way
  handleCommandComplete(): void {}
  /** Committed (or, after an error, never called: the error came first). */
  handleReadyForQuery(): void {
    this.done();
  }
  /** Postgres refused the COPY, or the connection failed (pg hands both to the active query). */
  handleError(err: Error): void {
    this.done(err);
  }
}

/** Postgres text refuses NUL and lone surrogates: drop the one, make the other well formed. */
const cleanString = (v: string) => v.replaceAll('\u0000', '').toWellFormed();
/** A copy with every string cleaned, object keys included (a key can carry a NUL too). */
function cleanDeep(v: unknown): unknown {
  if (typeof v === 'string') return cleanString(v);
  if (Array.isArray(v)) return v.map(cleanDeep);
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    const out: Record<string, unknown> = Object.create(null); // a `__proto__` key stays a key
    for (const [k, x] of Object.entries(v)) out[cleanString(k)] = cleanDeep(x);
    return out;
  }
  return v;
}
const NEEDS_CLEANING = /\\u0000|\\ud[89a-f]/i;

/** A CDR as a row of table `cdrs` (column names), as the insert and the spool take it. */
function rowOf(r: CdrRecord): CdrRow {
  const row: CdrRow = {};
  for (const [key, column] of COLUMNS) row[column] = r[key];
  return row;
}

/** JSON text of rows for the insert. */
function rowsJson(rows: CdrRow[]): string {
  const json = JSON.stringify(rows);
  return NEEDS_CLEANING.test(json) ? JSON.stringify(cleanDeep(rows)) : json;
}

/** A lane's pooled connection; `release(err)` makes the pool drop it. */
interface LaneConnection {
  client: pg.PoolClient;
  release: (err?: Error) => void;
}

/**
 * An idempotency key for a new CDR: a UUIDv7 (RFC 9562), the time in milliseconds first, then
 * randomUUID()'s random bits. Keys made later sort later, so the unique index on them grows at
 * its right edge instead of taking each new key on a random page (measured: ~4 µs less Postgres
 * CPU per CDR). A fifth of the cost of the `uuid` package's v7, which draws its random bits anew.
 */
export function newIdempotencyKey(now = Date.now()): string {
  const ms = now.toString(16).padStart(12, '0');
  // randomUUID(): xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx; its last 74 random bits and variant stay.
  return `${ms.slice(0, 8)}-${ms.slice(8)}-7${randomUUID().slice(15)}`;
}

/** Where a CDR ended up when `write()` resolved. */
export type CdrFate = 'committed' | 'spooled';

interface Pending {
  /** As handed over; made into a row (column names) only if it goes to the spool or the fallback insert. */
  record: CdrRecord;
  /** The record's values as Postgres takes them, built by the callback that handed it over (off the writer's path). */
  values: (string | null)[];
  /** Settled once: committed, spooled, or failed. A late commit after spooling is a no-op. */
  settled: boolean;
  timer: NodeJS.Timeout | null;
  resolve: (fate: CdrFate) => void;
  reject: (err: Error) => void;
}

export interface CdrWriterOptions {
  /** Where CDRs go when Postgres cannot take them in time; without one, such writes reject. */
  spool?: CdrSpool | null;
  /** Most CDRs per insert. */
  maxBatch?: number;
  /**
   * Most batch inserts at once (default 1). Measured with Postgres on the same 2-core machine, one
   * batch at a time gave the most callbacks per second and the lowest p99: a second batch in flight
   * halves the batches and costs ~25 % more CPU per callback. More may pay off where a commit waits
   * long for its WAL flush.
   */
  maxInFlight?: number;
  /** A batch insert still unanswered after this is abandoned and its connection dropped. */
  queryTimeoutMs?: number;
  /** How often a non-empty spool is offered to Postgres again (backing off to 30 s on failure). */
  replayIntervalMs?: number;
  /** Longest wait at close() for batches in flight before the rest is spooled. */
  closeTimeoutMs?: number;
}

const MAX_REPLAY_BACKOFF_MS = 30_000;

/**
 * Postgres refused the values themselves (data exception, constraint, or a limit such as an index
 * entry's size: classes 22, 23, 54): retrying will not help.
 */
const isDataError = (err: unknown) => /^(22|23|54)/.test(String((err as { code?: unknown }).code ?? ''));

/**
 * Group commit for CDRs: callbacks hand their CDR to `write()` and wait; whatever arrives while
 * one batch is being committed goes into the next. Under load many callbacks share one insert and
 * one commit, so the cost per callback stays far below a round trip.
 *
 * Nothing is lost when Postgres is down or stalled: a CDR whose batch fails, or that is not
 * committed within its deadline, is appended (fsynced) to the local spool instead, and the spool
 * is replayed into Postgres once it answers again. Every row carries an idempotency key, unique in
 * the table, so a CDR that was spooled and then committed late anyway is still stored once.
 */
export class CdrWriter {
  private queue: Pending[] = [];
  /** Batches being inserted. */
  private current = new Set<Pending[]>();
  private lanes = new Set<Promise<void>>();
  /**
   * Lanes still taking batches. Counted down by the lane itself as it stops, before the callbacks
   * it resumes last can hand over new CDRs (a lane leaves `lanes` only a tick later).
   */
  private working = 0;
  /** Lanes about to take the queue (their first batch is still gathering). */
  private gathering = 0;
  private closed = false;
  private replayTimer: NodeJS.Timeout | null = null;
  private replayBackoffMs: number;
  /** CDRs spooled and batches failed, each logged once a second with the count since the last line. */
  private readonly spooledTally = new Tally();
  private readonly failedTally = new Tally();
  private readonly spool: CdrSpool | null;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly queryTimeoutMs: number;
  private readonly replayIntervalMs: number;
  private readonly closeTimeoutMs: number;
  /** Counters for metrics and tests. */
  readonly stats = { batches: 0, records: 0, failures: 0, lastBatchSize: 0, spooled: 0, replayed: 0, setAside: 0 };
  /** Called after every batch insert attempt (metrics): its size, seconds taken, and whether it committed. */
  onBatch: ((size: number, seconds: number, ok: boolean) => void) | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    opts: CdrWriterOptions = {},
  ) {
    this.spool = opts.spool ?? null;
    this.maxBatch = opts.maxBatch ?? 2000;
    this.maxInFlight = opts.maxInFlight ?? 1;
    this.queryTimeoutMs = opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS;
    this.replayIntervalMs = opts.replayIntervalMs ?? 1000;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 3000;
    this.replayBackoffMs = this.replayIntervalMs;
  }

  /** CDRs waiting in the local spool for Postgres. */
  get spoolDepth(): number {
    return this.spool?.depth ?? 0;
  }

  /** Reads what an earlier run left in the spool and starts replaying it. */
  async start(): Promise<void> {
    if (!this.spool) return;
    await this.spool.init();
    if (this.spool.depth > 0) this.scheduleReplay(0);
  }

  /**
   * Resolves `committed` when the CDR is in Postgres, `spooled` when it is durably in the spool
   * instead (its batch failed, or `deadlineMs` passed first); rejects only when neither worked.
   */
  write(record: CdrRecord, deadlineMs = Infinity): Promise<CdrFate> {
    return new Promise<CdrFate>((resolve, reject) => {
      const p: Pending = { record, values: valuesOf(record), settled: false, timer: null, resolve, reject };
      if (this.closed) {
        this.toSpool([p], new Error('CDR writer is closed'));
        return;
      }
      if (deadlineMs !== Infinity) {
        p.timer = setTimeout(() => this.toSpool([p], new Error(`CDR not committed within ${Math.round(deadlineMs)} ms`)), Math.max(0, deadlineMs));
      }
      this.queue.push(p);
      if (this.gathering === 0 && this.working < this.maxInFlight) this.startLane();
    });
  }

  /**
   * A lane takes batches off the queue and commits them one after another, on one connection,
   * until the queue is empty. Another lane starts only while every lane is waiting on Postgres, up
   * to `maxInFlight`: on a disk with slow fsyncs, a second batch can be inserted while the first
   * waits for its WAL flush.
   *
   * When a batch commits, the next one (everything that queued meanwhile) goes to Postgres before
   * the committed batch's callbacks resume: Postgres inserts it while exoroute sends the answers.
   */
  private async lane(): Promise<void> {
    // Let the callbacks that arrived in the same tick join the first batch.
    this.gathering++;
    await new Promise<void>((r) => setImmediate(r));
    this.gathering--;
    let conn: LaneConnection | null = null;
    /** Committed, its callbacks not resumed yet. */
    let committed: Pending[] = [];
    const resume = () => {
      for (const p of committed) p.resolve('committed');
      committed = [];
    };
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch).filter((p) => !p.settled);
        if (batch.length === 0) continue;
        this.current.add(batch);
        const started = performance.now();
        try {
          conn ??= await this.connect(); // nothing is left to resume when there is no connection
          const sent = this.insertFresh(conn, batch);
          resume();
          await sent;
          this.onBatch?.(batch.length, (performance.now() - started) / 1000, true);
          this.stats.batches++;
          this.stats.records += batch.length;
          this.stats.lastBatchSize = batch.length;
          committed = batch.filter((p) => this.settle(p));
          // Postgres is back: replay now, also when a replay is waiting out the backoff of the outage (up to 30 s).
          if (this.spoolDepth > 0 && (!this.replayTimer || this.replayBackoffMs > this.replayIntervalMs)) {
            this.replayBackoffMs = this.replayIntervalMs;
            this.scheduleReplay(0);
          }
        } catch (err) {
          this.stats.failures++;
          this.onBatch?.(batch.length, (performance.now() - started) / 1000, false);
          // During an outage every batch fails (at low traffic, every callback is one): one line a second.
          const batchesFailed = this.failedTally.add(1, started);
          if (batchesFailed > 0) this.log.error({ err, size: batch.length, batchesFailed }, 'CDR batch insert failed');
          // The connection may be the trouble (gone, or stuck mid-COPY): the pool drops it.
          conn?.release(err as Error);
          conn = null;
          this.toSpool(batch, err as Error);
        }
        this.current.delete(batch);
      }
    } finally {
      this.working--;
      resume();
      conn?.release();
    }
  }

  /**
   * A pooled connection for a lane. As `pool.query` does, the connection's own errors (Postgres
   * gone) are caught: they fail the COPY in flight, and the connection is then not returned.
   */
  private async connect(): Promise<LaneConnection> {
    const client = await this.pool.connect();
    const onError = (err: Error) => this.log.warn({ err: err.message }, 'CDR writer connection failed');
    client.on('error', onError);
    return {
      client,
      release: (err?: Error) => {
        client.removeListener('error', onError);
        client.release(err); // with an error, the pool ends the connection (and a COPY stuck on it)
      },
    };
  }

  private startLane(): void {
    this.working++;
    const lane: Promise<void> = this.lane().finally(() => this.lanes.delete(lane));
    this.lanes.add(lane);
  }

  /** Marks a pending CDR settled; null if it already was. */
  private settle(p: Pending): Pending | null {
    if (p.settled) return null;
    p.settled = true;
    if (p.timer) clearTimeout(p.timer);
    return p;
  }

  /** Appends the still unsettled CDRs to the spool; without a spool they fail with `cause`. */
  private toSpool(pendings: Pending[], cause: Error): void {
    const own = pendings.filter((p) => this.settle(p));
    if (own.length === 0) return;
    if (!this.spool) {
      for (const p of own) p.reject(cause);
      return;
    }
    this.spool.append(own.map((p) => rowOf(p.record))).then(
      () => {
        this.stats.spooled += own.length;
        // During an outage every callback spools: one line a second, not one per CDR.
        const count = this.spooledTally.add(own.length);
        if (count > 0) this.log.warn({ count, reason: cause.message, spoolDepth: this.spoolDepth }, 'CDRs spooled locally');
        for (const p of own) p.resolve('spooled');
        if (!this.replayTimer && !this.closed) this.scheduleReplay(this.replayBackoffMs);
      },
      (err: Error) => {
        for (const p of own) p.reject(err);
      },
    );
  }

  private scheduleReplay(delayMs: number): void {
    if (this.replayTimer) clearTimeout(this.replayTimer);
    this.replayTimer = setTimeout(() => void this.replayNow(), delayMs);
    this.replayTimer.unref();
  }

  /** Offers the spool to Postgres once; reschedules itself while anything is left. */
  async replayNow(): Promise<number> {
    if (!this.spool) return 0;
    this.replayTimer = null;
    try {
      // Counted as they are stored (insertIsolating): a replayNow() that joins a replay under way
      // shares its result, and rows set aside in rejected.ndjson are read but not stored.
      const before = this.stats.replayed;
      const replayed = await this.spool.replay((rows) => this.insertIsolating(rows));
      const stored = this.stats.replayed - before;
      this.replayBackoffMs = this.replayIntervalMs;
      if (stored > 0) this.log.info({ replayed: stored, spoolDepth: this.spoolDepth }, 'spooled CDRs stored in Postgres');
      if (this.spoolDepth > 0 && !this.closed && !this.replayTimer) this.scheduleReplay(this.replayIntervalMs);
      return replayed;
    } catch (err) {
      this.replayBackoffMs = Math.min(this.replayBackoffMs * 2, MAX_REPLAY_BACKOFF_MS);
      this.log.warn({ err: (err as Error).message, retryInMs: this.replayBackoffMs, spoolDepth: this.spoolDepth }, 'CDR spool replay failed; will retry');
      if (!this.closed) this.scheduleReplay(this.replayBackoffMs);
      return 0;
    }
  }

  /**
   * A batch of fresh CDRs, with a prepared INSERT when small, else with COPY. Neither has ON
   * CONFLICT: if Postgres refuses the batch for its data (a key that is already stored: a spool
   * replay got there first; or a value its text form does not take), the batch goes in again with
   * the JSON insert, which skips stored keys and cleans what it must. The statement is on its way
   * to Postgres when this returns (the connection is idle between batches).
   */
  private async insertFresh(conn: LaneConnection, batch: Pending[]): Promise<void> {
    try {
      await (batch.length <= MAX_PREPARED_ROWS ? this.insertPrepared(conn, batch) : this.copy(conn, batch));
    } catch (err) {
      if (!isDataError(err)) throw err;
      this.log.warn({ err: (err as Error).message, size: batch.length }, 'CDR batch refused by its insert; inserting it again with ON CONFLICT');
      await this.insert(batch.map((p) => rowOf(p.record)));
    }
  }

  /**
   * A small batch as a prepared INSERT of its size (parsed and planned once per connection), failed
   * after queryTimeoutMs. pg sends Parse (the first time), Bind, Execute and Sync in one write.
   */
  private async insertPrepared(conn: LaneConnection, batch: Pending[]): Promise<void> {
    const values = batch.length === 1 ? batch[0]!.values : batch.flatMap((p) => p.values);
    const { name, text } = preparedInsert(batch.length);
    await conn.client.query(withQueryTimeout({ name, text, values }, this.queryTimeoutMs));
  }

  /** The batch's lines as one COPY, failed after queryTimeoutMs (the lane then drops the connection). */
  private copy(conn: LaneConnection, batch: Pending[]): Promise<void> {
    let text = '';
    for (const p of batch) text += copyLine(p.values);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const done = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => done(new Error(`CDR COPY still unanswered after ${this.queryTimeoutMs} ms`)), this.queryTimeoutMs);
      conn.client.query(new PipelinedCopy(Buffer.from(text), done));
    });
  }

  private async insert(rows: CdrRow[]): Promise<void> {
    await this.pool.query(withQueryTimeout({ text: INSERT, values: [rowsJson(rows)] }, this.queryTimeoutMs));
  }

  /**
   * Inserts spooled rows. A row Postgres refuses for its data (SQLSTATE class 22, 23 or 54: isDataError) must not
   * block the spool forever: the chunk is retried row by row and each refused row is set aside in
   * the spool's `rejected.ndjson` (logged as an error). Any other failure (connection, missing
   * table…) throws, and the whole chunk is retried later.
   */
  private async insertIsolating(rows: CdrRow[]): Promise<void> {
    try {
      await this.insert(rows);
      this.stats.replayed += rows.length;
    } catch (err) {
      if (!isDataError(err)) throw err;
      for (const row of rows) {
        try {
          await this.insert([row]);
          this.stats.replayed++;
        } catch (rowErr) {
          if (!isDataError(rowErr)) throw rowErr;
          this.log.error({ err: rowErr, idempotencyKey: row.idempotency_key }, 'Postgres refuses a spooled CDR; set aside in the spool');
          await this.spool!.setAside(row, (rowErr as Error).message);
          this.stats.setAside++;
        }
      }
    }
  }

  /** Waits until every CDR handed over so far is committed, spooled or failed. */
  async flush(): Promise<void> {
    while (this.lanes.size > 0) await Promise.all(this.lanes);
  }

  /**
   * Stops taking CDRs into batches: waits up to `closeTimeoutMs` for what is queued or in flight,
   * spools whatever is still not committed, and closes the spool. Bounded even if Postgres hangs.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.replayTimer) clearTimeout(this.replayTimer);
    this.replayTimer = null;
    // Wait while something handed over is still neither committed nor spooled (a batch stuck on
    // a stalled server whose CDRs were all spooled by their deadlines is not waited for).
    const until = performance.now() + this.closeTimeoutMs;
    const open = () => [...this.current].some((b) => b.some((p) => !p.settled)) || this.queue.some((p) => !p.settled);
    while (this.lanes.size > 0 && open() && performance.now() < until) {
      await Promise.race([...this.lanes, new Promise((r) => setTimeout(r, 10))]);
    }
    const left = [...[...this.current].flat(), ...this.queue];
    this.queue = [];
    this.toSpool(left, new Error('CDR writer closed before the commit'));
    await this.spool?.close();
  }
}
