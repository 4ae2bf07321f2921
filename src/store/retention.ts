import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { withDeadline } from '../lib/deadline.js';
import { ADMIN_DEAD_CONNECTION_GRACE_MS, QUERY_TIMEOUT_MS, withQueryTimeout } from './database.js';

/**
 * Housekeeping of the tables that grow with traffic: CDRs and the refused-callback counts (whose
 * samples are CDRs) older than CDR_RETENTION_DAYS (when set), audit entries older than
 * AUDIT_RETENTION_DAYS (when set),
 * per-call dial state once its calls are long over, sticky-agent links older than any dial
 * group may look back, and agents' offers after a month. Deletes go in bounded batches with a pause between them, so no statement
 * runs long, holds many row locks or starves the callback path of connections.
 */

/** pg_try_advisory_lock key: one instance prunes at a time ('exor'; the migrator uses 72707369). */
export const RETENTION_LOCK_KEY = 0x65786f72;
/**
 * dial_calls only serve re-fetches during a call; two days is far beyond any call. dial_answers is no
 * longer written (migration 20261127000000) and is emptied the same way until a migration drops it.
 */
export const DIAL_STATE_MAX_AGE_MS = 2 * 86_400_000;
/** caller_agents serve sticky dial groups, whose lookbackDays is at most 365. */
export const CALLER_AGENT_MAX_AGE_MS = 366 * 86_400_000;
/** agent_offers serve an agent's recent offers and today's counts (GET /admin/agents). */
export const AGENT_OFFER_MAX_AGE_MS = 31 * 86_400_000;
/** Longest stop() waits for a run in progress: the shutdown has 10 s for everything (src/server.ts). */
const STOP_WAIT_MS = 1000;
/**
 * Postgres' bound (statement_timeout) on each statement of a run: a batch of 10,000 rows takes a
 * fraction of a second (README, *CDR retention*), a lock wait included this gives it 30 s. Past it,
 * the batch is cancelled (rolled back) and the run fails, to be tried again at the next interval.
 */
export const RETENTION_STATEMENT_TIMEOUT_MS = QUERY_TIMEOUT_MS;
/**
 * The bound on the lookup of the newest old CDR (CDR_MAX_OLD_ID), which reads every block range of
 * old CDRs: on a first run over a backlog of tens of millions of rows that takes minutes.
 */
export const CDR_MAX_OLD_ID_TIMEOUT_MS = 600_000;
/**
 * A run's session that sits this long between statements (its pauses are 100 ms) is ended by
 * Postgres, and the retention lock with it: its connection died without a word, and the run gave it
 * up (the statement's bound and a grace) but could not say so to Postgres. Otherwise the lock stayed
 * held until Postgres noticed the dead connection (15 minutes or more), and no instance pruned.
 */
export const RETENTION_IDLE_SESSION_MS = 10_000;
/**
 * The session's bounds for a run, and their reset for the connection's next user. idle_session_timeout
 * is Postgres 14's: on an older one the run goes without it (the lock then waits for Postgres to notice).
 */
const SESSION_BOUNDS = `SELECT set_config(name, CASE name WHEN 'statement_timeout' THEN $1 ELSE $2 END, false)
  FROM pg_settings WHERE name IN ('statement_timeout', 'idle_session_timeout')`;
const SESSION_RESET = `SELECT set_config(name, reset_val, false)
  FROM pg_settings WHERE name IN ('statement_timeout', 'idle_session_timeout', 'lock_timeout')`;

export interface PruneOptions {
  /** CDRs received more than this many days before `now` are deleted; 0 keeps every CDR. */
  retentionDays: number;
  /** Audit entries made more than this many days before `now` are deleted; 0 (or absent) keeps every one. */
  auditRetentionDays?: number;
  now?: Date;
  /** Rows per DELETE statement. */
  batchSize?: number;
  /** Pause between two DELETE statements. */
  pauseMs?: number;
  /** Stops between batches (shutdown); what was deleted so far stays deleted. */
  signal?: AbortSignal;
  /** Counted into as rows go (the result's `deleted`), so that a run that fails part-way still tells what it deleted. */
  deleted?: PruneResult['deleted'];
  /** Postgres' bound on each batch (RETENTION_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs?: number;
}

export interface PruneResult {
  /** false: another instance holds the lock and is pruning; nothing was done. */
  ran: boolean;
  deleted: {
    cdrs: number;
    callbackRefusals: number;
    dialCalls: number;
    dialAnswers: number;
    callerAgents: number;
    agentOffers: number;
    auditEntries: number;
  };
  /** DELETE statements issued, all tables together. */
  batches: number;
  /** BRIN ranges of cdrs summarized afresh after the delete. */
  brinRanges: number;
  /** The ranges a delete emptied could not be summarized afresh: the session's role does not own cdrs. */
  brinNotOwner: boolean;
  ms: number;
}

