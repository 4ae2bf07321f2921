import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { DialRequest } from '../routing/dial/request.js';
import type { AgentEvent } from '../routing/dial/event.js';

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
  return {
    call_sid: key.callSid, endpoint: key.endpoint, flow_slug: key.flowSlug, attempt_key: req.attemptKey,
    tried: req.tried, candidates: req.candidates, base: plan.base, arrange: plan.arrange, rr_group: req.rrGroup,
    sticky_caller: req.sticky?.caller ?? null, sticky_since: req.sticky?.since ?? null,
    connected_caller: req.connected?.caller ?? null, connected_agent: req.connected?.agent ?? null,
    at: req.at, busy_expired: req.busyExpired,
  };
}

/**
 * One round trip and one transaction per request: dial_answer() gives the answer already given to
 * this attempt (then nothing is written), or else records what the request says and stores and
 * returns the numbers to offer. Its commit is asynchronous (see the function for why that is safe).
 */
let answerSql: string | undefined;

function answerQuery(req: DialRequest, preview: boolean): pg.QueryConfig {
  const values: unknown[] = Object.values(asDialRequest(req));
  answerSql ??= `SELECT dial_answer(ROW(${values.map((_, i) => `$${i + 1}`).join(', ')})::dial_request, $${values.length + 1}) AS numbers`;
  values.push(preview);
  // Prepared once per connection: Postgres parses and plans the call once.
  return { name: 'dial-answer', text: answerSql, values };
}

/** The numbers to offer for this attempt: stored, so that every poll of the attempt gets the same. */
export async function answerAttempt(pool: pg.Pool, req: DialRequest): Promise<string[]> {
  const { rows } = await pool.query<{ numbers: string[] | null }>(answerQuery(req, false));
  return rows[0]?.numbers ?? [];
}

const BATCH_SQL = 'SELECT idx, numbers FROM dial_answer_batch($1::json)';

interface Pending {
  req: DialRequest;
  resolve: (numbers: string[]) => void;
  reject: (err: Error) => void;
}

/**
 * `answerAttempt` in batches: one request is sent at once; those that arrive while it runs wait,
 * and go together in one statement (dial_answer_batch(), one transaction) when it is done. Each is
 * answered as it would be alone. Under load this saves Postgres a transaction and a statement per
 * request, and exoroute a round trip and the wake-up of a backend (bench/README.md). A batch that
 * fails as a whole is retried request by request, so that one bad request fails only itself.
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
  } = {},
): (req: DialRequest) => Promise<string[]> {
  const maxBatch = opts.maxBatch ?? 100;
  const queue: Pending[] = [];
  let running = false;

  async function settle(batch: Pending[]): Promise<void> {
    const started = performance.now();
    const observe = (ok: boolean) => opts.onBatch?.(batch.length, (performance.now() - started) / 1000, ok);
    if (batch.length === 1) {
      const p = batch[0]!;
      await answerAttempt(pool, p.req).then(
        (numbers) => {
          observe(true);
          p.resolve(numbers);
        },
        (err: Error) => {
          observe(false);
          p.reject(err);
        },
      );
      return;
    }
    const answered = await pool
      .query<{ idx: number; numbers: string[] | null }>({
        name: 'dial-answer-batch',
        text: BATCH_SQL,
        values: [JSON.stringify(batch.map((p) => asDialRequest(p.req)))],
      })
      .then((res) => res.rows, (err: Error) => {
        // e.g. Postgres down, or a deadlock with another instance's batch, which Postgres breaks
        opts.log?.warn({ err, requests: batch.length }, 'dial batch failed; answering its requests one by one');
        return null;
      });
    const ok = answered?.length === batch.length;
    observe(ok);
    if (ok) {
      for (const row of answered) batch[row.idx]!.resolve(row.numbers ?? []);
      return;
    }
    await Promise.all(batch.map((p) => answerAttempt(pool, p.req).then(p.resolve, p.reject)));
  }

  async function drain(): Promise<void> {
    running = true;
    while (queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      // settle() answers or rejects every request itself; anything else must not stall the queue
      await settle(batch).catch((err: Error) => batch.forEach((p) => p.reject(err)));
    }
    running = false;
  }

  return (req) =>
    new Promise<string[]>((resolve, reject) => {
      queue.push({ req, resolve, reject });
      if (!running) void drain();
    });
}

/**
 * The answer `answerAttempt` would give, changing nothing (simulation): the same function in a
 * transaction that is rolled back, told to read the round-robin position without taking it (a
 * sequence, which a rollback would not undo).
 */
export async function previewAttempt(pool: pg.Pool, req: DialRequest): Promise<string[]> {
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ numbers: string[] | null }>(answerQuery({ ...req, connected: null }, true));
    return rows[0]?.numbers ?? [];
  } finally {
    await client.query('ROLLBACK').catch((err: Error) => (failed = err));
    client.release(failed);
  }
}

/** What a dial event said about an agent (src/routing/dial/event.ts), kept: busy state, last dialed, last connected. */
export async function recordDialEvent(
  pool: pg.Pool,
  ev: AgentEvent & { agent: string; caller: string | null; at: Date },
): Promise<void> {
  await pool.query(
    `INSERT INTO agent_states (number, busy, busy_since, last_dialed_at, last_connected_at, updated_at)
     VALUES ($1, COALESCE($2, false), CASE WHEN $2 THEN $5::timestamptz END, CASE WHEN $3 THEN $5::timestamptz END, CASE WHEN $4 THEN $5::timestamptz END, $5)
     ON CONFLICT (number) DO UPDATE SET
       busy = COALESCE($2, agent_states.busy),
       busy_since = CASE WHEN $2 IS TRUE AND NOT agent_states.busy THEN $5::timestamptz WHEN $2 IS FALSE THEN NULL ELSE agent_states.busy_since END,
       last_dialed_at = CASE WHEN $3 THEN $5::timestamptz ELSE agent_states.last_dialed_at END,
       last_connected_at = CASE WHEN $4 THEN $5::timestamptz ELSE agent_states.last_connected_at END,
       updated_at = $5`,
    [ev.agent, ev.busy, ev.dialed, ev.answered, ev.at],
  );
  if (ev.answered && ev.caller) await recordConnection(pool, ev.caller, ev.agent, ev.at);
}

async function recordConnection(pool: pg.Pool, caller: string, agent: string, at: Date): Promise<void> {
  await pool.query(
    `INSERT INTO caller_agents (caller, agent, connected_at) VALUES ($1, $2, $3)
     ON CONFLICT (caller, agent) DO UPDATE SET connected_at = GREATEST(caller_agents.connected_at, EXCLUDED.connected_at)`,
    [caller, agent, at],
  );
}
