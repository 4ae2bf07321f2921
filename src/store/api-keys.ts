import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { inTransaction, type PrismaClient } from './database.js';
import type { ApiKeyRole } from '../schemas/api-key.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { recordChange, type Actor } from './audit.js';
import { withDeadline } from '../lib/deadline.js';
import { count } from '../lib/count.js';

/** The bootstrap key's row has this fixed id, so a restart updates it instead of adding another. */
export const BOOTSTRAP_KEY_ID = '00000000-0000-4000-8000-000000000001';

export const hashKey = (key: string): string => createHash('sha256').update(key).digest('hex');
export const newKey = (): string => `exr_${randomBytes(32).toString('base64url')}`;

/** What newKey makes: `exr_` and 43 random base64url characters (256 bits). */
const GENERATED_KEY = /^exr_[A-Za-z0-9_-]{43}$/;
/** Characters of a generated key kept as its prefix: `exr_` and 6 of its 43 random ones. */
const GENERATED_PREFIX_LENGTH = 10;
/**
 * Characters of any other key (an operator's ADMIN_API_KEY, 16 characters or more) kept as its
 * prefix: a viewer key lists every key, and 10 of, say, 17 characters would leave little to guess.
 */
const CHOSEN_PREFIX_LENGTH = 4;

/** The prefix stored for a key: 10 characters of a generated key, 4 of any other. */
export const prefixOf = (key: string): string => key.slice(0, GENERATED_KEY.test(key) ? GENERATED_PREFIX_LENGTH : CHOSEN_PREFIX_LENGTH);

/**
 * The prefix as shown, from the stored one. Rows written before prefixOf kept 4 characters of an
 * operator's key held 10 of any key: a prefix not `exr_…` is cut to 4 here, so such a row shows 4
 * at once, before the next start rewrites it (ensureBootstrapKey). An old 10-character row of an
 * operator's key that itself begins with `exr_` cannot be told from a generated one here; it is
 * rewritten at the next start.
 */
export const shownPrefix = (prefix: string): string => (prefix.startsWith('exr_') ? prefix : prefix.slice(0, CHOSEN_PREFIX_LENGTH));

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

/** A key's `last_used_at` is written at most once in this time per key and instance (and, in SQL, across instances). */
export const KEY_USE_WRITE_INTERVAL_MS = 60_000;
/** How long close() waits for writes in flight. */
const KEY_USE_CLOSE_WAIT_MS = 2000;

