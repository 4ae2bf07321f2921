import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { DialOffer, DialRequest } from '../routing/dial/request.js';
import type { AgentEvent } from '../routing/dial/event.js';
import { Tally } from '../lib/tally.js';
import { isoInstant } from '../lib/iso-instant.js';
import { QUERY_TIMEOUT_MS, withQueryTimeout } from './database.js';

/**
 * Dial state in Postgres, marshalled and batched: src/routing/dial/ decides what to ask, the
 * functions in prisma/functions/dial_answer.sql answer it (round-robin positions, the order
 * chosen for a call and the numbers tried, answers per attempt, busy agents), and this file only
 * carries requests there and back.
 */

/**
 * A request as the SQL type dial_request has it: its attributes by name and in its order
 * (test/store/dial-sql-source.test.ts holds the two together). A batch sends them by name, read by
 * json_populate_recordset; a request alone sends them by position, as typed parameters, which
 * Postgres reads without parsing JSON.
 */
export function asDialRequest(req: DialRequest) {
  const { key, plan } = req;
  // Instants as their JSON text (what JSON.stringify would write, and a timestamptz Postgres reads
  // alike): a Date's toJSON() takes a batch's JSON.stringify off V8's fast path (bench/HISTORY.md).
  const stickySince = req.sticky ? isoInstant(req.sticky.since) : null;
  return {
    call_sid: key.callSid,
    endpoint: key.endpoint,
    flow_slug: key.flowSlug,
    attempt_key: req.attemptKey,
    tried: req.tried,
    candidates: req.candidates,
    base: plan.base,
    arrange: plan.arrange,
    rr_group: req.rrGroup,
    sticky_caller: req.sticky?.caller ?? null,
    sticky_since: stickySince,
    connected_caller: req.connected?.caller ?? null,
    connected_agent: req.connected?.agent ?? null,
    at: isoInstant(req.at),
    busy_expired: isoInstant(req.busyExpired),
  };
}

/** The request's tiers and reported attempt as the SQL type dial_extra has them: by name and in its order. */
export function asDialExtra(req: DialRequest) {
  const tiers = req.extra?.tiers ?? null;
  const reported = req.extra?.reported ?? null;
  return {
    tier_ends: tiers?.map((t) => t.end) ?? null,
    tier_arranges: tiers?.map((t) => t.arrange) ?? null,
    tier_rr_groups: tiers?.map((t) => t.rrGroup) ?? null,
    tier_sticky_since: tiers?.map((t) => (t.stickySince ? isoInstant(t.stickySince) : null)) ?? null,
    reported_agent: reported?.agent ?? null,
    reported_status: reported?.status ?? null,
    reported_group: reported?.group ?? null,
    wrap_up_seconds: reported?.pacing.wrapUpSeconds ?? null,
    max_missed_offers: reported?.pacing.maxMissedOffers ?? null,
    missed_pause_seconds: reported?.pacing.missedPauseSeconds ?? null,
    tier_groups: req.extra?.tierGroups ?? null,
  };
}

/**
 * One request of a batch as dial_offer_batch() reads it (the SQL type dial_batch_request): one flat
 * object, the attributes of dial_request and, when the request has tiers or reports an attempt, those
 * of dial_extra; else (most requests) only its tier_groups. Flat, because Postgres lexes a nested
 * object twice. Attributes that are null are left out (json_populate_recordset reads them as NULL),
 * and arrays go as Postgres array literals in JSON strings (`"{a,b}"`, read by array_in): a JSON
 * array is lexed three times (the parameter's check, the batch, then the array for its elements),
 * which cost Postgres more than the rest of the batch's JSON.
 */
function asBatchItem(req: DialRequest): Record<string, unknown> {
  const all: Partial<ReturnType<typeof asDialRequest> & ReturnType<typeof asDialExtra>> = asDialRequest(req);
  if (req.extra?.tiers || req.extra?.reported) Object.assign(all, asDialExtra(req));
  else if (req.extra?.tierGroups) all.tier_groups = req.extra.tierGroups;
  const item: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(all)) {
    if (v !== null) item[k] = Array.isArray(v) ? arrayLiteral(v) : v;
  }
  return item;
}

/** An element array_in reads as it is: not empty, not NULL, none of `{},"\` and no white space. */
const PLAIN_ELEMENT = /^(?!null$)[^\s{},"\\]+$/i;

/** Postgres' text form of an array of text, numbers or instants (ISO text), NULLs kept. */
export function arrayLiteral(xs: readonly (string | number | null)[]): string {
  const elements = xs.map((x) => {
    if (x === null) return 'NULL';
    const text = String(x);
    return PLAIN_ELEMENT.test(text) ? text : `"${text.replace(/["\\]/g, '\\$&')}"`;
  });
  return `{${elements.join(',')}}`;
}

/**
 * Postgres' errors for a call that does not fit the dial functions it has: a composite it cannot
 * cast to their type (42846: an attribute added or taken away), no function taking these
 * parameters (42883), no such type (42704). They come when another version of exoroute has
 * migrated the database (the next one in a rolling upgrade, README, Upgrading), and every call
 * fails so until this instance is restarted on that version: the error says so.
 */
const OTHER_VERSION_CODES = new Set(['42846', '42883', '42704']);

export class DialFunctionsOfAnotherVersion extends Error {
  override name = 'DialFunctionsOfAnotherVersion';
}

function otherVersionSaid(err: unknown): never {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !OTHER_VERSION_CODES.has(code)) throw err;
  throw new DialFunctionsOfAnotherVersion(
    `the dial functions in Postgres are not those this version of exoroute calls (${(err as Error).message}): another version migrated the database; restart this instance on that version (README, Upgrading)`,
    { cause: err },
  );
}

