import type { CountryCode } from 'libphonenumber-js';
import { DEFAULT_PAGE_LIMIT } from '../schemas/common.js';
import { Prisma } from '../generated/prisma/client.js';
import type { PrismaClient } from './database.js';
import type { VipEntryInput, VipListInput, VipListPatch, VipWriteMode } from '../schemas/vip-list.js';
import { ConflictError, InvalidFieldError, NotFoundError } from '../errors.js';
import { notANumber, toE164 } from '../exotel/phone.js';
import { recordChange, unlessUnchanged, type Actor } from './audit.js';
import { assertUnreferenced } from './references.js';
import { parseId } from './ids.js';

const ENTITY = 'vip-list';

const withCount = <T extends { _count: { entries: number } }>({ _count, ...list }: T) => ({ ...list, entryCount: _count.entries });
// No row id: the API names a list by its slug, and the audit trail shows the list as GET does.
const listSelect = {
  slug: true,
  name: true,
  description: true,
  createdAt: true,
  updatedAt: true,
  _count: { select: { entries: true } },
} as const;

export async function listVipLists(prisma: PrismaClient) {
  const rows = await prisma.vipList.findMany({ select: listSelect, orderBy: { slug: 'asc' } });
  return rows.map(withCount);
}

export async function getVipList(prisma: PrismaClient, slug: string) {
  const row = await prisma.vipList.findUnique({ where: { slug }, select: listSelect });
  if (!row) throw new NotFoundError(ENTITY, slug);
  return withCount(row);
}

export async function createVipList(prisma: PrismaClient, actor: Actor, input: VipListInput) {
  return prisma.$transaction(async (tx) => {
    const row = withCount(await tx.vipList.create({ data: input, select: listSelect }));
    await recordChange(tx, actor, 'create', ENTITY, input.slug, null, row);
    return row;
  });
}

/**
 * A write to a list or its entries, in one transaction: its statements may run, waiting for the
 * list's lock included, `bulkMs` (ADMIN_BULK_STATEMENT_TIMEOUT_MS, in place of the admin API's
 * shorter statement_timeout), and the whole of it 5 s more (Prisma's default is 5 s): writes to one
 * list take turns, so one sent beside an import of 10,000 entries waits for it, and was answered 500
 * once the two took more than 5 s together.
 */
function listWrite<T>(prisma: PrismaClient, bulkMs: number, work: (tx: Prisma.TransactionClient) => Promise<T>): Promise<T> {
  return prisma.$transaction(
    async (tx) => {
      await tx.$executeRaw`SELECT set_config('statement_timeout', ${String(bulkMs)}, true)`;
      return work(tx);
    },
    { timeout: bulkMs + 5000 },
  );
}

/**
 * Locks the list's row for the rest of the transaction and reads it: concurrent changes of one list
 * queue, and each audits as its `before` what the one before it left (as lockFlow does).
 */
async function lockList(tx: Prisma.TransactionClient, slug: string) {
  const locked = await tx.$queryRaw<Array<{ id: number }>>`SELECT id FROM vip_lists WHERE slug = ${slug} FOR UPDATE`;
  if (locked.length === 0) throw new NotFoundError(ENTITY, slug);
  return tx.vipList.findUniqueOrThrow({ where: { slug }, select: listSelect });
}

/** A PATCH that leaves the list as it is changes nothing: no new updatedAt, no audit entry (unlessUnchanged). */
export async function updateVipList(prisma: PrismaClient, actor: Actor, slug: string, patch: VipListPatch, bulkMs: number) {
  return unlessUnchanged<Awaited<ReturnType<typeof getVipList>>>((same) =>
    listWrite(prisma, bulkMs, async (tx) => {
      const before = await lockList(tx, slug);
      const after = withCount(await tx.vipList.update({ where: { slug }, data: patch, select: listSelect }));
      same(withCount(before), after);
      await recordChange(tx, actor, 'update', ENTITY, slug, withCount(before), after);
      return after;
    }),
  );
}

