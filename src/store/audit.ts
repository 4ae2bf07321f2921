import { isDeepStrictEqual } from 'node:util';
import type { Prisma } from '../generated/prisma/client.js';
import { DEFAULT_PAGE_LIMIT } from '../schemas/common.js';
import type { PrismaClient } from './database.js';
import { parseId } from './ids.js';
import { timeRange } from './time-range.js';

/** Who makes an admin change: the API key's id (null for the service itself). */
export interface Actor {
  apiKeyId: string | null;
  /**
   * Told each RULES_CHANNEL payload the change announces, before its commit: the admin request
   * answers once its own instance has loaded them (src/plugins/rules-written.ts).
   */
  announce?: (payload: string) => void;
}

/** Postgres channel on which every committed change to routing data is announced. */
export const RULES_CHANNEL = 'exoroute_rules';

type Tx = Prisma.TransactionClient;

/** JSON-safe copy for the audit trail (Dates → ISO strings, BigInts → strings). */
function snapshot(value: unknown): Prisma.InputJsonValue | undefined {
  if (value === null || value === undefined) return undefined;
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as Prisma.InputJsonValue;
}

/**
 * Records an admin write inside its transaction: one audit entry, and (for routing data) a
 * NOTIFY that Postgres delivers to every instance only when the transaction commits.
 */
export async function recordChange(
  tx: Tx,
  actor: Actor,
  action: string,
  entity: string,
  entityId: string,
  before: unknown,
  after: unknown,
  opts: { notify?: boolean } = {},
): Promise<void> {
  await tx.auditEntry.create({
    data: { apiKeyId: actor.apiKeyId, action, entity, entityId, before: snapshot(before), after: snapshot(after) },
  });
  if (opts.notify !== false) {
    const payload = `${entity}:${entityId}`;
    await tx.$executeRaw`SELECT pg_notify(${RULES_CHANNEL}, ${payload})`;
    actor.announce?.(payload);
  }
}

/** Thrown out of a write's transaction that would leave its object as it was; carries the object. */
class Unchanged extends Error {
  constructor(readonly object: unknown) {
    super('unchanged');
  }
}

/** The object without `updatedAt`, which every write sets anew. */
const content = (object: object) => ({ ...object, updatedAt: undefined });

/**
 * A PUT or PATCH that sends back what is stored (a config-as-code tool applying its files again)
 * changes nothing: `write` runs its transaction as usual and hands `before` and `after` to
 * `unlessUnchanged`, which, when they differ only in `updatedAt`, rolls the transaction back (no
 * new `updatedAt`, no audit entry, no NOTIFY and so no reload on every instance) and answers `before`.
 */
export async function unlessUnchanged<T extends object>(write: (unlessUnchanged: (before: T, after: T) => void) => Promise<T>): Promise<T> {
  try {
    return await write((before, after) => {
      if (isDeepStrictEqual(content(before), content(after))) throw new Unchanged(before);
    });
  } catch (err) {
    if (err instanceof Unchanged) return err.object as T;
    throw err;
  }
}

export async function listAudit(
  prisma: PrismaClient,
  q: {
    limit?: number | undefined;
    cursor?: string | undefined;
    entity?: string | undefined;
    entityId?: string | undefined;
    apiKeyId?: string | undefined;
    from?: string | undefined;
    to?: string | undefined;
  },
) {
  const limit = q.limit ?? DEFAULT_PAGE_LIMIT;
  const { from, to } = timeRange(q);
  // A cursor past bigint names no entry; the paging has ended.
  const before = q.cursor !== undefined ? parseId(q.cursor) : null;
  if (q.cursor !== undefined && before === null) return { items: [], nextCursor: null };
  const rows = await prisma.auditEntry.findMany({
    where: {
      ...(q.entity ? { entity: q.entity } : {}),
      ...(q.entityId ? { entityId: q.entityId } : {}),
      ...(q.apiKeyId ? { apiKeyId: q.apiKeyId } : {}),
      ...(from || to ? { at: { ...(from ? { gte: from } : {}), ...(to ? { lt: to } : {}) } } : {}),
      ...(before !== null ? { id: { lt: before } } : {}),
    },
    orderBy: { id: 'desc' },
    take: limit + 1,
  });
  const page = rows.slice(0, limit);
  return {
    items: page.map((r) => ({ ...r, id: r.id.toString() })),
    nextCursor: rows.length > limit ? page[page.length - 1]!.id.toString() : null,
  };
}