/**
 * One round trip and one transaction per request: dial_offer() gives the answer already given to
 * this attempt (then nothing is written), or else records what the request says and stores and
 * returns the numbers to offer. Its commit is asynchronous (see the function for why that is safe).
 */
let answerSql: string | undefined;

function answerQuery(req: DialRequest, preview: boolean, queryTimeoutMs = QUERY_TIMEOUT_MS): pg.QueryConfig {
  const request: unknown[] = Object.values(asDialRequest(req));
  const extra: unknown[] = Object.values(asDialExtra(req));
  const row = (from: number, n: number) => Array.from({ length: n }, (_, i) => `$${from + i}`).join(', ');
  answerSql ??=
    `SELECT dial_offer(ROW(${row(1, request.length)})::dial_request, ROW(${row(request.length + 1, extra.length)})::dial_extra, ` +
    `$${request.length + extra.length + 1}) AS answer`;
  // Prepared once per connection: Postgres parses and plans the call once.
  return withQueryTimeout({ name: 'dial-offer', text: answerSql, values: [...request, ...extra, preview] }, queryTimeoutMs);
}

/** The answer for this attempt: stored, so that every poll of the attempt gets the same numbers. */
export async function offerAttempt(pool: pg.Pool, req: DialRequest, queryTimeoutMs = QUERY_TIMEOUT_MS): Promise<DialOffer> {
  const { rows } = await pool.query<{ answer: DialOffer | null }>(answerQuery(req, false, queryTimeoutMs)).catch(otherVersionSaid);
  return rows[0]?.answer ?? { numbers: [] };
}

/** The numbers alone. */
export async function answerAttempt(pool: pg.Pool, req: DialRequest): Promise<string[]> {
  return (await offerAttempt(pool, req)).numbers;
}

const BATCH_SQL = 'SELECT idx, answer FROM dial_offer_batch($1::json)';

interface Pending {
  req: DialRequest;
  /** performance.now() past which the caller no longer waits for the answer (it answered without it) */
  until: number;
  resolve: (answer: DialOffer) => void;
  reject: (err: Error) => void;
}

/** A request whose caller stopped waiting before it was sent: it is not sent at all. */
export class DialRequestAbandoned extends Error {}
const abandoned = () => new DialRequestAbandoned('not sent: the callback stopped waiting for it');

/**
 * `answerAttempt` in batches: one request is sent at once; those that arrive while it runs wait,
 * and go together in one statement (dial_offer_batch(), one transaction) when it is done. Each is
 * answered as it would be alone. Under load this saves Postgres a transaction and a statement per
 * request, and exoroute a round trip and the wake-up of a backend (bench/README.md). A batch that
 * fails as a whole is retried request by request (those still waited for), so that one bad request fails only itself. A
 * request still queued `waitMs` after it was handed over (its caller has answered without it) is
 * not sent: it is rejected with DialRequestAbandoned.
 */
