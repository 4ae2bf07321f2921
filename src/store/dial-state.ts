import type pg from 'pg';
import type { AgentFacts } from '../routing/dial.js';

/**
 * Per-call dial state and agent facts in Postgres, shared by every instance: round-robin
 * positions, the order chosen for a call and the numbers tried, answers per attempt, and the
 * busy/free state Exotel's dial events report.
 */

export async function agentFacts(pool: pg.Pool, numbers: string[]): Promise<Map<string, AgentFacts>> {
  const facts = new Map<string, AgentFacts>();
  if (numbers.length === 0) return facts;
  const { rows } = await pool.query<{ number: string; busy: boolean; busy_since: Date | null; last_dialed_at: Date | null }>(
    'SELECT number, busy, busy_since, last_dialed_at FROM agent_states WHERE number = ANY($1::text[])',
    [numbers],
  );
  for (const r of rows) {
    facts.set(r.number, { busy: r.busy, busySince: r.busy_since?.getTime() ?? null, lastDialedAt: r.last_dialed_at?.getTime() ?? null });
  }
  return facts;
}

/** Takes the group's next round-robin position (atomic, so instances share the rotation). */
export async function nextRoundRobin(pool: pg.Pool, groupSlug: string): Promise<number> {
  const { rows } = await pool.query<{ position: string }>(
    'UPDATE dial_groups SET rr_position = rr_position + 1 WHERE slug = $1 RETURNING rr_position - 1 AS position',
    [groupSlug],
  );
  return Number(rows[0]?.position ?? 0);
}

/** The caller's most recently connected agent among `agents` within the lookback. */
export async function stickyAgent(pool: pg.Pool, caller: string, agents: string[], lookbackDays: number, now: Date): Promise<string | null> {
  const { rows } = await pool.query<{ agent: string }>(
    `SELECT agent FROM caller_agents WHERE caller = $1 AND agent = ANY($2::text[]) AND connected_at > $3
     ORDER BY connected_at DESC LIMIT 1`,
    [caller, agents, new Date(now.getTime() - lookbackDays * 86_400_000)],
  );
  return rows[0]?.agent ?? null;
}

export interface CallKey {
  callSid: string;
  endpoint: string;
  flowSlug: string;
}

/**
 * Records numbers the request says were tried, and returns the call's state: the order fixed at
 * its first request (null if this is the first) and every number tried so far.
 */
export async function recordTried(pool: pg.Pool, key: CallKey, tried: string[]): Promise<{ order: string[] | null; tried: string[] }> {
  const { rows } = await pool.query<{ order: string[] | null; tried: string[] }>(
    `INSERT INTO dial_calls (call_sid, endpoint, flow_slug, "order", tried) VALUES ($1, $2, $3, NULL, $4::text[])
     ON CONFLICT (call_sid, endpoint, flow_slug) DO UPDATE
       SET tried = ARRAY(SELECT DISTINCT x FROM unnest(dial_calls.tried || EXCLUDED.tried) AS x)
     RETURNING "order", tried`,
    [key.callSid, key.endpoint, key.flowSlug, tried],
  );
  return { order: rows[0]!.order, tried: rows[0]!.tried ?? [] };
}

/** Fixes the call's order once; a concurrent first request may have fixed it already: that one wins. */
export async function fixOrder(pool: pg.Pool, key: CallKey, order: string[]): Promise<string[]> {
  const { rows } = await pool.query<{ order: string[] }>(
    `UPDATE dial_calls SET "order" = COALESCE("order", $4::text[]) WHERE call_sid = $1 AND endpoint = $2 AND flow_slug = $3 RETURNING "order"`,
    [key.callSid, key.endpoint, key.flowSlug, order],
  );
  return rows[0]?.order ?? order;
}

