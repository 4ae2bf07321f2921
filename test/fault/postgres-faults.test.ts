/**
 * Fault tests (issue 5): a Postgres process of this file's own is stopped under load, paused with
 * SIGSTOP/SIGCONT and restarted, and exoroute is restarted with CDRs in its spool. Each asserts
 * that every callback was answered correctly and within the budget, and that every answered
 * callback has exactly one CDR once Postgres is back.
 */
import t, { type Test } from 'tap';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { applyMigrations } from '../../src/store/migrate.js';
import { ensureBootstrapKey } from '../../src/store/api-keys.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/store/embedded-postgres.js';
import { ADMIN_KEY, onFreePort, quietLog } from '../helper.js';

const BUDGET_MS = 1500;
const VIP = '+919812345678';

/** A Postgres this file starts, stops, pauses and restarts; same port and files throughout. */
class ControlledPostgres {
  private server: EmbeddedDatabase | null = null;
  constructor(
    private readonly dir: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `postgresql://exoroute:exoroute@127.0.0.1:${this.port}/exoroute`;
  }

  async start(): Promise<void> {
    this.server = await startEmbeddedPostgres(this.dir, quietLog, { port: this.port, persistent: true, database: 'exoroute' });
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    this.server = null;
  }

  /** The postmaster and every process under it (backends, checkpointer, walwriter…). */
  private async processes(): Promise<number[]> {
    const root = this.server?.pid;
    if (!root) throw new Error('postgres is not running');
    const parent = new Map<number, number>();
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid) parent.set(Number(entry), ppid);
    }
    const tree = [root];
    for (let grew = true; grew; ) {
      grew = false;
      for (const [pid, ppid] of parent) {
        if (tree.includes(ppid) && !tree.includes(pid)) {
          tree.push(pid);
          grew = true;
        }
      }
    }
    return tree;
  }

  /** Freezes the server: connections stay open, nothing answers. */
  async pause(): Promise<void> {
    for (const pid of await this.processes()) process.kill(pid, 'SIGSTOP');
  }

  async resume(): Promise<void> {
    for (const pid of await this.processes()) process.kill(pid, 'SIGCONT');
  }
}

interface Running {
  app: FastifyInstance;
  db: Database;
  base: string;
}

/** exoroute as server.ts builds it, listening on loopback, with its spool under `dataDir`. */
async function startExoroute(url: string, dataDir: string): Promise<Running> {
  const config = loadConfig({ DATABASE_URL: url, DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, DECISION_BUDGET_MS: String(BUDGET_MS) });
  const db = openDatabase(url, quietLog);
  const app = await buildApp({ config, db, logger: quietLog });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, db, base };
}

async function stopExoroute(r: Running): Promise<void> {
  await r.app.close();
  await r.db.close();
}

interface Outcome {
  callSid: string;
  vip: boolean;
  status: number;
  ms: number;
  error?: string;
}

/**
 * Callbacks from `concurrency` workers until `stop()` is called (and at most `max` in all):
 * every second caller is a VIP. Returns each callback's answer and how long it took.
 */
