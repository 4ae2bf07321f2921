import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import type { Logger } from 'pino';
import { PrismaClient } from '../generated/prisma/client.js';

const CLOSE_TIMEOUT_MS = 3000;

export type { PrismaClient } from '../generated/prisma/client.js';

export interface Database {
  prisma: PrismaClient;
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
  // A broken idle connection must not crash the process; the pool replaces it.
  pool.on('error', (err) => log.warn({ err }, 'idle database connection failed'));
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  let closed = false;
  return {
    prisma,
    pool,
    url,
    async close() {
      if (closed) return;
      closed = true;
      // pool.end() waits for connections in use; one stuck on a stalled server must not hold
      // the shutdown forever.
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<void>((r) => (timer = setTimeout(r, CLOSE_TIMEOUT_MS).unref()));
      await Promise.race([prisma.$disconnect().then(() => pool.end()), gaveUp]);
      clearTimeout(timer);
    },
  };
}