/** Stores the answer for this attempt unless one exists; returns the answer that stands. */
export async function settleAnswer(pool: pg.Pool, key: CallKey, attemptKey: string, numbers: string[]): Promise<string[]> {
  const inserted = await pool.query<{ numbers: string[] }>(
    `INSERT INTO dial_answers (call_sid, endpoint, flow_slug, attempt_key, numbers) VALUES ($1, $2, $3, $4, $5::text[])
     ON CONFLICT DO NOTHING RETURNING numbers`,
    [key.callSid, key.endpoint, key.flowSlug, attemptKey, numbers],
  );
  if (inserted.rows[0]) return inserted.rows[0].numbers;
  const existing = await pool.query<{ numbers: string[] }>(
    'SELECT numbers FROM dial_answers WHERE call_sid = $1 AND endpoint = $2 AND flow_slug = $3 AND attempt_key = $4',
    [key.callSid, key.endpoint, key.flowSlug, attemptKey],
  );
  return existing.rows[0]?.numbers ?? numbers;
}

export async function existingAnswer(pool: pg.Pool, key: CallKey, attemptKey: string): Promise<string[] | null> {
  const { rows } = await pool.query<{ numbers: string[] }>(
    'SELECT numbers FROM dial_answers WHERE call_sid = $1 AND endpoint = $2 AND flow_slug = $3 AND attempt_key = $4',
    [key.callSid, key.endpoint, key.flowSlug, attemptKey],
  );
  return rows[0]?.numbers ?? null;
}

/** A dial event for an agent: busy (being called / on a call) or free; Answered connects the caller. */
export async function recordDialEvent(
  pool: pg.Pool,
  ev: { agent: string; status: string | null; eventType: string | null; caller: string | null; at: Date },
): Promise<void> {
  const busy = ev.status === 'busy' ? true : ev.status === 'free' ? false : null;
  const answered = (ev.eventType ?? '').toLowerCase() === 'answered';
  const dialed = busy === true && (ev.eventType === null || ev.eventType.toLowerCase() === 'dial');
  await pool.query(
    `INSERT INTO agent_states (number, busy, busy_since, last_dialed_at, last_connected_at, updated_at)
     VALUES ($1, COALESCE($2, false), CASE WHEN $2 THEN $5::timestamptz END, CASE WHEN $3 THEN $5::timestamptz END, CASE WHEN $4 THEN $5::timestamptz END, $5)
     ON CONFLICT (number) DO UPDATE SET
       busy = COALESCE($2, agent_states.busy),
       busy_since = CASE WHEN $2 IS TRUE AND NOT agent_states.busy THEN $5::timestamptz WHEN $2 IS FALSE THEN NULL ELSE agent_states.busy_since END,
       last_dialed_at = CASE WHEN $3 THEN $5::timestamptz ELSE agent_states.last_dialed_at END,
       last_connected_at = CASE WHEN $4 THEN $5::timestamptz ELSE agent_states.last_connected_at END,
       updated_at = $5`,
    [ev.agent, busy, dialed, answered, ev.at],
  );
  if (answered && ev.caller) await recordConnection(pool, ev.caller, ev.agent, ev.at);
}

export async function recordConnection(pool: pg.Pool, caller: string, agent: string, at: Date): Promise<void> {
  await pool.query(
    `INSERT INTO caller_agents (caller, agent, connected_at) VALUES ($1, $2, $3)
     ON CONFLICT (caller, agent) DO UPDATE SET connected_at = GREATEST(caller_agents.connected_at, EXCLUDED.connected_at)`,
    [caller, agent, at],
  );
}

/** The round-robin position the next call would take, without taking it (simulation). */
export async function peekRoundRobin(pool: pg.Pool, groupSlug: string): Promise<number> {
  const { rows } = await pool.query<{ position: string }>('SELECT rr_position AS position FROM dial_groups WHERE slug = $1', [groupSlug]);
  return Number(rows[0]?.position ?? 0);
}

/** The call's state as recordTried would leave it, without writing (simulation). */
export async function peekCall(pool: pg.Pool, key: CallKey, tried: string[]): Promise<{ order: string[] | null; tried: string[] }> {
  const { rows } = await pool.query<{ order: string[] | null; tried: string[] | null }>(
    'SELECT "order", tried FROM dial_calls WHERE call_sid = $1 AND endpoint = $2 AND flow_slug = $3',
    [key.callSid, key.endpoint, key.flowSlug],
  );
  return { order: rows[0]?.order ?? null, tried: [...new Set([...(rows[0]?.tried ?? []), ...tried])] };
}
