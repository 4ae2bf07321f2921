import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { ensureBootstrapKey } from '../../../src/store/api-keys.js';
import { openDatabase, type Database } from '../../../src/store/database.js';
import { databaseOptions } from '../../../src/store/setup.js';
import { ADMIN_KEY, lockWaiters, migratedDatabase, quietLog, silencingProxy } from '../../helper.js';

/** `work`'s outcome, or 'still waiting' after `ms`: a request that hangs fails its test instead of the file. */
const within = <T>(work: Promise<T>, ms: number) => Promise.race([work, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms).unref())]);

/** Statement timeouts of 1 s and 2 s: an admin connection counts as dead 2 + 5 s after it was asked. */
const ENV = { ADMIN_STATEMENT_TIMEOUT_MS: '1000', ADMIN_BULK_STATEMENT_TIMEOUT_MS: '2000' };
const DEAD_AFTER_MS = 7000;

/** The app as the server builds it, its pools through a proxy whose connections can die without a word. */
async function appThroughProxy(t: Test) {
  const direct = await migratedDatabase(t);
  const proxy = await silencingProxy(t, direct.url);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, DATABASE_URL: proxy.url, ...ENV });
  await ensureBootstrapKey(direct.pool, { configuredKey: ADMIN_KEY, dataDir });
  // The admin API's pool through the proxy; the callbacks' pool and the rules' LISTEN connection direct.
  const viaProxy = openDatabase(proxy.url, quietLog, databaseOptions(config));
  t.teardown(() => viaProxy.close());
  const db: Database = {
    get prisma() {
      return viaProxy.prisma;
    },
    get prismaStarted() {
      return viaProxy.prismaStarted;
    },
    pool: direct.pool,
    adminPool: viaProxy.adminPool,
    url: direct.url,
    close: () => viaProxy.close(),
  };
  const app = await buildApp({ config, db, logger: quietLog });
  t.teardown(() => app.close());
  await app.ready();
  const get = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  return { db, direct, get, silence: proxy.silence, proxyPort: Number(new URL(proxy.url).port) };
}

t.test('an admin request on a connection that died without a word is answered 503 within a bound, and the connection is closed', async (t) => {
  const { db, get, silence } = await appThroughProxy(t);
  t.equal((await get('/admin/flows')).statusCode, 200, 'answered through the proxy');
  silence();
  const started = Date.now();
  const res = await within(get('/admin/flows'), 20_000);
  const took = Date.now() - started;
  t.match(res, { statusCode: 503, headers: { 'retry-after': '5' } }, `503 after ${took} ms`);
  if (res !== 'still waiting') {
    t.match(
      res.json().message,
      /did not answer, long after this request's statement timeout: its connection was taken for dead.*closed; retry in a few seconds/,
    );
  }
  t.ok(took >= DEAD_AFTER_MS - 100 && took < DEAD_AFTER_MS + 5000, `given up after the longest statement timeout and the grace: ${took} ms`);
  // The pool's other connections made before (as many as it had) died too; each is found the same
  // way by the request that takes it, and none is kept: within a few tries every request is answered.
  let answered = 0;
  for (let i = 0; i < 5 && answered < 2; i++) {
    const next = await within(get('/admin/flows'), 20_000);
    if (next !== 'still waiting' && next.statusCode === 200) answered++;
  }
  t.equal(answered, 2, 'then answered on new connections');
  t.equal(db.adminPool.totalCount - db.adminPool.idleCount, 0, 'no connection left in use');
});

t.test('a statement of a Prisma transaction on a dead connection fails within a bound, and the connection is not handed to the next query', async (t) => {
  const { db, silence } = await appThroughProxy(t);
  await db.prisma.flow.findMany();
  t.equal(db.adminPool.totalCount, 1, 'one admin connection');
  let started = 0;
  // The transaction's connection dies between two of its statements.
  const tx = db.prisma
    .$transaction(
      async (tx) => {
        await tx.flow.findMany();
        silence();
        started = Date.now();
        return tx.flow.findMany();
      },
      { timeout: 60_000 },
    )
    .then(
      () => 'committed',
      (err: Error) => err,
    );
  const failed = await within(tx, 25_000);
  t.type(failed, Error, `failed after ${Date.now() - started} ms`);
  t.ok(Date.now() - started < DEAD_AFTER_MS + 5000, 'within the bound, its ROLLBACK not waiting as long again');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(db.adminPool.totalCount, 0, 'the dead connection was closed, not returned to the pool');
  const next = Date.now();
  t.same(await within(db.prisma.flow.findMany(), 5000), [], 'the next query is answered at once, on a new connection');
  t.ok(Date.now() - next < 3000, `in ${Date.now() - next} ms`);
});

/**
 * This process's TCP connections to `port` on 127.0.0.1, from /proc/net/tcp: each one's timer (`tr`:
 * 0 none, 1 retransmission, 2 keepalive) and when it fires (jiffies, hexadecimal).
 */
async function connectionsTo(port: number): Promise<Array<{ timer: number; when: string }>> {
  const table = await readFile('/proc/net/tcp', 'utf8');
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return table
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[2] === remote && f[3] === '01') // established
    .map((f) => {
      const [timer, when] = f[5]!.split(':');
      return { timer: Number.parseInt(timer!, 16), when: when! };
    });
}

t.test(
  'a CSV export waiting for Postgres, which no timeout gives up, is on a connection the kernel probes after 30 s of silence (TCP keepalive), so a dead one ends',
  { skip: process.platform !== 'linux' && 'reads /proc/net/tcp' },
  async (t) => {
    const { direct, get, proxyPort } = await appThroughProxy(t);
    // The export's COPY waits for a lock, sending nothing and expecting rows: as on a connection that died.
    const blocker = new pg.Client({ connectionString: direct.url });
    await blocker.connect();
    t.teardown(() => blocker.end());
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE cdrs IN ACCESS EXCLUSIVE MODE');
    const csv = get('/admin/cdrs.csv');
    await lockWaiters(t, direct.pool, 1, { query: 'COPY%' });
    // Read again for a moment: a connection that has just sent something shows its retransmission timer until it is acknowledged.
    let sockets = await connectionsTo(proxyPort);
    for (let i = 0; i < 20 && sockets.some((s) => s.timer !== 2); i++) {
      await new Promise((r) => setTimeout(r, 100));
      sockets = await connectionsTo(proxyPort);
    }
    t.ok(sockets.length >= 1, `${sockets.length} admin connection(s)`);
    t.same(
      sockets.map((s) => s.timer),
      sockets.map(() => 2),
      'each has its keepalive timer running',
    );
    await blocker.query('ROLLBACK');
    t.match(await within(csv, 10_000), { statusCode: 200 }, 'the export then runs');
  },
);