/**
 * CDR ids are allocated in commit order, which follows received_at except for CDRs replayed from
 * a spool. So: find the highest id among old CDRs once (the BRIN index on received_at keeps this a
 * scan of old block ranges only; OFFSET 0 stops the planner from walking the whole primary key
 * backwards instead), then walk the primary key upwards to it, never revisiting deleted rows.
 */
const CDR_MAX_OLD_ID = 'SELECT max(id) AS max FROM (SELECT id FROM cdrs WHERE received_at < $1 OFFSET 0) old';
const CDR_DELETE = `WITH doomed AS (
    SELECT id FROM cdrs WHERE id > $1 AND id <= $2 AND received_at < $3 ORDER BY id LIMIT $4
  ), gone AS (
    DELETE FROM cdrs USING doomed WHERE cdrs.id = doomed.id RETURNING cdrs.id, (cdrs.ctid::text::point)[0]::bigint AS block
  )
  SELECT count(*)::int AS n, max(id)::text AS last, array_agg(DISTINCT block / $5 * $5)::text[] AS ranges FROM gone`;

/**
 * Freed pages are refilled by new CDRs, and a BRIN range summary only ever widens: without help,
 * a range that held October and now holds December rows matches every query in between, and the
 * index decays into a full scan (measured: a one-day query read 29× the blocks after one prune and
 * refill). So the ranges a prune emptied are summarized afresh, from their live rows only.
 */
const BRIN_INDEX = 'cdrs_received_at_idx';
const BRIN_PAGES_PER_RANGE = `SELECT coalesce(
    (SELECT split_part(o, '=', 2)::int FROM unnest(c.reloptions) o WHERE o LIKE 'pages_per_range=%'), 128) AS ppr
  FROM pg_class c WHERE c.oid = to_regclass($1)`;
const BRIN_DESUMMARIZE = 'SELECT count(brin_desummarize_range(to_regclass($1), b)) FROM unnest($2::bigint[]) b';
const BRIN_SUMMARIZE = 'SELECT coalesce(sum(brin_summarize_range(to_regclass($1), b)), 0)::int AS n FROM unnest($2::bigint[]) b';

/** Small tables keyed by text: delete by row address (TID scan) after an indexed or bounded search. */
const byAge = (table: string, column: string) => `DELETE FROM ${table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${table} WHERE ${column} < $1 LIMIT $2))`;

/**
 * Summarizes the given BRIN ranges again. Both functions take a SHARE UPDATE EXCLUSIVE lock, which
 * (auto)vacuum also takes: wait for it a moment at most, and leave the rest to vacuum, which
 * summarizes unsummarized ranges itself. Both need the index's owner: for another role nothing is
 * done, and the emptied ranges keep their summaries (`notOwner`), which vacuum leaves alone.
 */
async function resummarize(query: Query, ranges: string[]): Promise<{ done: number; notOwner: boolean }> {
  let done = 0;
  let notOwner = false;
  await query("SET lock_timeout = '2s'");
  try {
    for (let i = 0; i < ranges.length; i += 100) {
      const chunk = ranges.slice(i, i + 100);
      await query(BRIN_DESUMMARIZE, [BRIN_INDEX, chunk]);
      done += (await query<{ n: number }>(BRIN_SUMMARIZE, [BRIN_INDEX, chunk])).rows[0]?.n ?? 0;
    }
  } catch (err) {
    // lock_not_available: vacuum summarizes what was desummarized. Not the index's owner (migrations
    // applied by another role): told to the operator (RetentionJob), whom only ownership helps.
    // Anything else fails the run, whose connection is then dropped, lock_timeout and all.
    const code = (err as { code?: string }).code ?? '';
    if (code === '42501') notOwner = true;
    else if (code !== '55P03') throw err;
  }
  await query('RESET lock_timeout');
  return { done, notOwner };
}

/** A statement of the run's session, given up by the client `grace` after Postgres' bound on it. */
type Query = <R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[], boundMs?: number) => Promise<pg.QueryResult<R>>;

const noneDeleted = (): PruneResult['deleted'] => ({
  cdrs: 0,
  callbackRefusals: 0,
  dialCalls: 0,
  dialAnswers: 0,
  callerAgents: 0,
  agentOffers: 0,
  auditEntries: 0,
});

