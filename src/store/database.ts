import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import type { Logger } from 'pino';
import { PrismaClient } from '../generated/prisma/client.js';
import { DeadlineExceeded, withDeadline } from '../lib/deadline.js';
import { ADMIN_BULK_STATEMENT_TIMEOUT_MS, ADMIN_STATEMENT_TIMEOUT_MS } from '../config.js';

const CLOSE_TIMEOUT_MS = 3000;
/** Connections of the callbacks' pool (`pool`). */
export const POOL_MAX = 10;
/**
 * Connections of the admin API's pool (`adminPool`), apart from the callbacks': admin requests that
 * hold theirs for long (slow CDR lists, CSV downloads, VIP imports queueing on one list's lock)
 * wait for one another here and leave the callbacks' connections alone.
 */
export const ADMIN_POOL_MAX = 4;
/**
 * A transaction of this process whose connection sits this long between statements is ended by
 * Postgres, its locks with it. A process that freezes or loses its network mid-transaction (an
 * availability write holds the agent's lock across round trips) otherwise leaves it open until the
 * dead TCP connection is noticed, about 2 h: every instance's dial events and re-fetches of that
 * agent wait behind it, each holding one of its pool's connections. exoroute's own transactions
 * never pause this long between statements: Prisma's end after 5 s, and a VIP list's writes, which
 * may take 50 s, spend it waiting for the list's lock inside a statement.
 */
export const IDLE_IN_TRANSACTION_MS = 10_000;
/**
 * Longest wait for Postgres' answer to a statement of the callbacks' pool before it is given up
 * (withQueryTimeout) and its connection dropped: dial-state statements, dial events, a re-fetch's
 * read of the call's first digits, CDR batch inserts, every statement of an agent's availability
 * write, and rules loads. A connection that died without a word (a failover to another host, a
 * crash of Postgres' machine, a firewall that drops it) otherwise waits for the kernel to give up,
 * about 15 minutes, holding up what comes behind it: the dial state is asked one statement at a
 * time (every Dial Whom / Connect answered onError meanwhile, however well Postgres answers on new
 * connections), rules loads take turns (the instance routes on the rules it had), and each dial
 * event or availability write keeps a pool connection.
 */
export const QUERY_TIMEOUT_MS = 30_000;
/**
 * Whether `err` (or what it wraps) is a statement Postgres cancelled at its `statement_timeout`
 * (57014, which a cancel asked by hand shares with another message). Prisma carries pg's code and
 * message as its driver adapter's cause.
 */
export function isStatementTimeout(err: unknown): boolean {
  return causes(err).some((e) => {
    const meta = (e as { meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; originalMessage?: unknown } } } }).meta;
    const adapter = meta?.driverAdapterError?.cause;
    const code = adapter?.originalCode ?? e.code;
    const message = adapter?.originalMessage ?? e.message;
    return code === '57014' && typeof message === 'string' && message.includes('statement timeout');
  });
}

/**
 * How much longer than its statement_timeout an admin statement is waited for before its connection
 * counts as dead (adminClient): Postgres' cancel, and its answer, on a live one come well within it.
 */
export const ADMIN_DEAD_CONNECTION_GRACE_MS = 5000;

/** pg's error for a statement given up after its `query_timeout`. */
export const isQueryReadTimeout = (err: unknown): boolean => causes(err).some((e) => e.message === 'Query read timeout');

/**
 * The admin API's pool's connections (pg.Pool's `Client`). Postgres ends an admin statement at its
 * statement_timeout, so one still unanswered `deadAfterMs` later (the longest statement_timeout of
 * that pool and a grace) is on a connection that died without a word (a failover, a NAT or firewall
 * that dropped it): it is given up (pg's `query_timeout`, 'Query read timeout'), and the connection
 * ended there and then. Otherwise the request waited for the kernel to give the connection up, about
 * 15 minutes; and Prisma, whose ROLLBACK queued behind the lost statement, would hand the connection
 * back to the pool for the next request to wait on. A COPY (a CSV export, which streams for as long
 * as it takes) is left alone.
 */