export async function deleteVipList(prisma: PrismaClient, actor: Actor, slug: string, bulkMs: number) {
  return listWrite(prisma, bulkMs, async (tx) => {
    const before = await lockList(tx, slug);
    await assertUnreferenced(tx, ENTITY, slug);
    await tx.vipList.delete({ where: { slug } });
    await recordChange(tx, actor, 'delete', ENTITY, slug, withCount(before), null);
  });
}

async function listId(prisma: Pick<PrismaClient, 'vipList'>, slug: string): Promise<number> {
  const list = await prisma.vipList.findUnique({ where: { slug }, select: { id: true } });
  if (!list) throw new NotFoundError(ENTITY, slug);
  return list.id;
}

/** Holds the list's row (FOR NO KEY UPDATE) until commit: the writes to one list's entries take turns. Answers the list's id. */
async function takeTurn(tx: Prisma.TransactionClient, slug: string): Promise<number> {
  const locked = await tx.$queryRaw<Array<{ id: number }>>`SELECT id FROM vip_lists WHERE slug = ${slug} FOR NO KEY UPDATE`;
  if (locked.length === 0) throw new NotFoundError(ENTITY, slug);
  return locked[0]!.id;
}

const entrySelect = { id: true, number: true, name: true, tier: true, note: true, expiresAt: true, createdAt: true, updatedAt: true } as const;
/**
 * An entry as its audit entry shows it: as GET .../entries does, without the row id (only the
 * paging cursor is made of it), which no route takes and which read as if it named the entry.
 */
const audited = <T extends { id: number }>({ id: _id, ...entry }: T) => entry;

/**
 * `q` as conditions on the number: a full phone number in any form (`09811122233`) is its E.164
 * form, as entries are stored; any `q` also matches as digits anywhere in the number, less one
 * leading trunk `0` (`098111` finds `+919811122233`).
 */
function numberSearch(q: string, country: CountryCode) {
  const e164 = toE164(q, country);
  const digits = q.replace(/\D/g, '').replace(/^0(?=\d)/, '');
  return [...(e164 ? [{ number: e164 }] : []), ...(digits ? [{ number: { contains: digits } }] : [])];
}

/**
 * Prisma's `contains` is `LIKE '%' || value || '%'` with the value as given (prisma/prisma#19506):
 * `%` and `_` in it would be wildcards. Postgres's LIKE takes a backslash as its escape by default.
 */
const likeLiteral = (text: string) => text.replace(/[\\%_]/g, '\\$&');

export async function listVipEntries(
  prisma: PrismaClient,
  slug: string,
  q: { limit?: number | undefined; cursor?: string | undefined; q?: string | undefined },
  country: CountryCode,
) {
  const limit = q.limit ?? DEFAULT_PAGE_LIMIT;
  const id = await listId(prisma, slug);
  // vip_entries.id is int4: a cursor past it names no entry, and the paging has ended.
  const after = q.cursor !== undefined ? parseId(q.cursor, 'int4') : null;
  if (q.cursor !== undefined && after === null) return { items: [], nextCursor: null };
  const search = q.q ? { OR: [...numberSearch(q.q, country), { name: { contains: likeLiteral(q.q), mode: 'insensitive' as const } }] } : {};
  const rows = await prisma.vipEntry.findMany({
    where: { listId: id, ...search, ...(after !== null ? { id: { gt: Number(after) } } : {}) },
    select: entrySelect,
    orderBy: { id: 'asc' },
    take: limit + 1,
  });
  const page = rows.slice(0, limit);
  return { items: page, nextCursor: rows.length > limit ? String(page[page.length - 1]!.id) : null };
}

interface NormalisedEntry {
  number: string;
  name: string | null;
  tier: string | null;
  note: string | null;
  expiresAt: Date | null;
}