/** Deletes what is past its retention, in batches; a no-op when another session holds the lock. */
export async function pruneOnce(pool: pg.Pool, opts: PruneOptions): Promise<PruneResult> {
  const t0 = performance.now();
  const now = opts.now ?? new Date();
  const batchSize = opts.batchSize ?? 10_000;
  const pauseMs = opts.pauseMs ?? 100;
  const statementMs = opts.statementTimeoutMs ?? RETENTION_STATEMENT_TIMEOUT_MS;
  const result: PruneResult = {
    ran: false,
    deleted: opts.deleted ?? noneDeleted(),
    batches: 0,
    brinRanges: 0,
    brinNotOwner: false,
    ms: 0,
  };
  // The lock is per session: take it, and run every statement, on one connection.
  const client = await pool.connect();
  let broken: Error | undefined;
  // A lost session (Postgres restarted, the backend terminated) is also emitted on the client, and
  // while it is checked out the pool does not listen: unheard, that event would end the process.
  // The statements fail with it; the run reports that first error, not the unlock's that follows.
  const lost = (err: Error) => {
    broken ??= err;
  };
  client.on('error', lost);
  // Postgres cancels a statement past its bound (statement_timeout, set for the session below). One
  // still unanswered a grace later is on a connection that died without a word (a failover, a NAT or
  // firewall dropping it): the client gives it up (pg's query_timeout), the run fails and the
  // connection is dropped. Otherwise the run waited for the kernel to give the connection up (about
  // 12 minutes with keepalive), holding a connection of the callbacks' pool, and the lock.
  let bound = statementMs;
  const query: Query = (text, values, boundMs = bound) =>
    client.query(withQueryTimeout({ text, ...(values ? { values } : {}) }, boundMs + ADMIN_DEAD_CONNECTION_GRACE_MS));
  const bounds = async (ms: number) => {
    await query(SESSION_BOUNDS, [String(ms), String(RETENTION_IDLE_SESSION_MS)], ms);
    bound = ms;
  };
  try {
    const { rows } = await query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [RETENTION_LOCK_KEY]);
    if (!rows[0]?.locked) return result;
    result.ran = true;
    let first = true;
    const pause = async () => {
      if (!first && pauseMs > 0) await sleep(pauseMs);
      first = false;
    };
    const drain = async (table: keyof PruneResult['deleted'], statement: string, params: unknown[]) => {
      while (!opts.signal?.aborted) {
        await pause();
        const { rowCount } = await query(statement, [...params, batchSize]);
        result.batches++;
        result.deleted[table] += rowCount ?? 0;
        if ((rowCount ?? 0) < batchSize) break;
      }
    };

    const cutoff = new Date(now.getTime() - opts.retentionDays * 86_400_000);
    let max: string | null | undefined;
    if (opts.retentionDays > 0) {
      await bounds(CDR_MAX_OLD_ID_TIMEOUT_MS);
      max = (await query<{ max: string | null }>(CDR_MAX_OLD_ID, [cutoff])).rows[0]?.max;
    }
    await bounds(statementMs);
    if (opts.retentionDays > 0) {
      const ppr = (await query<{ ppr: number }>(BRIN_PAGES_PER_RANGE, [BRIN_INDEX])).rows[0]?.ppr ?? 128;
      const emptied = new Set<string>();
      let after = '0';
      while (max !== null && max !== undefined && !opts.signal?.aborted) {
        await pause();
        const { rows: gone } = await query<{ n: number; last: string | null; ranges: string[] | null }>(CDR_DELETE, [after, max, cutoff, batchSize, ppr]);
        result.batches++;
        const n = gone[0]?.n ?? 0;
        result.deleted.cdrs += n;
        for (const r of gone[0]?.ranges ?? []) emptied.add(r);
        if (n < batchSize || !gone[0]?.last) break;
        after = gone[0].last;
      }
      if (emptied.size > 0) {
        const { done, notOwner } = await resummarize(query, [...emptied]);
        result.brinRanges = done;
        result.brinNotOwner = notOwner;
      }
      await drain('callbackRefusals', byAge('callback_refusals', 'minute'), [cutoff]);
    }
    const dialCutoff = new Date(now.getTime() - DIAL_STATE_MAX_AGE_MS);
    await drain('dialAnswers', byAge('dial_answers', 'created_at'), [dialCutoff]);
    await drain('dialCalls', byAge('dial_calls', 'created_at'), [dialCutoff]);
    await drain('callerAgents', byAge('caller_agents', 'connected_at'), [new Date(now.getTime() - CALLER_AGENT_MAX_AGE_MS)]);
    await drain('agentOffers', byAge('agent_offers', 'offered_at'), [new Date(now.getTime() - AGENT_OFFER_MAX_AGE_MS)]);
    // By the index on `at`. A phone's availability change looks a day back in the trail for its
    // call's repeats (src/store/agents.ts): the shortest retention, 1 day, keeps that day.
    const auditDays = opts.auditRetentionDays ?? 0;
    if (auditDays > 0) await drain('auditEntries', byAge('audit_entries', 'at'), [new Date(now.getTime() - auditDays * 86_400_000)]);
    // Only after a run that went through: a failed one drops its connection, which ends the session
    // and its lock (an unlock sent on a dead connection would wait behind the statement given up).
    await query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK_KEY]);
    await query(SESSION_RESET);
  } catch (err) {
    broken ??= err as Error;
    throw broken;
  } finally {
    // A connection that failed mid-way is dropped, which also frees the lock (unlock did not run).
    client.removeListener('error', lost);
    client.release(broken);
    result.ms = performance.now() - t0;
  }
  return result;
}

