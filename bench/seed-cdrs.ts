/**
 * Fills the `cdrs` table with realistic call-detail records, fast: one `INSERT … SELECT` over
 * `generate_series` per chunk of calls (Postgres builds every row; only the statement crosses the
 * wire), optionally with the secondary indexes dropped and rebuilt afterwards. Chunks go one after
 * the other so that rows lie on disk in time order, as the service writes them: two concurrent
 * inserts would interleave their pages and blur the BRIN index on `received_at`.
 *
 *   DATABASE_URL=postgresql://… npx tsx bench/seed-cdrs.ts [--rows 1000000] [--truncate] [--rebuild-indexes]
 *
 * What the rows look like (the bench picks its query values with the helpers exported here):
 * - calls of 4 callbacks each, in arrival order: passthru (flow `inbound`), switch (`menu`),
 *   dial-whom (`agents`), dial-events (no flow); ids grow with `received_at`;
 * - `received_at` spread evenly over the 30 days before `end`, with a second or two of jitter (a
 *   little disorder between id and time, as with several instances writing);
 * - 100,000 distinct callers (about 10 rows each, 30 % of them VIPs), 4 ExoPhones (a quarter of
 *   all rows each), 8 agents (on the dial-events rows); 0.5 % refused (404);
 * - raw params as Exotel sends them (15–18 keys), a decision with its rule trace, the answer, timing.
 * About 870 bytes per row on disk: 1,000,000 rows are ~0.9 GB of heap plus ~0.25 GB of indexes.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';

export const SEED_DAYS = 30;
export const CALLBACKS_PER_CALL = 4;
export const CALLERS = 100_000;
export const EXOPHONES = ['+918047115770', '+918047115771', '+918047115772', '+918047115773'];
export const AGENTS = Array.from({ length: 8 }, (_, i) => `+91981234560${i}`);

/** Call `c`'s CallSid: md5 of `seed-call-<c>`, as the SQL below computes it. */
export const seedCallSid = (c: number) => createHash('md5').update(`seed-call-${c}`).digest('hex');
/** Call `c`'s caller, E.164 (the SQL below, in JavaScript). */
export const seedCaller = (c: number) => `+9197${String((c * 7919) % CALLERS).padStart(8, '0')}`;

export interface SeedOptions {
  rows: number;
  /** The newest row's time (default: now). */
  end?: Date;
  /** Calls per statement. */
  chunk?: number;
  /** Hard limit for the whole seeding, ms. */
  timeoutMs?: number;
  /**
   * Drop the secondary indexes first and rebuild them from their own definitions afterwards (a
   * sorted build is several times faster than row-by-row upkeep). Only while nothing else writes
   * CDRs: the writer's ON CONFLICT needs the unique index.
   */
  rebuildIndexes?: boolean;
  log?: (msg: string) => void;
}

/**
 * Calls $4..$5 (0-based), 4 rows each. $1 = end of the span, $2 = number of calls, $3 = key prefix.
 * JSON is assembled as text and cast once per row: much cheaper than nested json_build_object.
 */
