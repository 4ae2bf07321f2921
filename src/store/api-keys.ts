import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { PrismaClient } from './database.js';
import type { ApiKeyRole } from '../schemas/api-key.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { recordChange, type Actor } from './audit.js';

/** The bootstrap key's row has this fixed id, so a restart updates it instead of adding another. */
export const BOOTSTRAP_KEY_ID = '00000000-0000-4000-8000-000000000001';

export const hashKey = (key: string): string => createHash('sha256').update(key).digest('hex');
export const newKey = (): string => `exr_${randomBytes(32).toString('base64url')}`;
const prefixOf = (key: string): string => key.slice(0, 10);

export interface AuthenticatedKey {
  id: string;
  role: ApiKeyRole;
}

/** Finds a live key. The lookup is by sha256 digest, so timing reveals nothing about the key. */
export async function findKey(prisma: PrismaClient, key: string): Promise<AuthenticatedKey | null> {
  const row = await prisma.apiKey.findUnique({ where: { hash: hashKey(key) }, select: { id: true, role: true, revokedAt: true } });
  if (!row || row.revokedAt) return null;
  return { id: row.id, role: row.role as ApiKeyRole };
}

const publicFields = { id: true, name: true, role: true, prefix: true, createdAt: true, revokedAt: true, lastUsedAt: true } as const;

const withRole = <T extends { role: string }>(row: T) => ({ ...row, role: row.role as ApiKeyRole });

export async function listKeys(prisma: PrismaClient) {
  return (await prisma.apiKey.findMany({ select: publicFields, orderBy: { createdAt: 'asc' } })).map(withRole);
}

export async function createKey(prisma: PrismaClient, actor: Actor, input: { name: string; role: ApiKeyRole }) {
  const key = newKey();
  const row = await prisma.$transaction(async (tx) => {
    const created = await tx.apiKey.create({
      data: { name: input.name, role: input.role, hash: hashKey(key), prefix: prefixOf(key) },
      select: publicFields,
    });
    await recordChange(tx, actor, 'create', 'api-key', created.id, null, created, { notify: false });
    return created;
  });
  return { ...withRole(row), key };
}

export async function revokeKey(prisma: PrismaClient, actor: Actor, id: string) {
  if (id === BOOTSTRAP_KEY_ID)
    throw new ConflictError('the bootstrap key cannot be revoked here; change ADMIN_API_KEY (or the key file under DATA_DIR) and restart');
  return prisma.$transaction(async (tx) => {
    const before = await tx.apiKey.findUnique({ where: { id }, select: publicFields });
    if (!before || before.revokedAt) throw new NotFoundError('api key', id);
    const after = await tx.apiKey.update({ where: { id }, data: { revokedAt: new Date() }, select: publicFields });
    await recordChange(tx, actor, 'revoke', 'api-key', id, before, after, { notify: false });
    return withRole(after);
  });
}

/**
 * Makes the bootstrap admin key valid: ADMIN_API_KEY when set, else a key generated once and kept
 * in DATA_DIR/admin-api-key. Returns the key and whether it was generated just now (print it then).
 * Plain SQL on the pool: start-up does not instantiate Prisma (see loadSnapshot).
 */
export async function ensureBootstrapKey(
  pool: pg.Pool,
  opts: { configuredKey?: string | undefined; dataDir: string },
): Promise<{ key: string; generated: boolean; file?: string }> {
  let key = opts.configuredKey;
  let generated = false;
  let file: string | undefined;
  if (!key) {
    file = path.resolve(opts.dataDir, 'admin-api-key');
    if (existsSync(file)) {
      key = (await readFile(file, 'utf8')).trim();
    } else {
      key = newKey();
      generated = true;
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, `${key}\n`, { mode: 0o600 });
    }
  }
  await pool.query(
    `INSERT INTO api_keys (id, name, role, hash, prefix) VALUES ($1, 'bootstrap', 'admin', $2, $3)
     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, role = EXCLUDED.role, hash = EXCLUDED.hash, prefix = EXCLUDED.prefix, revoked_at = NULL`,
    [BOOTSTRAP_KEY_ID, hashKey(key), prefixOf(key)],
  );
  return file ? { key, generated, file } : { key, generated };
}