function load(base: string, tag: string, concurrency = 8, max = 4000) {
  let n = 0;
  let stopped = false;
  const outcomes: Outcome[] = [];
  const worker = async () => {
    while (!stopped && n < max) {
      const i = n++;
      const vip = i % 2 === 0;
      const callSid = `${tag}-${i}`;
      const query = new URLSearchParams({
        CallSid: callSid,
        CallFrom: vip ? VIP : `+91980000${String(i % 10000).padStart(4, '0')}`,
        CallTo: '08047115777',
        Direction: 'incoming',
      });
      const t0 = performance.now();
      try {
        const res = await fetch(`${base}/exotel/passthru/fault?${query}`, { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        outcomes.push({ callSid, vip, status: res.status, ms: performance.now() - t0 });
      } catch (err) {
        outcomes.push({ callSid, vip, status: 0, ms: performance.now() - t0, error: (err as Error).message });
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const done = Promise.all(Array.from({ length: concurrency }, worker));
  return {
    outcomes,
    /** All `max` callbacks answered. */
    finished: done.then(() => outcomes),
    async stop(): Promise<Outcome[]> {
      stopped = true;
      await done;
      return outcomes;
    },
  };
}

/** Every callback answered, correctly (VIP → branch A 200, others → B 302), within the budget. */
function assertAnswered(t: Test, outcomes: Outcome[]) {
  t.ok(outcomes.length > 50, `${outcomes.length} callbacks sent`);
  const failed = outcomes.filter((o) => o.status !== (o.vip ? 200 : 302));
  t.same(failed.slice(0, 5), [], 'every callback got its right branch');
  const slowest = Math.max(...outcomes.map((o) => o.ms));
  t.ok(slowest < BUDGET_MS, `slowest answer ${slowest.toFixed(0)} ms, within the ${BUDGET_MS} ms budget`);
}

/** Waits for the spool to drain, then checks that each answered callback has exactly one CDR. */
async function assertOneCdrEach(t: Test, r: Running, outcomes: Outcome[], tag: string) {
  const t0 = Date.now();
  while (r.app.cdrWriter.spoolDepth > 0 && Date.now() - t0 < 20_000) await new Promise((res) => setTimeout(res, 50));
  t.equal(r.app.cdrWriter.spoolDepth, 0, `spool replayed (${Date.now() - t0} ms after the fault ended)`);
  await r.app.cdrWriter.flush();
  const { rows } = await r.db.pool.query<{ call_sid: string; n: number }>(
    `SELECT call_sid, count(*)::int AS n FROM cdrs WHERE call_sid LIKE $1 GROUP BY call_sid`,
    [`${tag}-%`],
  );
  const counts = new Map(rows.map((x) => [x.call_sid, x.n]));
  const answered = outcomes.filter((o) => o.status > 0);
  const missing = answered.filter((o) => !counts.has(o.callSid)).map((o) => o.callSid);
  const doubled = rows.filter((x) => x.n !== 1).map((x) => x.call_sid);
  t.same(missing.slice(0, 5), [], `every one of ${answered.length} answered callbacks has a CDR`);
  t.same(doubled.slice(0, 5), [], 'none has more than one');
  t.equal(rows.length, answered.length, 'and no CDR without a callback');
}

async function readyz(r: Running) {
  const res = await fetch(`${r.base}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; reasons: string[] } };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('Postgres faults', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-fault-'));
  await chmod(dir, 0o755); // as root, initdb runs as a separate postgres user
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // On a port free a moment ago, again on another when it was taken before Postgres bound it.
  const postgres = await onFreePort(
    async (port) => {
      const started = new ControlledPostgres(path.join(dir, 'pg'), port);
      await started.start();
      return started;
    },
    (err) => /Address already in use|could not create any TCP\/IP sockets|\.s\.PGSQL\.\d+\.lock/.test(String(err)),
  );
  t.teardown(async () => {
    await postgres.resume().catch(() => {});
    await postgres.stop();
  });

  // Schema, key, and a flow: VIPs → A, everyone else → B.
  const setupDb = openDatabase(postgres.url, quietLog);
  await applyMigrations(setupDb.pool);
  await ensureBootstrapKey(setupDb.pool, { configuredKey: ADMIN_KEY, dataDir: dir });
  await setupDb.close();
  const dataDir = path.join(dir, 'data');
  let exo = await startExoroute(postgres.url, dataDir);
  t.teardown(() => stopExoroute(exo));
  const admin = (method: string, url: string, payload?: unknown) =>
    exo.app.inject({ method: method as 'POST', url, headers: { authorization: `Bearer ${ADMIN_KEY}` }, ...(payload ? { payload: payload as object } : {}) });
  t.equal((await admin('POST', '/admin/vip-lists', { slug: 'gold', name: 'Gold' })).statusCode, 201);
  t.equal((await admin('POST', '/admin/vip-lists/gold/entries', { number: VIP })).statusCode, 201);
  const flow = await admin('POST', '/admin/flows', {
    slug: 'fault',
    name: 'Fault line',
    type: 'passthru',
    rules: [{ name: 'VIPs', when: { callerIn: 'gold' }, then: { branch: 'A' } }],
    otherwise: { branch: 'B' },
    onError: { branch: 'A' },
  });
  t.equal(flow.statusCode, 201);
  // Dial Whom needs per-call state in Postgres: without it, the flow's onError numbers.
  t.equal(
    (
      await admin('POST', '/admin/dial-groups', {
        slug: 'desk',
        name: 'Desk',
        strategy: 'round_robin',
        members: [{ number: '+919811100001' }, { number: '+919811100002' }],
      })
    ).statusCode,
    201,
  );
  t.equal(
    (
      await admin('POST', '/admin/flows', {
        slug: 'agents',
        name: 'Agents',
        type: 'dial',
        rules: [],
        otherwise: { dialGroup: 'desk' },
        onError: { numbers: ['+919800000099'] },
      })
    ).statusCode,
    201,
  );
  for (let i = 0; i < 200 && !(exo.app.rules.current?.flows.has('fault') && exo.app.rules.current.flows.has('agents')); i++) await sleep(10);
  const dialWhom = async (sid: string) => {
    const t0 = performance.now();
    const res = await fetch(`${exo.base}/exotel/dial-whom/agents?CallSid=${sid}&CallFrom=%2B919812300000`);
    return { status: res.status, body: await res.text(), ms: performance.now() - t0 };
  };
  t.match(
    await dialWhom('dial-up'),
    { status: 200, body: /^\+91981110000[12],\+91981110000[12]$/ },
    'Dial Whom answers the group in rotation while Postgres is up',
  );

  const dialEvent = (sid: string, status: 'busy' | 'free') =>
    fetch(`${exo.base}/exotel/dial-events?CallSid=${sid}&DialWhomNumber=%2B919811100001&Status=${status}&EventType=${status === 'busy' ? 'Dial' : 'Terminal'}`);
  const onCall = async () =>
    ((await admin('GET', `/admin/agents/${encodeURIComponent('+919811100001')}`)).json() as { onCall: { callSid: string | null } | null }).onCall;

  await t.test('stopped under load: answers go on from the snapshot, CDRs are spooled and replayed once Postgres is back', async (t) => {
    t.equal((await dialEvent('event-call', 'busy')).status, 200);
    t.match(await onCall(), { callSid: 'event-call' }, 'an agent rung while Postgres is up is on the call');
    const run = load(exo.base, 'stop');
    await sleep(400);
    await postgres.stop();
    await sleep(300);
    const during = await readyz(exo);
    t.equal(during.status, 503, '/readyz is 503 while Postgres is down');
    t.equal(during.body.status, 'degraded');
    t.match(during.body.reasons.join('; '), /database unreachable/);
    await sleep(900);
    t.ok(exo.app.cdrWriter.spoolDepth > 0, `${exo.app.cdrWriter.spoolDepth} CDRs spooled while down`);
    t.match((await readyz(exo)).body.reasons.join('; '), /\d+ CDRs? in the local spool/, '/readyz names the spool');
    t.equal((await fetch(`${exo.base}/healthz`)).status, 200, '/healthz stays up');
    const dial = await dialWhom('dial-down');
    t.match(dial, { status: 200, body: '+919800000099' }, 'Dial Whom answers the onError numbers while Postgres is down');
    t.ok(dial.ms < BUDGET_MS, `in ${dial.ms.toFixed(0)} ms`);
    t.equal((await dialEvent('event-call', 'free')).status, 200, "the agent's free while Postgres is down is acknowledged");
    await postgres.start();
    await sleep(700);
    const outcomes = await run.stop();
    assertAnswered(t, outcomes);
    await assertOneCdrEach(t, exo, outcomes, 'stop');
    t.equal((await readyz(exo)).status, 200, 'ready again');
    // As the README says: the event's CDR is kept, the agent's state is not changed later.
    const { rows } = await exo.db.pool.query<{ reason: string }>(`SELECT reason FROM cdrs WHERE endpoint = 'dial-events' AND params->>'Status' = 'free'`);
    t.match(rows, [{ reason: /^agent state not updated: / }], "the free's CDR says the agent state was not updated");
    t.match(await onCall(), { callSid: 'event-call' }, 'and the agent is still held on the call once Postgres is back');
  });

  await t.test('paused (SIGSTOP) under load: the CDR deadline keeps answers in time; late commits and replays stay single', async (t) => {
    const run = load(exo.base, 'pause');
    await sleep(400);
    await postgres.pause();
    await sleep(1500);
    const during = await readyz(exo);
    t.equal(during.status, 503, '/readyz is 503 while Postgres does not answer');
    await postgres.resume();
    await sleep(700);
    const outcomes = await run.stop();
    assertAnswered(t, outcomes);
    t.ok(exo.app.cdrWriter.stats.spooled > 0, 'some CDRs missed their deadline and were spooled');
    await assertOneCdrEach(t, exo, outcomes, 'pause');
  });

  await t.test('restarted under load: broken pooled connections are replaced, and an admin change right after is followed', async (t) => {
    const run = load(exo.base, 'restart');
    await sleep(400);
    await postgres.stop();
    await postgres.start();
    await sleep(800);
    const outcomes = await run.stop();
    assertAnswered(t, outcomes);
    await assertOneCdrEach(t, exo, outcomes, 'restart');

    // The LISTEN connection was cut by the restart; a change made now must still reach the snapshot.
    const newVip = '+919811111111';
    const t0 = Date.now();
    let added = await admin('POST', '/admin/vip-lists/gold/entries', { number: newVip });
    while (added.statusCode >= 500 && Date.now() - t0 < 5000) {
      await sleep(100);
      added = await admin('POST', '/admin/vip-lists/gold/entries', { number: newVip });
    }
    t.equal(added.statusCode, 201);
    let status = 0;
    while (Date.now() - t0 < 10_000) {
      const res = await fetch(`${exo.base}/exotel/passthru/fault?CallSid=restart-after&CallFrom=${encodeURIComponent(newVip)}`, { redirect: 'manual' });
      status = res.status;
      if (status === 200) break;
      await sleep(50);
    }
    t.equal(status, 200, `the new VIP routes as VIP ${Date.now() - t0} ms after the change`);
  });

  await t.test('exoroute restarted with a non-empty spool: the next run replays it, exactly once', async (t) => {
    await postgres.stop();
    const outcomes = await load(exo.base, 'respool', 4, 200).finished;
    assertAnswered(t, outcomes);
    const spooled = exo.app.cdrWriter.spoolDepth;
    t.equal(spooled, outcomes.length, `all ${outcomes.length} CDRs are in the spool`);
    await stopExoroute(exo);
    const files = await readdir(path.join(dataDir, 'spool'));
    t.ok(files.length > 0, `the spool survives the stop (${files.length} segment files)`);

    await postgres.start();
    exo = await startExoroute(postgres.url, dataDir);
    t.ok(exo.app.cdrWriter.spoolDepth <= spooled);
    await assertOneCdrEach(t, exo, outcomes, 'respool');
    t.same(await readdir(path.join(dataDir, 'spool')), [], 'and the spool files are gone');
  });
});
