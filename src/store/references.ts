import type { Prisma } from '../generated/prisma/client.js';
import { ConflictError } from '../errors.js';

/** Condition keys in flow rules (`when`) that name an object of each kind. */
const REFERENCING_KEYS: Record<string, string[]> = {
  'vip-list': ['callerIn', 'callerNotIn'],
  schedule: ['openBy', 'closedBy'],
};

/** Slugs of the flows whose rules refer to the object. */
export async function flowsReferring(tx: Prisma.TransactionClient, entity: string, slug: string): Promise<string[]> {
  const keys = REFERENCING_KEYS[entity] ?? [];
  if (keys.length === 0) return [];
  const rows = await tx.$queryRaw<Array<{ slug: string }>>`
    SELECT f.slug FROM flows f
    WHERE EXISTS (
      SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(f.rules) = 'array' THEN f.rules ELSE '[]'::jsonb END) r,
                    unnest(${keys}::text[]) k
      WHERE r -> 'when' ->> k = ${slug})
    ORDER BY f.slug`;
  return rows.map((r) => r.slug);
}

/** 409 naming the flows when any flow still refers to the object. */
export async function assertUnreferenced(tx: Prisma.TransactionClient, entity: string, slug: string): Promise<void> {
  const flows = await flowsReferring(tx, entity, slug);
  if (flows.length > 0) {
    throw new ConflictError(`${entity} '${slug}' is used by flow${flows.length > 1 ? 's' : ''} ${flows.map((f) => `'${f}'`).join(', ')}; change or delete those first`);
  }
}