/** Normalises numbers to E.164; 400 naming the entry and field on the first bad one. Later duplicates win. */
function normaliseEntries(entries: VipEntryInput[], country: CountryCode, fieldPrefix: string): NormalisedEntry[] {
  const byNumber = new Map<string, NormalisedEntry>();
  entries.forEach((e, i) => {
    const at = fieldPrefix === '' ? 'body' : `body/${i}`;
    const number = toE164(e.number, country);
    if (!number) throw new InvalidFieldError(`${at}/number`, notANumber(e.number, country));
    byNumber.set(number, { number, name: e.name ?? null, tier: e.tier ?? null, note: e.note ?? null, expiresAt: e.expiresAt ? new Date(e.expiresAt) : null });
  });
  return [...byNumber.values()];
}

/** Thrown out of a dry run's transaction, so that it rolls back; carries the answer. */
class RolledBack<T> extends Error {
  constructor(readonly result: T) {
    super('dry run');
  }
}

/** How many entries and numbers an audit entry of an array upsert shows; the rest are counted. */
export const AUDIT_SAMPLE = 100;

type EntryRow = {
  id: number;
  number: string;
  name: string | null;
  tier: string | null;
  note: string | null;
  expiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
};

/**
 * Upserts entries by number in one statement, however many (up to 10,000): Postgres unnests the
 * column arrays and `ON CONFLICT` updates existing numbers whose fields differ (one sent as it is
 * stored is left alone and counted neither inserted nor updated; a request that changes nothing
 * leaves no audit entry and reloads nothing). `xmax = 0` tells inserted rows apart.
 *
 * Audited as one `upsert-entries` entry. One entry: `before` is the row as it was (null when new),
 * `after` the row as written. An array: `before` is null when every number was new, else
 * `{entries, entriesOmitted}` (the rows it updated, as they were: the first AUDIT_SAMPLE by id, and how
 * many more); `after` is `{inserted, updated, numbers, numbersOmitted, entries, entriesOmitted}` (the
 * first AUDIT_SAMPLE numbers written, and the same updated rows as written).
 *
 * `replace` (an array only, as a CRM export is kept in step): in the same transaction, first every
 * entry of the list whose number is not sent is deleted, so the list then holds exactly the entries
 * sent; a reload reads the list as it was before the commit or as it is after, never half of it.
 * Audited as one `replace-entries` entry, as an array upsert is, with `removed` counted in `after`
 * and the removed rows as they were in `before` (`removed`: the first AUDIT_SAMPLE by id, and
 * `removedOmitted`); `before` is null when no row was updated or removed.
 */
