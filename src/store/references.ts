import type { Prisma } from '../generated/prisma/client.js';
import { ConflictError } from '../errors.js';
import { REFERENCE_KEYS } from '../schemas/flow.js';

type Tx = Prisma.TransactionClient;

/** Table of each kind of object, for the row lock below (a fixed list: never user input). */
const TABLES = { 'vip-list': 'vip_lists', schedule: 'schedules', 'dial-group': 'dial_groups' } as const;

/**
 * Which of these slugs of a kind exist, each row held FOR KEY SHARE until commit: a writer that
 * refers to them calls this in its transaction, so a concurrent delete (which locks the row before
 * looking for users, below) either committed before and the slug is missing here, or waits for this
 * writer and then sees its reference. KEY SHARE: an update of the object that keeps its key (a new
 * name, new members) need not wait.
 */
export async function existingSlugs(tx: Tx, entity: keyof typeof TABLES, slugs: Iterable<string>): Promise<Set<string>> {
  const wanted = [...new Set(slugs)];
  if (wanted.length === 0) return new Set();
  const rows = await tx.$queryRawUnsafe<Array<{ slug: string }>>(`SELECT slug FROM ${TABLES[entity]} WHERE slug = ANY($1::text[]) FOR KEY SHARE`, wanted);
  return new Set(rows.map((r) => r.slug));
}

/** Slugs of the flows whose rules or actions refer to the object. */
export async function flowsReferring(tx: Tx, entity: string, slug: string): Promise<string[]> {
  const keys = (REFERENCE_KEYS as Record<string, { when: readonly string[]; action: readonly string[] } | undefined>)[entity];
  const conditionKeys = [...(keys?.when ?? [])];
  const actionKeys = [...(keys?.action ?? [])];
  if (conditionKeys.length === 0 && actionKeys.length === 0) return [];
  const rows = await tx.$queryRaw<Array<{ slug: string }>>`
    SELECT f.slug FROM flows f
    CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(f.rules) = 'array' THEN f.rules ELSE '[]'::jsonb END AS rules) fr
    WHERE EXISTS (
      SELECT 1 FROM jsonb_array_elements(fr.rules) r, unnest(${conditionKeys}::text[]) k
      WHERE r -> 'when' ->> k = ${slug})
    OR EXISTS (
      SELECT 1 FROM unnest(${actionKeys}::text[]) k,
             (SELECT r -> 'then' AS a FROM jsonb_array_elements(fr.rules) r
              UNION ALL SELECT f.otherwise UNION ALL SELECT f.on_error) acts
      -- a slug, or a list of slugs (dialGroups)
      WHERE jsonb_typeof(acts.a) = 'object' AND (acts.a ->> k = ${slug} OR (acts.a -> k) @> jsonb_build_array(${slug}::text)))
    ORDER BY f.slug`;
  return rows.map((r) => r.slug);
}

/** Slugs of the dial groups with a member whose shift is the schedule. */
async function dialGroupsUsingSchedule(tx: Tx, slug: string): Promise<string[]> {
  const rows = await tx.dialGroup.findMany({
    where: { members: { some: { scheduleSlug: slug } } },
    select: { slug: true },
    orderBy: { slug: 'asc' },
  });
  return rows.map((r) => r.slug);
}

const named = (kind: string, slugs: string[]) => `${kind}${slugs.length > 1 ? 's' : ''} ${slugs.map((s) => `'${s}'`).join(', ')}`;

/**
 * 409 naming the flows (and, for a schedule, the dial groups using it as a shift) when anything
 * still refers to the object. Call it in the deleting transaction: it locks the object's row first,
 * so a writer that checks the object exists with FOR KEY SHARE either commits before the check (and is
 * seen) or waits and then finds the object gone.
 */
export async function assertUnreferenced(tx: Tx, entity: string, slug: string): Promise<void> {
  const table = (TABLES as Record<string, string>)[entity];
  if (table) await tx.$executeRawUnsafe(`SELECT 1 FROM ${table} WHERE slug = $1 FOR UPDATE`, slug);
  const flows = await flowsReferring(tx, entity, slug);
  const groups = entity === 'schedule' ? await dialGroupsUsingSchedule(tx, slug) : [];
  const users = [...(flows.length > 0 ? [named('flow', flows)] : []), ...(groups.length > 0 ? [named('dial group', groups)] : [])];
  if (users.length > 0) {
    throw new ConflictError(`${entity} '${slug}' is used by ${users.join(' and by ')}; change or delete those first`);
  }
}