function adminClient(deadAfterMs: number): typeof pg.Client {
  return class AdminClient extends pg.Client {
    // biome-ignore lint/suspicious/noExplicitAny: pg.Client.query's overloads, passed on as they came
    override query(...args: any[]): any {
      // biome-ignore lint/suspicious/noExplicitAny: as above
      const query = (...passed: any[]) => (super.query as (...a: any[]) => any).apply(this, passed);
      const [config] = args;
      if (typeof config?.submit === 'function') return query(...args);
      const drop = (err: unknown) => {
        if (isQueryReadTimeout(err)) void this.end();
      };
      args[0] = { ...(typeof config === 'string' ? { text: config } : config), query_timeout: config?.query_timeout ?? deadAfterMs };
      const callback = args.findIndex((a) => typeof a === 'function');
      if (callback >= 0) {
        const given = args[callback];
        args[callback] = (err: unknown, res: unknown) => {
          drop(err);
          given(err, res);
        };
        return query(...args);
      }
      const answer = query(...args);
      answer.then(undefined, drop);
      return answer;
    }
  };
}

/** Silence on a pooled connection after which the kernel starts TCP keepalive probes (openDatabase). */
export const KEEPALIVE_IDLE_MS = 30_000;

/** Longest a query waits for a pool connection (or for a new one to connect) before it fails. */
export const POOL_WAIT_MS = 5000;

/**
 * pg-pool's error for a query that waited POOL_WAIT_MS for one of the pool's connections, all in
 * use (a connection Postgres does not accept fails otherwise). Prisma passes it on as it is.
 */
export const isPoolWaitTimeout = (err: unknown): boolean => err instanceof Error && err.message === 'timeout exceeded when trying to connect';

/**
 * Codes of a database that is down, restarting or unreachable, as Prisma (P1001 can't reach, P1002
 * timed out, P1017 connection closed), pg and Node (a refused or reset socket) and Postgres (57P01–03
 * shutting down or starting up, class 08 connection exceptions) give them.
 */
const UNAVAILABLE = /^(P1001|P1002|P1017|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|57P0[123]|08\w{3})$/;

/** An error or one it wraps, as a database error's code and message are read from it. */
export interface Cause {
  code?: unknown;
  message?: unknown;
  cause?: unknown;
}

/**
 * `err` and what it wraps (`cause`), outermost first, at most 5 deep: the code that says what
 * happened (Postgres', pg's, Node's) may be on an error wrapped in another.
 */
export function causes(err: unknown): Cause[] {
  const chain: Cause[] = [];
  for (let e = err as Cause | undefined; e && chain.length < 5; e = e.cause as Cause | undefined) chain.push(e);
  return chain;
}

/** Whether `err` (or what it wraps) says the database could not be reached, rather than that a statement failed. */
export function isDatabaseUnavailable(err: unknown): boolean {
  return causes(err).some(
    (e) => (typeof e.code === 'string' && UNAVAILABLE.test(e.code)) || (typeof e.message === 'string' && /^Connection terminated/.test(e.message)),
  );
}

export type { PrismaClient } from '../generated/prisma/client.js';

export interface Database {
  /** Made at first use (admin API): see openDatabase. */
  readonly prisma: PrismaClient;
  /** Whether anything has used `prisma` yet. */
  readonly prismaStarted: boolean;
  /**
   * The callbacks' pool: dial state, dial events, CDRs, rules loads, health checks and the
   * background jobs. No admin request uses it.
   */
  pool: pg.Pool;
  /** The admin API's pool: Prisma runs on it, and so do the admin routes' own statements. */
  adminPool: pg.Pool;
  url: string;
  close(): Promise<void>;
}

/**
 * Opens the two pools (the callbacks', and the admin API's) and a Prisma client on the admin one.
 * Nothing is connected until the first query.
 */
