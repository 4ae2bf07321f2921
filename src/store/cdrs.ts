import { finished, type Readable } from 'node:stream';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { CountryCode } from 'libphonenumber-js';
import type { Prisma } from '../generated/prisma/client.js';
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

/**
 * The filter for Prisma. A number matches the caller, the called ExoPhone or the dialed agent, all
 * stored in E.164 by the callback parser, so one normalised value compares equal in every column.
 */
function prismaWhere(f: CdrFilter): Prisma.CdrWhereInput {
  return {
    callSid: f.callSid,
    flowSlug: f.flow,
    endpoint: f.endpoint,
    outcome: f.outcome,
    ...(f.from || f.to ? { receivedAt: { gte: f.from, lt: f.to } } : {}),
    ...(f.number ? { OR: [{ callFrom: f.number }, { callTo: f.number }, { dialWhomNumber: f.number }] } : {}),
  };
}

/**
 * The same filter as SQL text, for COPY, which takes no bind parameters: every value goes through
 * the driver's escapeLiteral; only column names and operators are written here. Keep it in step
 * with prismaWhere (the tests compare the CSV with the list for every filter).
 */
function sqlWhere(f: CdrFilter, lit: (value: string) => string): string {
  const conditions: string[] = [];
  if (f.callSid !== undefined) conditions.push(`call_sid = ${lit(f.callSid)}`);
  if (f.flow !== undefined) conditions.push(`flow_slug = ${lit(f.flow)}`);
  if (f.endpoint !== undefined) conditions.push(`endpoint = ${lit(f.endpoint)}`);
  if (f.outcome !== undefined) conditions.push(`outcome = ${lit(f.outcome)}`);
  if (f.from) conditions.push(`received_at >= ${lit(f.from.toISOString())}::timestamptz`);
  if (f.to) conditions.push(`received_at < ${lit(f.to.toISOString())}::timestamptz`);
  if (f.number !== undefined) {
    const n = lit(f.number);
    conditions.push(`(call_from = ${n} OR call_to = ${n} OR dial_whom_number = ${n})`);
  }
  return conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
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

/** Newest first, by id; the cursor is the last id of the previous page. */
export async function listCdrs(prisma: PrismaClient, q: CdrListQuery, country: CountryCode) {
  const where = prismaWhere(resolveFilter(q, country));
  const cursor = q.cursor !== undefined ? parseId(q.cursor) : null;
  const rows = await prisma.cdr.findMany({
    where: cursor !== null ? { AND: [where, { id: { lt: cursor } }] } : where,
    select: cdrSelect,
    orderBy: { id: 'desc' },
    take: q.limit + 1,
  });
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
  const where = sqlWhere(filter, (value) => client.escapeLiteral(value));
  const stream = client.query(copyTo(`COPY (SELECT ${CSV_SELECT} FROM cdrs ${where} ORDER BY id DESC) TO STDOUT WITH (FORMAT csv, HEADER true)`));
  // finished() keeps its listeners, so a late 'error' from the driver after an abort is not unhandled.
  finished(stream, (err) => client.release(err ?? undefined));
  return stream;
}