const INSERT_CHUNK = `
INSERT INTO cdrs (received_at, endpoint, flow_slug, call_sid, call_from, call_from_raw, call_to, call_to_raw, direction,
  call_status, call_type, digits, custom_field, dial_call_status, dial_whom_number, legs, params, decision, matched_rule,
  outcome, reason, http_status, response_body, handling_ms, attempt, idempotency_key)
SELECT
  call_at + make_interval(secs => k * step + random()), endpoint, flow, sid, caller, caller_raw, exophone, exophone_raw, 'incoming',
  'in-progress', 'call-attempt', CASE WHEN k = 1 THEN '1' END, NULL, NULL, CASE WHEN k = 3 THEN agent END, NULL,
  (base || CASE k WHEN 1 THEN ',"digits":"\\"1\\""'
                  WHEN 3 THEN ',"DialWhomNumber":"0' || substr(agent, 4) || '","Status":"free","EventType":"Terminal"'
                  ELSE '' END || '}')::json,
  CASE k
    WHEN 0 THEN ('{"action":{"branch":"' || CASE WHEN vip THEN 'A' ELSE 'B' END || '"},"decidedBy":"rule","trace":['
      || '{"rule":"VIPs","matched":' || vip || ',"conditions":[{"condition":"callerIn","held":' || vip || ',"why":"' || caller
      || CASE WHEN vip THEN ' is in gold' ELSE ' is not in gold' END || '"}]},'
      || '{"rule":"closed","matched":' || (NOT vip) || ',"conditions":[{"condition":"closedBy","held":' || (NOT vip)
      || ',"why":"support is closed"}]}]}')::json
    WHEN 1 THEN '{"action":{"select":"sales"},"decidedBy":"rule","trace":[{"rule":"pressed 1","matched":true,"conditions":[{"condition":"digits","held":true,"why":"digits 1 = 1"}]}]}'::json
    WHEN 2 THEN ('{"action":{"dialGroup":"sales"},"decidedBy":"otherwise","trace":[],"numbers":["' || agent || '","' || agent2 || '"]}')::json
  END,
  CASE k WHEN 0 THEN CASE WHEN vip THEN 'VIPs' ELSE 'closed' END WHEN 1 THEN 'pressed 1' END,
  CASE WHEN refused THEN 'rejected' ELSE 'answered' END, CASE WHEN refused THEN 'no flow ''old-flow''' END,
  CASE WHEN refused THEN 404 WHEN k = 0 AND NOT vip THEN 302 ELSE 200 END,
  CASE WHEN refused THEN '{"statusCode":404,"error":"Not Found","message":"no flow ''old-flow''"}'
       WHEN k = 1 THEN '{"select":"sales"}' WHEN k = 2 THEN agent || ',' || agent2 ELSE '' END,
  round((0.2 + random() * 2.5)::numeric, 3)::float8, 1, $3 || '-' || (c * ${CALLBACKS_PER_CALL} + k)
FROM generate_series($4::bigint, $5::bigint) AS c
CROSS JOIN LATERAL (SELECT
  $1::timestamptz - make_interval(days => ${SEED_DAYS}) + make_interval(secs => (c::float8 / $2::float8) * ${SEED_DAYS} * 86400 + random() * 2) AS call_at,
  (${SEED_DAYS} * 86400.0 / $2::float8) / ${CALLBACKS_PER_CALL} AS step,
  md5('seed-call-' || c) AS sid,
  '+9197' || lpad(((c * 7919) % ${CALLERS})::text, 8, '0') AS caller,
  '+91804711577' || (c % 4) AS exophone,
  '+91981234560' || (c % 8) AS agent,
  '+91981234560' || ((c + 1) % 8) AS agent2,
  (c % 10) < 3 AS vip) AS v
CROSS JOIN LATERAL (SELECT
  '0' || substr(caller, 4) AS caller_raw, '0' || substr(exophone, 4) AS exophone_raw,
  to_char((call_at - interval '5 seconds') AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS') AS created,
  to_char(call_at AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS') AS now_ist) AS w
CROSS JOIN LATERAL (SELECT
  '{"CallSid":"' || sid || '","CallFrom":"' || caller_raw || '","CallTo":"' || exophone_raw || '","Direction":"incoming",'
  || '"Created":"' || created || '","DialCallDuration":"0","StartTime":"' || created || '","EndTime":"1970-01-01 05:30:00",'
  || '"CallType":"call-attempt","From":"' || caller_raw || '","To":"' || exophone_raw || '","CurrentTime":"' || now_ist
  || '","flow_id":"12345","tenant_id":"6789"' AS base) AS b
CROSS JOIN LATERAL generate_series(0 * c, ${CALLBACKS_PER_CALL - 1}) AS k  -- lateral: c outer, rows in time order
CROSS JOIN LATERAL (SELECT
  CASE k WHEN 0 THEN 'passthru' WHEN 1 THEN 'switch' WHEN 2 THEN 'dial-whom' ELSE 'dial-events' END AS endpoint,
  CASE k WHEN 0 THEN 'inbound' WHEN 1 THEN 'menu' WHEN 2 THEN 'agents' END AS flow,
  (c * ${CALLBACKS_PER_CALL} + k) % 200 = 199 AS refused) AS e`;

/** Inserts `rows` CDRs (rounded down to whole calls); returns the ms taken. VACUUM ANALYZE afterwards. */
export async function seedCdrs(pool: pg.Pool, opts: SeedOptions): Promise<number> {
  const end = opts.end ?? new Date();
  const calls = Math.floor(opts.rows / CALLBACKS_PER_CALL);
  const chunk = opts.chunk ?? 12_500;
  const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
  const prefix = `seed-${end.getTime().toString(36)}`;
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  const indexes = opts.rebuildIndexes
    ? (
        await pool.query<{ name: string; def: string }>(
          `SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'cdrs' AND indexname <> 'cdrs_pkey'`,
        )
      ).rows
    : [];
  for (const ix of indexes) await pool.query(`DROP INDEX "${ix.name}"`);
  const worker = async () => {
    while (next < calls) {
      if (Date.now() > deadline) throw new Error('seeding took longer than its time limit');
      const lo = next;
      const hi = Math.min(calls - 1, lo + chunk - 1);
      next = hi + 1;
      await pool.query(INSERT_CHUNK, [end.toISOString(), calls, prefix, lo, hi]);
      const before = done;
      done += (hi - lo + 1) * CALLBACKS_PER_CALL;
      if (Math.floor(done / 200_000) > Math.floor(before / 200_000)) opts.log?.(`  ${done.toLocaleString('en')} CDRs`);
    }
  };
  try {
    await worker();
  } finally {
    if (indexes.length > 0) opts.log?.(`  rebuilding ${indexes.length} indexes`);
    let i = 0;
    const build = async () => {
      while (i < indexes.length) await pool.query(indexes[i++]!.def);
    };
    await Promise.all([build(), build()]); // two at a time: one per core
  }
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('set DATABASE_URL to the database to fill');
  const args = process.argv.slice(2);
  const rowsArg = args.indexOf('--rows');
  const rows = rowsArg >= 0 ? Number(args[rowsArg + 1]) : 1_000_000;
  if (!Number.isInteger(rows) || rows < CALLBACKS_PER_CALL) throw new Error(`--rows takes an integer ≥ ${CALLBACKS_PER_CALL}`);
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    if (args.includes('--truncate')) await pool.query('TRUNCATE cdrs');
    const ms = await seedCdrs(pool, { rows, log: console.log, rebuildIndexes: args.includes('--rebuild-indexes') });
    console.log(`${rows.toLocaleString('en')} CDRs in ${(ms / 1000).toFixed(1)} s; VACUUM ANALYZE …`);
    await pool.query('VACUUM ANALYZE cdrs');
  } finally {
    await pool.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