export function openDatabase(
  url: string,
  log: Logger,
  opts: { max?: number; adminMax?: number; adminStatementTimeoutMs?: number; adminBulkStatementTimeoutMs?: number } = {},
): Database {
  // Made at first use: Prisma instantiates its query compiler (~70 MB of WebAssembly) at its first
  // query, and an instance that only answers callbacks never needs it (rules load with plain SQL).
  let prisma: PrismaClient | null = null;
  let closed = false;
  const open = (max: number, setup: string, Client?: typeof pg.Client) => {
    const opened = new pg.Pool({
      connectionString: url,
      ...(Client ? { Client } : {}),
      max,
      connectionTimeoutMillis: POOL_WAIT_MS,
      idleTimeoutMillis: 30000,
      // A connection that waits for Postgres with nothing of its own unanswered (a CSV export's COPY,
      // which no timeout gives up, waiting for its first rows or for more) sends nothing, so one that
      // died without a word was never found: it held an admin connection and an export's place until
      // a restart. With keepalive, the kernel probes it after 30 s of silence and ends it when the
      // probes go unanswered (Linux: 9 probes 75 s apart, net.ipv4.tcp_keepalive_*).
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
      // Set on each new connection before the pool hands it out (pg-pool awaits this hook; a
      // connection whose SET fails is ended and its caller gets the error), not as a startup
      // parameter, which PgBouncer refuses unless told to ignore it. Not from a 'connect' listener:
      // that runs beside the caller's first query on the same client, which pg 8 warns of and pg 9
      // refuses.
      onConnect: (client) => client.query(setup),
    });
    // A broken idle connection must not crash the process; the pool replaces it. At shutdown,
    // pool.end() returns before the server has seen every connection go, and stopping the embedded
    // Postgres right after ends those with `57P01 admin_shutdown`: expected, not worth a warning.
    // The error alone: pg-pool hangs the pg client on it (`err.client`), whole state and cancel key.
    opened.on('error', (err) => {
      const { code } = err as { code?: string };
      if (closed && code === '57P01') log.debug({ err: err.message, code }, 'database connection ended by the server at shutdown');
      else log.warn({ err: err.message, code }, 'idle database connection failed');
    });
    return opened;
  };
  const idle = `SET idle_in_transaction_session_timeout = ${IDLE_IN_TRANSACTION_MS}`;
  const pool = open(opts.max ?? POOL_MAX, idle);
  // The callbacks' statements have their own bounds (QUERY_TIMEOUT_MS, client side); the admin API's, Postgres'.
  const statementMs = opts.adminStatementTimeoutMs ?? ADMIN_STATEMENT_TIMEOUT_MS;
  const longestMs = Math.max(statementMs, opts.adminBulkStatementTimeoutMs ?? ADMIN_BULK_STATEMENT_TIMEOUT_MS);
  const adminPool = open(
    opts.adminMax ?? ADMIN_POOL_MAX,
    `${idle}; SET statement_timeout = ${statementMs}`,
    adminClient(longestMs + ADMIN_DEAD_CONNECTION_GRACE_MS),
  );
  return {
    get prisma() {
      prisma ??= new PrismaClient({ adapter: new PrismaPg(adminPool) });
      return prisma;
    },
    get prismaStarted() {
      return prisma !== null;
    },
    pool,
    adminPool,
    url,
    async close() {
      if (closed) return;
      closed = true;
      // pool.end() waits for connections in use; one stuck on a stalled server must not hold
      // the shutdown forever.
      const closing = (prisma?.$disconnect() ?? Promise.resolve()).then(() => Promise.all([pool.end(), adminPool.end()]));
      await withDeadline(closing, CLOSE_TIMEOUT_MS, () => 'gave up waiting for the pool to close', { unref: true }).catch((err: Error) => {
        if (!(err instanceof DeadlineExceeded)) throw err;
      });
    },
  };
}

/**
 * `query` with pg's `query_timeout` (which @types/pg leaves out of QueryConfig): pg gives the
 * statement up after `timeoutMs`, failing it with 'Query read timeout', and pool.query then drops its
 * connection. None when `timeoutMs` is 0 or absent.
 */
export function withQueryTimeout<I = unknown[]>(query: string | pg.QueryConfig<I>, timeoutMs: number | undefined): pg.QueryConfig<I> {
  const config = typeof query === 'string' ? { text: query } : query;
  if (!timeoutMs) return config;
  const timed: pg.QueryConfig<I> & { query_timeout: number } = { ...config, query_timeout: timeoutMs };
  return timed;
}

/**
 * `work` in one transaction (`begin`: BEGIN with its options) on one pooled connection, committed;
 * on failure rolled back, and a connection whose rollback fails too is dropped, not reused. With
 * `queryTimeoutMs`, BEGIN, COMMIT and ROLLBACK are given up after that long (pg's query_timeout; the
 * statements of `work` need theirs); a connection with a statement given up is dropped without a
 * ROLLBACK (it would wait behind that statement), and Postgres ends the transaction with it.
 */
export async function inTransaction<T>(pool: pg.Pool, begin: string, work: (client: pg.PoolClient) => Promise<T>, queryTimeoutMs?: number): Promise<T> {
  const client = await pool.connect();
  const statement = (text: string) => withQueryTimeout(text, queryTimeoutMs);
  let failed: Error | undefined;
  try {
    await client.query(statement(begin));
    const out = await work(client);
    await client.query(statement('COMMIT'));
    return out;
  } catch (err) {
    if (isQueryReadTimeout(err)) failed = err as Error;
    else await client.query(statement('ROLLBACK')).catch((e: Error) => (failed = e));
    throw err;
  } finally {
    client.release(failed);
  }
}
