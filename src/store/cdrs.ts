import { finished, type Readable } from 'node:stream';
import { DEFAULT_PAGE_LIMIT } from '../schemas/common.js';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { CountryCode } from 'libphonenumber-js';
import { Prisma } from '../generated/prisma/client.js';
import { QUERY_TIMEOUT_MS, withQueryTimeout, type PrismaClient } from './database.js';
import type { CdrFilterQuery, CdrListQuery } from '../schemas/cdr.js';
import { InvalidFieldError, NotFoundError } from '../errors.js';
import { notANumber, queryNumberToE164 } from '../exotel/phone.js';
import { CDR_FIELDS, columnOf, type CdrField } from './cdr-columns.js';
import { parseId } from './ids.js';
import { timeRange } from './time-range.js';

/** A CDR query after validation: number in E.164, instants as Dates. */
interface CdrFilter {
  callSid?: string | undefined;
  number?: string | undefined;
  flow?: string | undefined;
  endpoint?: string | undefined;
  outcome?: string | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
}

/** Normalises the number (any format → E.164) and checks the time range; 400 naming the field. */
function resolveFilter(q: CdrFilterQuery, country: CountryCode): CdrFilter {
  let number: string | undefined;
  if (q.number !== undefined) {
    number = queryNumberToE164(q.number, country) ?? undefined;
    if (!number) throw new InvalidFieldError('querystring/number', notANumber(q.number, country));
  }
  const { from, to } = timeRange(q);
  return { callSid: q.callSid, number, flow: q.flow, endpoint: q.endpoint, outcome: q.outcome, from, to };
}

/** A value in a condition: a bind parameter in queries, an escaped literal in COPY (which takes none). */
class Value {
  constructor(readonly text: string) {}
}
type Condition = Array<string | Value>;

/**
 * The filter as SQL conditions, one definition for the list and the CSV. Only column names and
 * operators are written here; every value is a Value. A number matches the caller, the called
 * ExoPhone or the dialed agent, all stored in E.164 by the callback parser, so one normalised value
 * compares equal in every column (each of the three is indexed, so Postgres combines them).
 */
function conditions(f: CdrFilter, beforeId: bigint | null = null): Condition[] {
  const v = (text: string) => new Value(text);
  const out: Condition[] = [];
  if (f.callSid !== undefined) out.push(['call_sid = ', v(f.callSid)]);
  if (f.flow !== undefined) out.push(['flow_slug = ', v(f.flow)]);
  if (f.endpoint !== undefined) out.push(['endpoint = ', v(f.endpoint)]);
  if (f.outcome !== undefined) out.push(['outcome = ', v(f.outcome)]);
  if (f.from) out.push(['received_at >= ', v(f.from.toISOString()), '::timestamptz']);
  if (f.to) out.push(['received_at < ', v(f.to.toISOString()), '::timestamptz']);
  if (f.number !== undefined) {
    const n = v(f.number);
    out.push(['(call_from = ', n, ' OR call_to = ', n, ' OR dial_whom_number = ', n, ')']);
  }
  if (beforeId !== null) {
    out.push(['(received_at, id) < (SELECT received_at, id FROM cdrs WHERE id = ', v(beforeId.toString()), '::bigint)']);
  }
  return out;
}

/** The conditions as a WHERE clause with bind parameters. */
function whereParams(cs: Condition[]): Prisma.Sql {
  if (cs.length === 0) return Prisma.empty;
  const one = (c: Condition) => {
    const strings = [''];
    const values: string[] = [];
    for (const part of c) {
      if (typeof part === 'string') strings[strings.length - 1] += part;
      else {
        values.push(part.text);
        strings.push('');
      }
    }
    return new Prisma.Sql(strings, values);
  };
  return Prisma.sql`WHERE ${Prisma.join(cs.map(one), ' AND ')}`;
}