export function dialAnswerer(
  pool: pg.Pool,
  opts: {
    maxBatch?: number;
    log?: Logger;
    /**
     * After each statement, a request alone or a batch (not the one-by-one retries of a failed
     * batch): its requests, the seconds it took, and whether it answered them. For metrics.
     */
    onBatch?: (size: number, seconds: number, ok: boolean) => void;
    /** QUERY_TIMEOUT_MS, unless told (tests) */
    queryTimeoutMs?: number;
  } = {},
): (req: DialRequest, waitMs?: number) => Promise<DialOffer> {
  const maxBatch = opts.maxBatch ?? 100;
  const queryTimeoutMs = opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS;
  const queue: Pending[] = [];
  let running = false;
  // While Postgres is down every batch fails (each of its callbacks is answered onError and says so
  // in its CDR and log line): one warning a second, with the batches failed since the last.
  const failedBatches = new Tally();

  async function settle(batch: Pending[]): Promise<void> {
    const started = performance.now();
    const observe = (ok: boolean) => opts.onBatch?.(batch.length, (performance.now() - started) / 1000, ok);
    if (batch.length === 1) {
      const p = batch[0]!;
      await offerAttempt(pool, p.req, queryTimeoutMs).then(
        (answer) => {
          observe(true);
          p.resolve(answer);
        },
        (err: Error) => {
          observe(false);
          p.reject(err);
        },
      );
      return;
    }
    const answered = await pool
      .query<{ idx: number; answer: DialOffer | null }>(
        withQueryTimeout({ name: 'dial-offer-batch', text: BATCH_SQL, values: [JSON.stringify(batch.map((p) => asBatchItem(p.req)))] }, queryTimeoutMs),
      )
      .then(
        (res) => res.rows,
        (err: Error) => {
          // e.g. Postgres down, or a deadlock with another instance's batch, which Postgres breaks
          const batchesFailed = failedBatches.add();
          if (batchesFailed > 0) opts.log?.warn({ err, requests: batch.length, batchesFailed }, 'dial batch failed; answering its requests one by one');
          return null;
        },
      );
    const ok = answered?.length === batch.length;
    observe(ok);
    if (ok) {
      for (const row of answered) batch[row.idx]!.resolve(row.answer ?? { numbers: [] });
      return;
    }
    // Not for those whose callers stopped waiting while the batch ran (up to queryTimeoutMs when it was given up).
    const now = performance.now();
    await Promise.all(batch.map((p) => (p.until > now ? offerAttempt(pool, p.req, queryTimeoutMs).then(p.resolve, p.reject) : p.reject(abandoned()))));
  }

  async function drain(): Promise<void> {
    running = true;
    while (queue.length > 0) {
      // Those whose callbacks already answered without them (their budget ran out while a statement
      // before them was held) are dropped: sent late, they took turns of a rotation and wrote the dial
      // state of calls that were answered onError, and stayed in memory for as long as the hold lasted.
      const now = performance.now();
      const batch = queue.splice(0, maxBatch).filter((p) => {
        if (p.until > now) return true;
        p.reject(abandoned());
        return false;
      });
      if (batch.length === 0) continue;
      // settle() answers or rejects every request itself; anything else must not stall the queue
      await settle(batch).catch((err: Error) => {
        for (const p of batch) p.reject(err);
      });
    }
    running = false;
  }

  return (req, waitMs = Infinity) =>
    new Promise<DialOffer>((resolve, reject) => {
      queue.push({ req, until: performance.now() + waitMs, resolve, reject });
      if (!running) void drain();
    });
}

/**
 * The answer `answerAttempt` would give, changing nothing (simulation): the same function in a
 * transaction that is rolled back, told to read the round-robin position without taking it (a
 * sequence, which a rollback would not undo).
 */
export async function previewAttempt(pool: pg.Pool, req: DialRequest): Promise<DialOffer> {
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ answer: DialOffer | null }>(answerQuery({ ...req, connected: null }, true)).catch(otherVersionSaid);
    return rows[0]?.answer ?? { numbers: [] };
  } finally {
    await client.query('ROLLBACK').catch((err: Error) => (failed = err));
    client.release(failed);
  }
}

/** What recording a dial event did to the agent's offer in this call: started it, or learned how it ended. */
export interface DialEventEffect {
  offered?: boolean;
  outcome?: string;
}

/**
 * What a dial event said about an agent (src/routing/dial/event.ts), kept in one statement
 * (dial_agent_event() in prisma/functions/dial_answer.sql): busy state and the call, last dialed,
 * last connected, and the offer in this call through its flow with how it ended (misses, pauses, wrap-up).
 */
export async function recordDialEvent(
  pool: pg.Pool,
  ev: AgentEvent & {
    agent: string;
    callSid: string | null;
    caller: string | null;
    at: Date;
    group: string | null;
    /** the flow that offered the agent (the events URL's `flow`); null: the agent's latest offer in the call */
    flow: string | null;
    ringSeconds: number | null;
    /** a parallel ring's leg that ends unanswered sooner than this was cut short (cancelled), no miss; null: not a parallel ring */
    earlySeconds: number | null;
    pacing: { wrapUpSeconds: number; maxMissedOffers: number; missedPauseSeconds: number };
    /** a leg begun before this counts as over (busyExpiredAt): a free leaves the agent busy on another call's leg begun since */
    busyExpired: Date;
  },
  queryTimeoutMs = QUERY_TIMEOUT_MS,
): Promise<DialEventEffect> {
  const { rows } = await pool
    .query<{ effect: DialEventEffect }>(
      withQueryTimeout(
        {
          name: 'dial-agent-event',
          text: 'SELECT dial_agent_event($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) AS effect',
          values: [
            ev.agent,
            ev.callSid,
            ev.busy,
            ev.dialed,
            ev.answered,
            ev.ended,
            ev.caller,
            ev.at,
            ev.group,
            ev.ringSeconds,
            ev.pacing.wrapUpSeconds,
            ev.pacing.maxMissedOffers,
            ev.pacing.missedPauseSeconds,
            ev.flow,
            ev.earlySeconds,
            ev.busyExpired,
          ],
        },
        queryTimeoutMs,
      ),
    )
    .catch(otherVersionSaid);
  return rows[0]?.effect ?? {};
}
