import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import type { Logger } from 'pino';
import { PrismaClient } from '../generated/prisma/client.js';
import { DeadlineExceeded, withDeadline } from '../lib/deadline.js';

const CLOSE_TIMEOUT_MS = 3000;

export type { PrismaClient } from '../generated/prisma/client.js';

export interface Database {
  /** Made at first use (admin API): see openDatabase. */
  readonly prisma: PrismaClient;
  /** Whether anything has used `prisma` yet. */
  readonly prismaStarted: boolean;
  /** The pool Prisma runs on; also used for raw bulk statements and health checks. */
  pool: pg.Pool;
  url: string;
  close(): Promise<void>;
}

/** Opens a pool and a Prisma client on it. Nothing is connected until the first query. */
export function openDatabase(url: string, log: Logger, opts: { max?: number } = {}): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000,
  });
  // Made at first use: Prisma instantiates its query compiler (~70 MB of WebAssembly) at its first
  // query, and an instance that only answers callbacks never needs it (rules load with plain SQL).
  let prisma: PrismaClient | null = null;
  let closed = false;
  // A broken idle connection must not crash the process; the pool replaces it. At shutdown,
  // pool.end() returns before the server has seen every connection go, and stopping the embedded
  // Postgres right after ends those with `57P01 admin_shutdown`: expected, not worth a warning.
  // The error alone: pg-pool hangs the pg client on it (`err.client`), whole state and cancel key.
  pool.on('error', (err) => {
    const { code } = err as { code?: string };
    if (closed && code === '57P01') log.debug({ err: err.message, code }, 'database connection ended by the server at shutdown');
    else log.warn({ err: err.message, code }, 'idle database connection failed');
  });
  return {
    get prisma() {
      prisma ??= new PrismaClient({ adapter: new PrismaPg(pool) });
      return prisma;
    },
    get prismaStarted() {
      return prisma !== null;
    },
    pool,
    url,
    async close() {
      if (closed) return;
      closed = true;
      // pool.end() waits for connections in use; one stuck on a stalled server must not hold
      // the shutdown forever.
      const closing = (prisma?.$disconnect() ?? Promise.resolve()).then(() => pool.end());
      await withDeadline(closing, CLOSE_TIMEOUT_MS, () => 'gave up waiting for the pool to close', { unref: true }).catch((err: Error) => {
        if (!(err instanceof DeadlineExceeded)) throw err;
      });
    },
  };
}

/**
 * `work` in one transaction (`begin`: BEGIN with its options) on one pooled connection, committed;
 * on failure rolled back, and a connection whose rollback fails too is dropped, not reused.
 */
export async function inTransaction<T>(pool: pg.Pool, begin: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    await client.query(begin);
    const out = await work(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => (failed = e));
    throw err;
  } finally {
    client.release(failed);
  }
}