export async function upsertVipEntries(
  prisma: PrismaClient,
  actor: Actor,
  slug: string,
  body: VipEntryInput | VipEntryInput[],
  country: CountryCode,
  bulkMs: number,
  opts: { mode?: VipWriteMode | undefined; allowEmpty?: boolean | undefined; dryRun?: boolean | undefined; maxRemoved?: number | undefined } = {},
) {
  const many = Array.isArray(body);
  const replace = opts.mode === 'replace';
  if (opts.maxRemoved !== undefined && !replace) {
    throw new InvalidFieldError(
      'querystring/maxRemoved',
      'limits what mode=replace removes: add mode=replace, or leave maxRemoved out (a merge removes nothing)',
    );
  }
  // One entry sent with mode=replace (a leftover query string on a script adding one VIP) would
  // leave that number alone in the list; an empty array (an export that came out empty) would
  // empty it. Both are refused unless meant.
  if (replace && !many) {
    throw new InvalidFieldError(
      'body',
      'mode=replace takes the whole list as an array: send [{"number": …}, …] (or leave mode out to add or update this one entry)',
    );
  }
  if (many && body.length === 0) {
    if (!replace) throw new InvalidFieldError('body', 'the array is empty: send at least one entry ([{"number": …}, …])');
    if (!opts.allowEmpty) {
      throw new InvalidFieldError(
        'body',
        `an empty array with mode=replace would remove every entry of VIP list '${slug}': send the list's entries, or add allowEmpty=true to the query string to empty it on purpose`,
      );
    }
  }
  const entries = normaliseEntries(many ? body : [body], country, many ? 'array' : '');
  const numbers = entries.map((e) => e.number);
  // A dry run is the write itself, rolled back: the same answer and the same refusals, nothing kept
  // (its audit entry included), and nothing announced, so no instance reloads the list for it.
  if (opts.dryRun) {
    const { announce: _none, ...quiet } = actor;
    return listWrite(prisma, bulkMs, async (tx) => {
      throw new RolledBack(await write(tx, quiet));
    }).catch((e: unknown) => {
      if (e instanceof RolledBack) return e.result as Awaited<ReturnType<typeof write>>;
      throw e;
    });
  }
  return listWrite(prisma, bulkMs, (tx) => write(tx, actor));

  async function write(tx: Prisma.TransactionClient, actor: Actor) {
    // The list's row held until commit: a concurrent delete of the list (which locks it FOR UPDATE)
    // either committed before, and the list is missing here (404), or waits for this import and then
    // deletes the list with its entries. Unlocked, the insert met the deleted list's foreign key and
    // was answered 500. FOR NO KEY UPDATE, not KEY SHARE: writes of entries to one list take turns,
    // as two imports of the same numbers in another order otherwise deadlock (500). Flows referring
    // to the list (KEY SHARE) do not wait for it.
    const id = await takeTurn(tx, slug);
    // Numbers not sent, deleted before the upsert; NOT EXISTS is an anti-join (hashed), not a scan
    // of the sent numbers for every row. The window count is of every deleted row, before LIMIT.
    const gone = replace
      ? await tx.$queryRaw<Array<EntryRow & { total: number }>>`
          WITH gone AS (
            DELETE FROM vip_entries v WHERE v.list_id = ${id}
              AND NOT EXISTS (SELECT 1 FROM unnest(${numbers}::text[]) AS s(number) WHERE s.number = v.number)
            RETURNING v.id, v.number, v.name, v.tier, v.note, v.expires_at, v.created_at, v.updated_at)
          SELECT g.id, g.number, g.name, g.tier, g.note, g.expires_at AS "expiresAt", g.created_at AS "createdAt",
                 g.updated_at AS "updatedAt", (count(*) OVER ())::int AS total
          FROM gone g ORDER BY g.id LIMIT ${AUDIT_SAMPLE}`
      : [];
    const removedCount = gone[0]?.total ?? 0;
    // A truncated export (12 rows of a CRM's 12,000) would remove every VIP caller it lacks.
    if (opts.maxRemoved !== undefined && removedCount > opts.maxRemoved) {
      throw new ConflictError(
        `mode=replace would remove ${removedCount} of the ${removedCount + (await tx.vipEntry.count({ where: { listId: id } }))} entries of VIP list '${slug}', more than maxRemoved=${opts.maxRemoved}: nothing was changed; check that the export is whole, or raise maxRemoved if so many are meant to go`,
      );
    }
    const sent = Prisma.sql`unnest(${numbers}::text[], ${entries.map((e) => e.name)}::text[],
                  ${entries.map((e) => e.tier)}::text[], ${entries.map((e) => e.note)}::text[],
                  ${entries.map((e) => e.expiresAt?.toISOString() ?? null)}::timestamptz[])
           AS e(number, name, tier, note, expires_at)`;
    // The rows this write will update, as they are (locked, so they are still so when it does).
    // An entry sent as it is stored is not updated (a sync script sending the whole list again):
    // it keeps its updatedAt, and is neither counted nor audited.
    // The changed rows are found first (MATERIALIZED), then the first AUDIT_SAMPLE by id: with the
    // ORDER BY id LIMIT on the join itself, Postgres without fresh statistics of the list (a list
    // being loaded batch after batch) walked the list in id order and scanned the sent entries
    // for every row, hoping for 100 changed ones early; when fewer changed (a list sent again), it
    // compared every row with every entry: 10,000 entries with long notes took minutes, and the
    // request ended in a 500 (the transaction had expired).
    const previous = await tx.$queryRaw<EntryRow[]>`
      WITH changed AS MATERIALIZED (
        SELECT v.id FROM vip_entries v JOIN ${sent} ON v.number = e.number
        WHERE v.list_id = ${id} AND (v.name, v.tier, v.note, v.expires_at) IS DISTINCT FROM (e.name, e.tier, e.note, e.expires_at))
      SELECT v.id, v.number, v.name, v.tier, v.note, v.expires_at AS "expiresAt", v.created_at AS "createdAt", v.updated_at AS "updatedAt"
      FROM vip_entries v WHERE v.id IN (SELECT id FROM changed ORDER BY id LIMIT ${AUDIT_SAMPLE})
      ORDER BY v.id FOR UPDATE OF v`;
    const rows = await tx.$queryRaw<Array<{ id: number; inserted: boolean }>>`
      INSERT INTO vip_entries (list_id, number, name, tier, note, expires_at, updated_at)
      SELECT ${id}, e.number, e.name, e.tier, e.note, e.expires_at, now()
      FROM ${sent}
      ON CONFLICT (list_id, number) DO UPDATE SET
        name = EXCLUDED.name, tier = EXCLUDED.tier, note = EXCLUDED.note,
        expires_at = EXCLUDED.expires_at, updated_at = now()
      WHERE (vip_entries.name, vip_entries.tier, vip_entries.note, vip_entries.expires_at)
            IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.tier, EXCLUDED.note, EXCLUDED.expires_at)
      RETURNING id, (xmax = 0) AS inserted`;
    const inserted = rows.filter((r) => r.inserted).length;
    const result = { inserted, updated: rows.length - inserted, ...(replace ? { removed: removedCount } : {}) };
    if (!many) {
      const entry = await tx.vipEntry.findUniqueOrThrow({ where: { listId_number: { listId: id, number: numbers[0]! } }, select: entrySelect });
      if (rows.length > 0) await recordChange(tx, actor, 'upsert-entries', ENTITY, slug, previous[0] ? audited(previous[0]) : null, audited(entry));
      return { many: false as const, entry, inserted: inserted === 1 };
    }
    if (rows.length === 0 && removedCount === 0) return { many: true as const, result };
    const written = await tx.vipEntry.findMany({ where: { id: { in: previous.map((r) => r.id) } }, select: entrySelect, orderBy: { id: 'asc' } });
    const entriesOmitted = Math.max(0, result.updated - previous.length);
    const removed = replace ? { removed: gone.map(({ total: _t, ...row }) => audited(row)), removedOmitted: removedCount - gone.length } : {};
    const before = previous.length > 0 || removedCount > 0 ? { entries: previous.map(audited), entriesOmitted, ...removed } : null;
    await recordChange(tx, actor, replace ? 'replace-entries' : 'upsert-entries', ENTITY, slug, before, {
      ...result,
      numbers: numbers.slice(0, AUDIT_SAMPLE),
      numbersOmitted: Math.max(0, numbers.length - AUDIT_SAMPLE),
      entries: written.map(audited),
      entriesOmitted,
    });
    return { many: true as const, result };
  }
}

export async function deleteVipEntry(prisma: PrismaClient, actor: Actor, slug: string, rawNumber: string, country: CountryCode, bulkMs: number) {
  const number = toE164(rawNumber, country);
  if (!number) throw new InvalidFieldError('params/number', notANumber(rawNumber, country));
  return listWrite(prisma, bulkMs, async (tx) => {
    // Its turn among the list's writes, as an import's: read unlocked, `before` was the entry as an
    // import in progress had not yet changed it, and the audit showed fields it no longer had.
    const id = await takeTurn(tx, slug);
    const before = await tx.vipEntry.findUnique({ where: { listId_number: { listId: id, number } }, select: entrySelect });
    if (!before) throw new NotFoundError(`entry of ${ENTITY} ${slug}`, number);
    // deleteMany, not delete: when a concurrent delete of the entry commits first, this one finds
    // nothing to delete and is the same 404 as above (delete threw Prisma's P2025, an unnamed 404).
    const { count } = await tx.vipEntry.deleteMany({ where: { id: before.id } });
    if (count === 0) throw new NotFoundError(`entry of ${ENTITY} ${slug}`, number);
    await recordChange(tx, actor, 'delete-entry', ENTITY, slug, audited(before), null);
  });
}