export interface RetentionStats {
  runs: number;
  failures: number;
  /** Rows deleted since start, per table. */
  deleted: PruneResult['deleted'];
  lastSuccessAt: Date | null;
}

/**
 * Runs pruneOnce shortly after start and then every `intervalMs` (hourly), on whichever instance
 * gets the advisory lock. Timers are unref'd; stop() waits for a run in progress, up to STOP_WAIT_MS.
 */
export class RetentionJob {
  readonly stats: RetentionStats = {
    runs: 0,
    failures: 0,
    deleted: noneDeleted(),
    lastSuccessAt: null,
  };
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly abort = new AbortController();
  /** Whether the warning that cdrs' BRIN ranges cannot be summarized afresh was logged (once a run of the service). */
  private brinWarned = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly opts: {
      retentionDays: number;
      auditRetentionDays?: number;
      intervalMs?: number;
      startDelayMs?: number;
      batchSize?: number;
      pauseMs?: number;
      statementTimeoutMs?: number;
    },
  ) {}

  start(): void {
    if (this.stopped || this.timer) return;
    this.schedule(this.opts.startDelayMs ?? 15_000);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.run().finally(() => {
        this.running = null;
        this.schedule(this.opts.intervalMs ?? 3_600_000);
      });
    }, delay);
    this.timer.unref();
  }

  /** One prune now; failures are logged and counted, never thrown. */
  async run(): Promise<void> {
    const deleted = noneDeleted();
    try {
      const r = await pruneOnce(this.pool, {
        retentionDays: this.opts.retentionDays,
        ...(this.opts.auditRetentionDays !== undefined ? { auditRetentionDays: this.opts.auditRetentionDays } : {}),
        signal: this.abort.signal,
        deleted,
        ...(this.opts.batchSize !== undefined ? { batchSize: this.opts.batchSize } : {}),
        ...(this.opts.pauseMs !== undefined ? { pauseMs: this.opts.pauseMs } : {}),
        ...(this.opts.statementTimeoutMs !== undefined ? { statementTimeoutMs: this.opts.statementTimeoutMs } : {}),
      });
      if (!r.ran) {
        this.log.debug('retention: another instance is pruning');
        return;
      }
      this.stats.runs++;
      this.stats.lastSuccessAt = new Date();
      if (r.brinNotOwner && !this.brinWarned) {
        this.brinWarned = true;
        this.log.warn(
          "retention: the BRIN index on cdrs' received_at was not summarized afresh where old CDRs were deleted: this database role is not the owner of cdrs (the migrations were applied by another role). Those block ranges keep their old summaries, which only widen as new CDRs fill them, so searches by time read more and more of the table: make this role the owner (ALTER TABLE cdrs OWNER TO <this role>)",
        );
      }
      const total = Object.values(r.deleted).reduce((a, b) => a + b, 0);
      if (total > 0) this.log.info({ deleted: r.deleted, batches: r.batches, ms: Math.round(r.ms) }, 'retention: old rows deleted');
    } catch (err) {
      this.stats.failures++;
      this.log.error({ err, deleted }, 'retention: prune failed; next try at the next interval');
    } finally {
      // Deleted is deleted, whether or not the run got to its end.
      for (const k of Object.keys(deleted) as Array<keyof PruneResult['deleted']>) this.stats.deleted[k] += deleted[k];
    }
  }

  /**
   * Stops the schedule; a run in progress stops after its batch, waited for at most
   * STOP_WAIT_MS. A batch on a connection that died without a word (a failover, a NAT or firewall
   * dropping it) is given up only after its bound and a grace (35 s): waited for, it held the
   * shutdown until the forced exit. A batch left so is rolled back; the next run deletes it again.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.running) return;
    await withDeadline(this.running, STOP_WAIT_MS, (ms) => `retention run still waiting for Postgres ${ms} ms after stop`, { unref: true }).catch(
      (err: Error) => this.log.warn({ err: err.message }, 'retention: run left unfinished at shutdown'),
    );
  }
}