/** The conditions as a WHERE clause with every value through the driver's escapeLiteral (for COPY). */
function whereLiterals(cs: Condition[], lit: (value: string) => string): string {
  if (cs.length === 0) return '';
  return `WHERE ${cs.map((c) => c.map((part) => (typeof part === 'string' ? part : lit(part.text))).join('')).join(' AND ')}`;
}

// Every column but idempotency_key, which is the writer's business.
const cdrSelect = Object.fromEntries(CDR_FIELDS.filter((f) => f !== 'idempotencyKey').map((f) => [f, true])) as {
  [F in Exclude<CdrField, 'idempotencyKey'>]: true;
};

type CdrRow = Prisma.CdrGetPayload<{ select: typeof cdrSelect }>;
const toAnswer = (row: CdrRow) => ({ ...row, id: row.id.toString() });

/** The columns of cdrSelect under their Prisma names, for raw queries that answer the same rows. */
const CDR_COLUMNS = Prisma.raw(
  Object.keys(cdrSelect)
    .map((field) => {
      const column = columnOf(field);
      return column === field ? column : `${column} AS "${field}"`;
    })
    .join(', '),
);

/**
 * Newest first: by the time exoroute received the callback, then by id (the order it was stored).
 * The cursor is the id of the previous page's last CDR; the page holds the CDRs after it in that
 * order. A time range, alone or with a flow, is a backward walk of `(received_at, id)` or
 * `(flow_slug, received_at, id)` from the range's end that stops after the page, so a page costs the
 * same for the last hour as for a day a year ago. A CallSid or a rare number is found by its own
 * indexes and its few rows sorted; a number on many rows (an ExoPhone), like no filter, is the same
 * walk from the newest CDR. A cursor that names no CDR (retention deleted it, and with it everything
 * older) ends the paging.
 */
export async function listCdrs(prisma: PrismaClient, q: CdrListQuery, country: CountryCode) {
  const limit = q.limit ?? DEFAULT_PAGE_LIMIT;
  const filter = resolveFilter(q, country);
  const beforeId = q.cursor !== undefined ? parseId(q.cursor) : null;
  if (q.cursor !== undefined && beforeId === null) return { items: [], nextCursor: null };
  const rows = await prisma.$queryRaw<CdrRow[]>`
    SELECT ${CDR_COLUMNS} FROM cdrs ${whereParams(conditions(filter, beforeId))}
    ORDER BY received_at DESC, id DESC LIMIT ${limit + 1}`;
  const page = rows.slice(0, limit);
  return {
    items: page.map(toAnswer),
    nextCursor: rows.length > limit ? page[page.length - 1]!.id.toString() : null,
  };
}

export async function getCdr(prisma: PrismaClient, id: string) {
  const key = parseId(id);
  const row = key === null ? null : await prisma.cdr.findUnique({ where: { id: key }, select: cdrSelect });
  if (!row) throw new NotFoundError('CDR', id);
  return toAnswer(row);
}

/** Every callback of one call, oldest first (the list's order reversed). */
export async function getCallTimeline(prisma: PrismaClient, callSid: string) {
  const rows = await prisma.cdr.findMany({ where: { callSid }, select: cdrSelect, orderBy: [{ receivedAt: 'asc' }, { id: 'asc' }] });
  if (rows.length === 0) throw new NotFoundError('call', callSid);
  return { callSid, callbacks: rows.map(toAnswer) };
}

/**
 * A text cell that a spreadsheet would run as a formula (OWASP "CSV injection"): one beginning with
 * `=`, `+`, `-`, `@`, tab or carriage return (codes 61, 43, 45, 64, 9, 13) gets a leading `'`, which spreadsheets show as text.
 * Callers plant such values: a refused callback still leaves a CDR. A plain number (an E.164
 * number such as `+919812345678`, or `-5`) runs no formula and stays as it is. Only constants are
 * written here; COPY takes no bind parameters.
 */