/** Sets a key's `last_used_at` to now, unless it was set less than a minute ago (by any instance). */
export async function markKeyUsed(pool: pg.Pool, id: string): Promise<void> {
  await pool.query(
    `UPDATE api_keys SET last_used_at = now()
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
    [id],
  );
}

/**
 * Records that keys are used (`lastUsedAt`), for the auth plugin: record() is called for each
 * request a key is accepted for and never waits or throws. It writes at most once a minute per key
 * (remembered in this process: one timestamp per key id that has authenticated, so bounded by the
 * number of keys), in the background; a failed write is logged as a warning, and the next one is
 * tried a minute later. So `lastUsedAt` may be up to about a minute behind.
 */
export class KeyUseRecorder {
  private readonly lastWrite = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  record(id: string): void {
    const now = this.now();
    const last = this.lastWrite.get(id);
    if (last !== undefined && now - last < KEY_USE_WRITE_INTERVAL_MS) return;
    this.lastWrite.set(id, now);
    const write: Promise<void> = markKeyUsed(this.pool, id)
      .catch((err: Error) => this.log.warn({ err, apiKeyId: id }, 'could not record the use of an API key (lastUsedAt)'))
      .finally(() => this.inFlight.delete(write));
    this.inFlight.add(write);
  }

  /** Resolves once the writes in flight are done, or after a short wait if Postgres does not answer. */
  async close(): Promise<void> {
    if (this.inFlight.size === 0) return;
    await withDeadline(Promise.allSettled([...this.inFlight]), KEY_USE_CLOSE_WAIT_MS, () => 'lastUsedAt writes still pending at close', { unref: true }).catch(
      (err: Error) => this.log.warn({ err }, 'gave up waiting for lastUsedAt writes at close'),
    );
  }
}

const publicFields = { id: true, name: true, role: true, prefix: true, createdAt: true, revokedAt: true, lastUsedAt: true } as const;

/** A row as the API shows it: its role typed, its prefix as shownPrefix makes it. */
const withRole = <T extends { role: string; prefix: string }>(row: T) => ({ ...row, role: row.role as ApiKeyRole, prefix: shownPrefix(row.prefix) });

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
    // The row locked first: of two revokes at once the second waits, then finds it revoked (409).
    await tx.$queryRaw`SELECT id FROM api_keys WHERE id = ${id}::uuid FOR UPDATE`;
    const before = await tx.apiKey.findUnique({ where: { id }, select: publicFields });
    if (!before) throw new NotFoundError('api key', id);
    if (before.revokedAt) throw new ConflictError(`api key '${id}' was already revoked at ${before.revokedAt.toISOString()}`);
    const after = await tx.apiKey.update({ where: { id }, data: { revokedAt: new Date() }, select: publicFields });
    await recordChange(tx, actor, 'revoke', 'api-key', id, before, after, { notify: false });
    return withRole(after);
  });
}

/** The key file holds no usable key (an operator edited it): the start stops, naming the file. */
export class KeyFileError extends Error {
  constructor(file: string, length: number) {
    super(
      `${file} holds ${count(length, 'character')}; an admin API key needs 16 to 200 (as ADMIN_API_KEY does). ` +
        'Put such a key in it, or delete the file to have one generated.',
    );
    this.name = 'KeyFileError';
  }
}

/**
 * The bootstrap key given is already the key of a key created through the admin API (revoked or
 * not): one key cannot be both, as only its hash is stored. The start stops, naming that key.
 */
export class BootstrapKeyTakenError extends Error {
  constructor(source: string, taken: { id: string; name: string; revoked: boolean }) {
    super(
      `${source} is the key of the API key '${taken.name}' (id ${taken.id}${taken.revoked ? ', revoked' : ''}) created through the admin API; ` +
        'the bootstrap key must be a key of its own: choose another (e.g. openssl rand -hex 24)',
    );
    this.name = 'BootstrapKeyTakenError';
  }
}

/** The bootstrap key's row as its audit entries show it (the API's fields; no hash). */
const BOOTSTRAP_ROW = `id, name, role, prefix, created_at AS "createdAt", revoked_at AS "revokedAt", last_used_at AS "lastUsedAt"`;
interface BootstrapRow {
  id: string;
  name: string;
  role: string;
  prefix: string;
  createdAt: Date;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
}
/** A row as JSON for the audit trail (its hash left out), its prefix as the API shows it. */
const shown = ({ id, name, role, prefix, createdAt, revokedAt, lastUsedAt }: BootstrapRow) =>
  JSON.stringify({ id, name, role, prefix: shownPrefix(prefix), createdAt, revokedAt, lastUsedAt });

/**
 * Makes the bootstrap admin key valid: ADMIN_API_KEY when set, else a key generated once and kept
 * in DATA_DIR/admin-api-key (KeyFileError if that file holds too short or long a key;
 * BootstrapKeyTakenError if the key is one created through the API). Returns the key and whether it was generated just now (print it then).
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
      if (key.length < 16 || key.length > 200) throw new KeyFileError(file, key.length);
    } else {
      key = newKey();
      generated = true;
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, `${key}\n`, { mode: 0o600 });
    }
  }
  const taken = await pool.query<{ id: string; name: string; revoked: boolean }>(
    'SELECT id, name, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE hash = $1 AND id <> $2',
    [hashKey(key), BOOTSTRAP_KEY_ID],
  );
  if (taken.rows[0]) throw new BootstrapKeyTakenError(file ?? 'ADMIN_API_KEY', taken.rows[0]);
  await inTransaction(pool, 'BEGIN', async (client) => {
    // Locked: of two instances starting with a new key, the second finds it stored, and audits nothing.
    // The lock first: a row not there yet (the first start) takes no FOR UPDATE lock. Two-int key
    // ('boot'), a key space apart from the migrator's and the retention job's bigint keys.
    await client.query('SELECT pg_advisory_xact_lock(1651470196, 0)');
    const before = await client.query<{ hash: string } & BootstrapRow>(`SELECT hash, ${BOOTSTRAP_ROW} FROM api_keys WHERE id = $1 FOR UPDATE`, [
      BOOTSTRAP_KEY_ID,
    ]);
    const after = await client.query<BootstrapRow>(
      `INSERT INTO api_keys (id, name, role, hash, prefix) VALUES ($1, 'bootstrap', 'admin', $2, $3)
       ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, role = EXCLUDED.role, hash = EXCLUDED.hash, prefix = EXCLUDED.prefix, revoked_at = NULL
       RETURNING ${BOOTSTRAP_ROW}`,
      [BOOTSTRAP_KEY_ID, hashKey(key), prefixOf(key)],
    );
    // The first start makes an admin credential, and a restart with another ADMIN_API_KEY (or key
    // file) replaces one: audited like a key made or revoked through the API, by the service
    // itself, with the keys' prefixes only.
    const was = before.rows[0];
    if (!was || was.hash !== hashKey(key)) {
      await client.query(`INSERT INTO audit_entries (api_key_id, action, entity, entity_id, before, after) VALUES (NULL, $1, 'api-key', $2, $3, $4)`, [
        was ? 'replace' : 'create',
        BOOTSTRAP_KEY_ID,
        was ? shown(was) : null,
        shown(after.rows[0]!),
      ]);
    }
  });
  return file ? { key, generated, file } : { key, generated };
}
