import { finished, type Readable } from 'node:stream';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { CountryCode } from 'libphonenumber-js';
import { Prisma } from '../generated/prisma/client.js';
import type { PrismaClient } from './database.js';
import type { CdrFilterQuery, CdrListQuery } from '../schemas/cdr.js';
import { InvalidFieldError, NotFoundError } from '../errors.js';
import { toE164 } from '../exotel/phone.js';

const MAX_BIGINT = 9223372036854775807n;

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
    number = toE164(q.number, country) ?? undefined;
    if (!number) throw new InvalidFieldError('querystring/number', `'${q.number}' is not a valid phone number (default country ${country})`);
  }
  const from = q.from !== undefined ? new Date(q.from) : undefined;
  const to = q.to !== undefined ? new Date(q.to) : undefined;
  if (from && to && to < from) throw new InvalidFieldError('querystring/to', `must not be before from (${q.from})`);
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
  if (beforeId !== null) out.push(['id < ', v(beforeId.toString()), '::bigint']);
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

/**
 * Whether a time-filtered page is found faster from the range than from the newest row.
 *
 * Postgres answers `… WHERE received_at in range ORDER BY id DESC LIMIT n` by walking the id index
 * down from the newest row until n rows match: instant for "the last hour", but for "one day,
 * three weeks ago" it first skips every newer row (a second at a million rows), because its
 * estimate assumes the range's rows are spread over all ids. Ids grow with arrival, so the ids at
 * the range's ends, read from the (received_at, id) index, tell roughly how many rows lie after the
 * range (the walk's waste) and in it (the cost of collecting them all and keeping the newest n).
 * Only the plan depends on this estimate; the rows returned are the same either way.
 */
async function rangeFirst(prisma: PrismaClient, f: CdrFilter, beforeId: bigint | null): Promise<boolean> {
  if (!f.from && !f.to) return false;
  if (f.callSid !== undefined) return false; // a call has a handful of rows; its index finds them
  const firstAtOrAfter = (d: Date) =>
    Prisma.sql`(SELECT id FROM cdrs WHERE received_at >= ${d.toISOString()}::timestamptz ORDER BY received_at LIMIT 1)`;
  const [ends] = await prisma.$queryRaw<Array<{ top: bigint | null; first: bigint | null; after: bigint | null }>>`
    SELECT (SELECT max(id) FROM cdrs) AS top,
           ${f.from ? firstAtOrAfter(f.from) : Prisma.sql`(SELECT min(id) FROM cdrs)`} AS first,
           ${f.to ? firstAtOrAfter(f.to) : Prisma.sql`NULL::bigint`} AS after`;
  if (!ends || ends.top === null || ends.first === null) return false; // nothing in range: any plan is instant
  const top = beforeId !== null && beforeId <= ends.top ? beforeId - 1n : ends.top;
  const end = ends.after ?? top + 1n; // first id after the range
  const newer = top >= end ? top - end + 1n : 0n;
  const inRange = (end < top + 1n ? end : top + 1n) - ends.first;
  return inRange < 2n * newer;
}

// Every column but idempotency_key, which is the writer's business.
const cdrSelect = {
  id: true, receivedAt: true, endpoint: true, flowSlug: true, callSid: true, callFrom: true, callFromRaw: true,
  callTo: true, callToRaw: true, direction: true, callStatus: true, callType: true, digits: true, customField: true,
  dialCallStatus: true, dialWhomNumber: true, legs: true, params: true, decision: true, matchedRule: true,
  outcome: true, reason: true, httpStatus: true, responseBody: true, handlingMs: true, attempt: true,
} as const;

type CdrRow = Prisma.CdrGetPayload<{ select: typeof cdrSelect }>;
const toAnswer = (row: CdrRow) => ({ ...row, id: row.id.toString() });

/** Ids are digit strings of up to 19 characters; some of those exceed bigint, and no row has them. */
function parseId(id: string): bigint | null {
  const n = BigInt(id);
  return n > MAX_BIGINT ? null : n;
}

/** The columns of cdrSelect under their Prisma names, for raw queries that answer the same rows. */
const CDR_COLUMNS = Prisma.raw(
  Object.keys(cdrSelect).map((field) => {
    const column = field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    return column === field ? column : `${column} AS "${field}"`;
  }).join(', '),
);

/**
 * Newest first, by id; the cursor is the last id of the previous page. One query (after the
 * estimate above, for a time range): the page's ids, ordered `id + 0` when the range is the better
 * way in (Postgres then cannot walk the id index and finds the rows by their filters), then only
 * those rows in full.
 */
export async function listCdrs(prisma: PrismaClient, q: CdrListQuery, country: CountryCode) {
  const filter = resolveFilter(q, country);
  const beforeId = q.cursor !== undefined ? parseId(q.cursor) : null;
  const order = (await rangeFirst(prisma, filter, beforeId)) ? Prisma.sql`id + 0 DESC` : Prisma.sql`id DESC`;
  const rows = await prisma.$queryRaw<CdrRow[]>`
    SELECT ${CDR_COLUMNS} FROM cdrs
    WHERE id IN (SELECT id FROM cdrs ${whereParams(conditions(filter, beforeId))} ORDER BY ${order} LIMIT ${q.limit + 1})
    ORDER BY id DESC`;
  const page = rows.slice(0, q.limit);
  return {
    items: page.map(toAnswer),
    nextCursor: rows.length > q.limit ? page[page.length - 1]!.id.toString() : null,
  };
}

export async function getCdr(prisma: PrismaClient, id: string) {
  const key = parseId(id);
  const row = key === null ? null : await prisma.cdr.findUnique({ where: { id: key }, select: cdrSelect });
  if (!row) throw new NotFoundError('CDR', id);
  return toAnswer(row);
}

/** Every callback of one call, in the order they arrived. */
export async function getCallTimeline(prisma: PrismaClient, callSid: string) {
  const rows = await prisma.cdr.findMany({ where: { callSid }, select: cdrSelect, orderBy: { id: 'asc' } });
  if (rows.length === 0) throw new NotFoundError('call', callSid);
  return { callSid, callbacks: rows.map(toAnswer) };
}

/** CSV columns in order; received_at in the same ISO 8601 UTC form as the JSON answers. */
const CSV_SELECT = [
  'id',
  `to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS received_at`,
  'endpoint', 'flow_slug', 'call_sid', 'call_from', 'call_to', 'direction', 'digits', 'dial_call_status',
  'dial_whom_number', 'outcome', 'matched_rule', 'reason', 'http_status', 'response_body', 'handling_ms', 'attempt',
  'legs', 'params',
].join(', ');

/**
 * The filtered CDRs as CSV with a header row, newest first, straight from Postgres `COPY … TO STDOUT`:
 * memory stays flat however many rows. The stream holds one pooled connection until it ends; if it
 * fails or is destroyed early (client gone), the connection is discarded rather than returned
 * mid-COPY.
 */
export async function openCdrCsvStream(pool: pg.Pool, q: CdrFilterQuery, country: CountryCode): Promise<Readable> {
  const filter = resolveFilter(q, country);
  const client = await pool.connect();
  const where = whereLiterals(conditions(filter), (value) => client.escapeLiteral(value));
  const stream = client.query(copyTo(`COPY (SELECT ${CSV_SELECT} FROM cdrs ${where} ORDER BY id DESC) TO STDOUT WITH (FORMAT csv, HEADER true)`));
  // finished() keeps its listeners, so a late 'error' from the driver after an abort is not unhandled.
  finished(stream, (err) => client.release(err ?? undefined));
  return stream;
}