function csvText(column: string): string {
  return (
    // ascii(): the first character's code, an integer compared (no text made per row and cell)
    `CASE WHEN ascii(${column}) IN (61, 43, 45, 64, 9, 13) AND ${column} !~ '^[+-]?[0-9]+([.][0-9]+)?$' ` +
    `THEN '''' || ${column} ELSE ${column} END AS ${column}`
  );
}

/**
 * CSV columns in order; received_at in the same ISO 8601 UTC form as the JSON answers. The text
 * columns a caller (or an admin: a rule's name) writes go through csvText. The others cannot start
 * a formula and are exported as stored, which keeps the export's cost: id, received_at and the
 * numeric columns; endpoint and outcome (exoroute's own words); call_from and call_to (E.164
 * numbers or empty); legs and params (JSON that exoroute serialises: an array or an object).
 * call_status, call_type and custom_field came later and stand last, after params, so that an
 * importer that reads the columns by position still finds the others where they were.
 */
const CSV_SELECT = [
  'id',
  `to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS received_at`,
  'endpoint',
  csvText('flow_slug'),
  csvText('call_sid'),
  'call_from',
  'call_to',
  csvText('direction'),
  csvText('digits'),
  csvText('dial_call_status'),
  csvText('dial_whom_number'),
  'outcome',
  csvText('matched_rule'),
  csvText('reason'),
  'http_status',
  csvText('response_body'),
  'handling_ms',
  'attempt',
  'legs',
  'params',
  csvText('call_status'),
  csvText('call_type'),
  csvText('custom_field'),
].join(', ');

/**
 * The filtered CDRs as CSV with a header row, in the list's order (newest first), straight from
 * Postgres `COPY … TO STDOUT`: memory stays flat however many rows. The stream holds one pooled
 * connection until it ends, and that connection is then discarded: rather than returned mid-COPY
 * when it fails or is destroyed early (client gone), or without its statement_timeout.
 */
export async function openCdrCsvStream(pool: pg.Pool, q: CdrFilterQuery, country: CountryCode): Promise<Readable> {
  const filter = resolveFilter(q, country);
  const client = await pool.connect();
  // An export of every CDR of a busy year runs for minutes: no statement_timeout for its COPY.
  try {
    await client.query('SET statement_timeout = 0');
  } catch (err) {
    client.release(true);
    throw err;
  }
  const where = whereLiterals(conditions(filter), (value) => client.escapeLiteral(value));
  const stream = client.query(
    copyTo(`COPY (SELECT ${CSV_SELECT} FROM cdrs ${where} ORDER BY received_at DESC, id DESC) TO STDOUT WITH (FORMAT csv, HEADER true)`),
  );
  // finished() keeps its listeners, so a late 'error' from the driver after an abort is not unhandled.
  finished(stream, (err) => client.release(err ?? true));
  return stream;
}

/**
 * The digits of a call's first request to one dial flow that carried them, from its CDRs (null:
 * none did). Exotel sends `digits` only with a Dial Whom's first request, not with its re-fetches
 * (src/routing/dial/answer.ts). Found by the `(call_sid, id)` index among the call's few rows.
 */
export async function firstDigitsOf(
  pool: pg.Pool,
  key: { callSid: string; endpoint: string; flowSlug: string },
  queryTimeoutMs = QUERY_TIMEOUT_MS,
): Promise<string | null> {
  // Given up as the dial state's statements are: its caller is answered by a deadline, but a read on
  // a connection that died without a word (a failover) kept that pool connection for ~15 minutes.
  const { rows } = await pool.query<{ digits: string }>(
    withQueryTimeout(
      {
        text: 'SELECT digits FROM cdrs WHERE call_sid = $1 AND endpoint = $2 AND flow_slug = $3 AND digits IS NOT NULL ORDER BY id LIMIT 1',
        values: [key.callSid, key.endpoint, key.flowSlug],
      },
      queryTimeoutMs,
    ),
  );
  return rows[0]?.digits ?? null;
}
