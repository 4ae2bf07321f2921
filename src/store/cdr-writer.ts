import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';

/** One CDR as the callback path produces it (columns of table `cdrs`). */
export interface CdrRecord {
  receivedAt: Date;
  endpoint: string;
  flowSlug: string | null;
  callSid: string | null;
  callFrom: string | null;
  callFromRaw: string | null;
  callTo: string | null;
  callToRaw: string | null;
  direction: string | null;
  callStatus: string | null;
  callType: string | null;
  digits: string | null;
  customField: string | null;
  dialCallStatus: string | null;
  dialWhomNumber: string | null;
  legs: unknown;
  params: Record<string, string>;
  decision: unknown;
  matchedRule: string | null;
  outcome: string;
  reason: string | null;
  httpStatus: number;
  responseBody: string | null;
  handlingMs: number;
  attempt: number;
  idempotencyKey: string;
}

const COLUMNS: Array<[keyof CdrRecord, string]> = [
  ['receivedAt', 'received_at'], ['endpoint', 'endpoint'], ['flowSlug', 'flow_slug'], ['callSid', 'call_sid'],
  ['callFrom', 'call_from'], ['callFromRaw', 'call_from_raw'], ['callTo', 'call_to'], ['callToRaw', 'call_to_raw'],
  ['direction', 'direction'], ['callStatus', 'call_status'], ['callType', 'call_type'], ['digits', 'digits'],
  ['customField', 'custom_field'], ['dialCallStatus', 'dial_call_status'], ['dialWhomNumber', 'dial_whom_number'],
  ['legs', 'legs'], ['params', 'params'], ['decision', 'decision'], ['matchedRule', 'matched_rule'], ['outcome', 'outcome'],
  ['reason', 'reason'], ['httpStatus', 'http_status'], ['responseBody', 'response_body'], ['handlingMs', 'handling_ms'],
  ['attempt', 'attempt'], ['idempotencyKey', 'idempotency_key'],
];
const COLUMN_LIST = COLUMNS.map(([, c]) => c).join(', ');
/**
 * The whole batch travels as one JSON parameter; Postgres turns it into rows. One statement, one
 * commit, however many CDRs. A replayed CDR (same idempotency key) is skipped.
 */
const INSERT = `INSERT INTO cdrs (${COLUMN_LIST})
  SELECT ${COLUMN_LIST} FROM json_populate_recordset(NULL::cdrs, $1::json)
  ON CONFLICT (idempotency_key) DO NOTHING`;

/** Postgres text refuses NUL and lone surrogates: drop the one, make the other well formed. */
const cleanText = (_key: string, v: unknown) => (typeof v === 'string' ? v.replaceAll('\u0000', '').toWellFormed() : v);
const NEEDS_CLEANING = /\\u0000|\\ud[89a-f]/i;

/** JSON text of a batch with the table's column names. */
function batchJson(records: CdrRecord[]): string {
  const rows = records.map((r) => {
    const row: Record<string, unknown> = {};
    for (const [key, column] of COLUMNS) row[column] = r[key];
    return row;
  });
  const json = JSON.stringify(rows);
  return NEEDS_CLEANING.test(json) ? JSON.stringify(rows, cleanText) : json;
}

interface Pending {
  record: CdrRecord;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Group commit for CDRs: callbacks hand their CDR to `write()` and wait; whatever arrives while
 * one batch is being committed goes into the next. Under load many callbacks share one insert and
 * one commit, so the cost per callback stays far below a round trip.
 */
export class CdrWriter {
  private queue: Pending[] = [];
  private inFlight: Promise<void> | null = null;
  private closed = false;
  /** Counters for metrics and tests. */
  readonly stats = { batches: 0, records: 0, failures: 0, lastBatchSize: 0, spooled: 0, replayed: 0 };
  /** Called after every batch insert attempt (metrics): its size, seconds taken, and whether it committed. */
  onBatch: ((size: number, seconds: number, ok: boolean) => void) | null = null;

  /** CDRs waiting in the local spool for Postgres. */
  get spoolDepth(): number {
    return 0;
  }

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly maxBatch = 2000,
  ) {}

  /** Resolves when the CDR is committed; rejects when its batch could not be. */
  write(record: CdrRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error('CDR writer is closed'));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ record, resolve, reject });
      if (!this.inFlight) this.inFlight = this.drain();
    });
  }

  private async drain(): Promise<void> {
    // Let the callbacks that arrived in the same tick join the first batch.
    await new Promise<void>((r) => setImmediate(r));
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      const started = performance.now();
      try {
        await this.pool.query(INSERT, [batchJson(batch.map((p) => p.record))]);
        this.onBatch?.(batch.length, (performance.now() - started) / 1000, true);
        this.stats.batches++;
        this.stats.records += batch.length;
        this.stats.lastBatchSize = batch.length;
        for (const p of batch) p.resolve();
      } catch (err) {
        this.stats.failures++;
        this.onBatch?.(batch.length, (performance.now() - started) / 1000, false);
        this.log.error({ err, size: batch.length }, 'CDR batch insert failed');
        for (const p of batch) p.reject(err as Error);
      }
    }
    this.inFlight = null;
  }

  /** Waits until every CDR handed over so far is committed (or failed). */
  async flush(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }
}
