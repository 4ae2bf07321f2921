import t from 'tap';
import pg from 'pg';
import net from 'node:net';
import { buildTestApp, migratedDatabase, quietLog, silencingPool } from '../helper.js';
import { loadSnapshot, RulesCache } from '../../src/store/rules-snapshot.js';
import { toFlow } from '../../src/store/flows.js';
import { toDialGroup } from '../../src/store/dial-groups.js';
import { RULES_CHANNEL } from '../../src/store/audit.js';

const until = async (ok: () => boolean, ms = 5000) => {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
};

t.test('the snapshot holds flows, VIP entries with expiry, and schedules', async (t) => {
  const db = await migratedDatabase(t);
  const list = await db.prisma.vipList.create({ data: { slug: 'gold', name: 'Gold' } });
  await db.prisma.vipEntry.createMany({
    data: [
      { listId: list.id, number: '+919812345678' },
      { listId: list.id, number: '+919812345679', expiresAt: new Date('2027-01-01T00:00:00Z') },
    ],
  });
  await db.prisma.schedule.create({
    data: { slug: 's', name: 'S', timezone: 'Europe/London', weekly: [{ day: 'mon', open: '09:00', close: '17:00' }], exceptions: [] },
  });
  await db.prisma.flow.create({ data: { slug: 'f', name: 'F', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } } });
  const cache = new RulesCache(db, quietLog);
  t.teardown(() => cache.stop());
  await cache.start();
  const s = cache.current!;
  t.equal(s.flows.get('f')?.type, 'passthru');
  t.same(s.vipLists.get('gold')?.get('+919812345678'), { expiresAt: null });
  t.same(s.vipLists.get('gold')?.get('+919812345679'), { expiresAt: Date.parse('2027-01-01T00:00:00Z') });
  t.equal(s.schedules.get('s')?.timezone, 'Europe/London');
});

t.test('a snapshot reads every table as of one moment: a write committed while it loads is in all of it or none', async (t) => {
  const db = await migratedDatabase(t);
  await db.prisma.dialGroup.create({
    data: { slug: 'sales', name: 'Sales', strategy: 'sequential', connect: {}, members: { create: [{ number: '+919812345670' }] } },
  });
  const { id } = await db.prisma.dialGroup.findUniqueOrThrow({ where: { slug: 'sales' } });
  // An admin write that holds the members table while a load runs: the load reads the groups, then
  // waits for the members; the write renames the group and adds a member, and commits.
  const writer = new pg.Client({ connectionString: db.url });
  await writer.connect();
  t.teardown(() => writer.end());
  await writer.query('BEGIN');
  await writer.query('LOCK TABLE dial_group_members IN ACCESS EXCLUSIVE MODE');
  const loading = loadSnapshot(db, 1);
  const waiting = async () => {
    const { rows } = await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'dial_group_members'::regclass AND NOT granted",
    );
    return rows[0]!.n > 0;
  };
  const t0 = Date.now();
  while (!(await waiting())) {
    if (Date.now() - t0 > 5000) throw new Error('the load never waited for the members table');
    await new Promise((r) => setTimeout(r, 10));
  }
  await writer.query("UPDATE dial_groups SET name = 'Sales and more' WHERE id = $1", [id]);
  await writer.query("INSERT INTO dial_group_members (group_id, number) VALUES ($1, '+919812345671')", [id]);
  await writer.query('COMMIT');
  const sales = (await loading).dialGroups.get('sales')!;
  // Before the write (the moment the load began), not its members after it beside its name before.
  t.same(
    { name: sales.name, members: sales.members.map((m) => m.number) },
    { name: 'Sales', members: ['+919812345670'] },
    'the group as it was when the load began, members included',
  );
  const next = await loadSnapshot(db, 2);
  t.same(
    next.dialGroups
      .get('sales')!
      .members.map((m) => m.number)
      .sort(),
    ['+919812345670', '+919812345671'],
    'the next load has the write',
  );
  t.equal(next.dialGroups.get('sales')!.name, 'Sales and more');
  t.equal(db.pool.totalCount - db.pool.idleCount, 0, 'the connection went back to the pool');
});

t.test('a load that fails gives its connection up, and the next one works', async (t) => {
  const db = await migratedDatabase(t);
  const broken = new pg.Client({ connectionString: db.url });
  await broken.connect();
  t.teardown(() => broken.end());
  await broken.query('ALTER TABLE flows RENAME TO flows_gone');
  await t.rejects(loadSnapshot(db, 1), /flows/);
  await broken.query('ALTER TABLE flows_gone RENAME TO flows');
  t.ok((await loadSnapshot(db, 2)).flows instanceof Map);
  t.equal(db.pool.totalCount - db.pool.idleCount, 0, 'no connection is left checked out');
});

t.test("the snapshot's plain SQL gives the flows and dial groups Prisma's rows give", async (t) => {
  const db = await migratedDatabase(t);
  await db.prisma.schedule.create({
    data: {
      slug: 'shift',
      name: 'Shift',
      timezone: 'Asia/Kolkata',
      weekly: [{ day: 'mon', open: '09:00', close: '17:00' }],
      exceptions: [{ date: '2026-12-25', closed: true }],
    },
  });
  await db.prisma.flow.create({
    data: {
      slug: 'f',
      name: 'F',
      type: 'passthru',
      mode: 'async',
      rules: [{ if: { vip: 'gold' }, then: { branch: 'A' } }],
      otherwise: { branch: 'B' },
      onError: { branch: 'A' },
    },
  });
  await db.prisma.flow.create({
    data: { slug: 'g', name: 'G', type: 'dial', rules: [], otherwise: { group: 'sales' }, onError: { numbers: ['+919812345678'] } },
  });
  await db.prisma.dialGroup.create({
    data: {
      slug: 'sales',
      name: 'Sales',
      strategy: 'round_robin',
      sticky: { enabled: true, lookbackDays: 7 },
      connect: { record: true },
      members: {
        create: [
          { number: '+919812345671', name: 'B', priority: 2, weight: 3, active: false, scheduleSlug: 'shift' },
          { number: '+919812345670', name: null, priority: 1 },
        ],
      },
    },
  });
  await db.prisma.dialGroup.create({ data: { slug: 'empty', name: 'Empty', strategy: 'sequential', connect: {} } });
  const snapshot = await loadSnapshot(db, 1);
  const flows = await db.prisma.flow.findMany();
  const groups = await db.prisma.dialGroup.findMany({ include: { members: true } });
  t.same(
    [...snapshot.flows.values()].sort((a, b) => a.slug.localeCompare(b.slug)),
    flows.map(toFlow).sort((a, b) => a.slug.localeCompare(b.slug)),
  );
  t.same(
    [...snapshot.dialGroups.values()].sort((a, b) => a.slug.localeCompare(b.slug)),
    groups.map(toDialGroup).sort((a, b) => a.slug.localeCompare(b.slug)),
  );
  t.same(snapshot.dialGroups.get('empty')?.members, [], 'a group without members');
  t.same(snapshot.schedules.get('shift'), {
    timezone: 'Asia/Kolkata',
    weekly: [{ day: 'mon', open: '09:00', close: '17:00' }],
    exceptions: [{ date: '2026-12-25', closed: true }],
    override: null,
  });
});

t.test('an instance that only answers callbacks never starts Prisma (its query compiler is ~70 MB)', async (t) => {
  const { app, db } = await buildTestApp(t);
  for (const url of ['/exotel/passthru/nope?CallSid=a1&CallFrom=09812345678', '/exotel/dial-whom/nope?CallSid=a2', '/healthz', '/readyz'])
    await app.inject({ method: 'GET', url });
  await app.cdrWriter.flush();
  t.equal((await db.pool.query('SELECT count(*)::int AS n FROM cdrs')).rows[0].n, 2, 'the callbacks were logged');
  t.equal(db.prismaStarted, false, 'start-up, rules, callbacks, CDRs and health checks ran on plain SQL');
  await app.inject({ method: 'GET', url: '/admin/flows', headers: { authorization: 'Bearer nope' } });
  t.equal(db.prismaStarted, true, 'the admin API starts it');
});

t.test('a NOTIFY reloads the snapshot; a lost LISTEN connection reconnects and reloads', async (t) => {
  const db = await migratedDatabase(t);
  const cache = new RulesCache(db, quietLog);
  t.teardown(() => cache.stop());
  await cache.start();
  const v1 = cache.current!.version;

  await db.prisma.flow.create({ data: { slug: 'a', name: 'A', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } } });
  await db.pool.query(`SELECT pg_notify('${RULES_CHANNEL}', 'flow:a')`);
  t.ok(await until(() => cache.current!.flows.has('a')), 'reloaded after NOTIFY');
  t.ok(cache.current!.version > v1);

  // Kill the LISTEN session from the server side, then change data without any NOTIFY reaching us.
  const killed = await db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND datname = current_database()`);
  t.equal(killed.rowCount, 1, 'the LISTEN session was terminated');
  await db.prisma.flow.create({ data: { slug: 'b', name: 'B', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } } });
  t.ok(await until(() => cache.current!.flows.has('b')), 'the change made while disconnected is picked up after reconnecting');
  t.equal(cache.lastError, null, 'listening again');
  await db.prisma.flow.create({ data: { slug: 'c', name: 'C', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } } });
  await db.pool.query(`SELECT pg_notify('${RULES_CHANNEL}', 'flow:c')`);
  t.ok(await until(() => cache.current!.flows.has('c')), 'notifications arrive on the new connection');
});

t.test('a LISTEN connection that dies silently (a NAT drops it, no reset) is found by the heartbeat, replaced, and the change it missed loaded', async (t) => {
  const db = await migratedDatabase(t);
  // A TCP relay to Postgres whose connections can be frozen: bytes stop in both directions and
  // nothing is closed, as when a NAT forgets an idle connection.
  const target = new URL(db.url);
  const sockets = new Set<net.Socket>();
  let frozen = false;
  const relay = net.createServer((inbound) => {
    const socketDir = target.searchParams.get('host'); // the test database may listen on a Unix socket only
    const port = Number(target.port || 5432);
    const outbound = socketDir ? net.connect(`${socketDir}/.s.PGSQL.${port}`) : net.connect(port, target.hostname);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    inbound.on('data', (b) => frozen || outbound.write(b));
    outbound.on('data', (b) => frozen || inbound.write(b));
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    relay.close();
  });
  const relayed = new URL(db.url);
  relayed.hostname = '127.0.0.1';
  relayed.port = String((relay.address() as net.AddressInfo).port);
  relayed.searchParams.delete('host');
  const cache = new RulesCache({ ...db, url: relayed.toString() }, quietLog, { heartbeatMs: 200, heartbeatTimeoutMs: 300 });
  t.teardown(() => cache.stop());
  await cache.start();
  t.equal(cache.lastError, null, 'listening through the relay');

  frozen = true; // the connections open now are dead from here on
  const newConnections = new Promise<void>((r) => relay.once('connection', () => r()));
  await db.prisma.flow.create({ data: { slug: 'missed', name: 'M', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } } });
  await db.pool.query(`SELECT pg_notify('${RULES_CHANNEL}', 'flow:missed')`);
  frozen = false; // new connections pass; the frozen ones stay dead (their bytes were dropped)
  for (const s of sockets) s.removeAllListeners('data');
  t.ok(await until(() => cache.current!.flows.has('missed'), 5000), 'the change whose NOTIFY was lost is loaded after the heartbeat found the dead connection');
  await newConnections;
  t.equal(cache.lastError, null, 'listening again');
});

t.test('a change committed while the first snapshot loads is not missed: the LISTEN is up before the load', async (t) => {
  const db = await migratedDatabase(t);
  // Hold the load up after its snapshot is taken (its first read), as a load of large VIP lists takes a while.
  const blocker = await db.pool.connect();
  await blocker.query('BEGIN');
  await blocker.query('LOCK TABLE dial_group_members IN ACCESS EXCLUSIVE MODE');
  const cache = new RulesCache(db, quietLog);
  t.teardown(() => cache.stop());
  const started = cache.start();
  const waiting = async () =>
    (
      await db.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM dial_group_members%'`,
      )
    ).rowCount === 1;
  for (let i = 0; i < 500 && !(await waiting()); i++) await new Promise((r) => setTimeout(r, 10));
  // Another instance's admin change commits and announces itself meanwhile.
  await db.prisma.flow.create({ data: { slug: 'late', name: 'Late', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } } });
  await db.pool.query(`SELECT pg_notify('${RULES_CHANNEL}', 'flow:late')`);
  await blocker.query('ROLLBACK');
  blocker.release();
  await started;
  t.ok(cache.current, 'loaded');
  t.ok(await until(() => cache.current!.flows.has('late'), 2000), 'the change is in the snapshot without waiting for another one');
});
t.test('start() does not throw when the database is unreachable; the snapshot stays empty', async (t) => {
  const { openDatabase } = await import('../../src/store/database.js');
  const db = openDatabase('postgresql://nobody@127.0.0.1:1/none', quietLog);
  const cache = new RulesCache(db, quietLog);
  t.teardown(async () => {
    await cache.stop();
    await db.close();
  });
  await cache.start();
  t.equal(cache.current, null);
  t.match(cache.lastError, /./);
});

t.test('a reload that fails is retried until it works: the change it was for is not lost, and the stale spell shows', async (t) => {
  const { app, db, admin } = await buildTestApp(t);
  const agent = '+919811100001';
  t.equal(
    (
      await admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09811100001' }, { number: '09811100002' }] },
      })
    ).statusCode,
    201,
  );
  t.equal(
    (
      await admin({
        method: 'POST',
        url: '/admin/flows',
        payload: { slug: 'hot', name: 'hot', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { numbers: ['+919811100009'] } },
      })
    ).statusCode,
    201,
  );
  t.ok(await until(() => app.rules.current?.flows.has('hot') === true), 'the flow is in the snapshot');
  const listenerUp = async () => (await app.metrics.registry.getSingleMetric('exoroute_rules_listener_up')!.get()).values[0]!.value;
  t.equal(await listenerUp(), 1);

  // Every load fails while the table is missing (a stand-in for a pool exhausted beyond its
  // connection timeout, or a brief database error); meanwhile the agent is sent away and it is
  // announced, once, as the admin API would.
  await db.pool.query('ALTER TABLE agent_availability RENAME TO agent_availability_gone');
  await db.pool.query(`INSERT INTO agent_availability_gone (number, status, reason, set_by, set_at) VALUES ($1, 'away', 'lunch', 'test', now())`, [agent]);
  await db.pool.query('SELECT pg_notify($1, $2)', [RULES_CHANNEL, `agent:${agent}`]);
  t.ok(await until(() => app.rules.lastError !== null), 'the failed reload is visible');
  t.match(app.rules.lastError, /^rules reload failed: relation "agent_availability" does not exist/);
  t.equal(await listenerUp(), 0, 'exoroute_rules_listener_up says this instance does not follow changes');
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.same({ status: ready.statusCode, body: ready.json() }, { status: 200, body: { status: 'ready', reasons: [] } }, 'old rules still answer calls: ready');
  t.equal(app.rules.current?.availability.get(agent), undefined, 'the snapshot is stale');

  // The database is fine again; no other change is announced.
  await db.pool.query('ALTER TABLE agent_availability_gone RENAME TO agent_availability');
  t.ok(await until(() => app.rules.current?.availability.get(agent)?.status === 'away', 3000), 'the retry loaded the change');
  t.equal(app.rules.lastError, null, 'and cleared the error');
  t.equal(await listenerUp(), 1);
  const dw = await app.inject({ method: 'GET', url: '/exotel/dial-whom/hot?CallSid=c1' });
  t.equal(dw.body, '+919811100002', 'the away agent is not offered');
});

t.test('the LISTEN connection and failing reloads keep their own error: one recovering does not hide the other', async (t) => {
  const db = await migratedDatabase(t);
  const cache = new RulesCache(db, quietLog);
  t.teardown(() => cache.stop());
  await cache.start();
  // ALLOW_CONNECTIONS cannot be changed from inside the database itself.
  const server = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL });
  await server.connect();
  t.teardown(() => server.end());
  const name = new URL(db.url).pathname.slice(1);
  const allowConnections = (yes: boolean) => server.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS ${yes}`);
  const listeners = async () =>
    (await db.pool.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND datname = current_database()`)).rows.map(
      (r) => r.pid,
    );
  const killListener = () =>
    db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND datname = current_database()`);

  // The LISTEN connection cannot come back (no new connections); the pool keeps its idle one.
  await allowConnections(false);
  await killListener();
  t.ok(await until(() => cache.lastError !== null), 'the lost LISTEN connection is visible');
  await cache.reload();
  t.not(cache.lastError, null, 'a reload that works leaves it');
  t.notMatch(cache.lastError, /rules/);
  await allowConnections(true);
  t.ok(await until(() => cache.lastError === null, 8000), 'cleared once listening again');

  // Loads fail; the LISTEN connection is lost and comes back meanwhile.
  await db.pool.query('ALTER TABLE flows RENAME TO flows_gone');
  await db.pool.query(`SELECT pg_notify('${RULES_CHANNEL}', 'flow:a')`);
  t.ok(await until(() => cache.lastError !== null), 'the failed reload is visible');
  const [lost] = await listeners();
  await killListener();
  let back = false;
  for (let i = 0; i < 250 && !back; i++) {
    const now = await listeners();
    back = now.length === 1 && now[0] !== lost;
    if (!back) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(back, 'listening again, on a new connection');
  t.match(cache.lastError, /^rules reload failed: relation "flows" does not exist/, 'the reload error stays');
  await db.pool.query('ALTER TABLE flows_gone RENAME TO flows');
  t.ok(await until(() => cache.lastError === null), 'cleared by the retry that works');
});

t.test('while Postgres stays down, the LISTEN connection is reported lost once, not at every failed reconnect', async (t) => {
  // Every attempt (backing off to one each 5 s) logged `rules LISTEN connection lost; reconnecting`
  // with its stack: 720 warnings an hour of outage, each saying again that a connection was lost.
  const { openDatabase } = await import('../../src/store/database.js');
  const lines: { level: string; msg: string }[] = [];
  const log = {
    ...quietLog,
    warn: (_o: unknown, msg: string) => lines.push({ level: 'warn', msg }),
    error: (_o: unknown, msg: string) => lines.push({ level: 'error', msg }),
    info: (_o: unknown, msg?: string) => lines.push({ level: 'info', msg: msg ?? String(_o) }),
    debug: () => {},
  } as unknown as typeof quietLog;
  const db = openDatabase('postgresql://nobody@127.0.0.1:1/none', quietLog);
  const cache = new RulesCache(db, log);
  t.teardown(async () => {
    await cache.stop();
    await db.close();
  });
  await cache.start();
  await new Promise((r) => setTimeout(r, 2000)); // reconnects after 0.1, 0.2, 0.4 and 0.8 s
  t.match(cache.lastError, /ECONNREFUSED/, 'still down, and /readyz says why');
  t.equal(lines.filter((l) => l.msg === 'rules LISTEN connection lost; reconnecting').length, 1, 'said once');
});

t.test('a change to one VIP list reloads that list alone: the other lists and the flows are kept, not read again', async (t) => {
  const { app, admin } = await buildTestApp(t);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'silver', name: 'Silver' } })).statusCode, 201);
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists/silver/entries', payload: [{ number: '09812345670' }] })).statusCode, 200);
  // Changes load in the order they were announced: once gold is in, nothing announced of silver is left to load.
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'gold', name: 'Gold' } })).statusCode, 201);
  t.ok(await until(() => app.rules.current!.vipLists.has('gold')), 'gold loaded');
  t.equal(app.rules.current!.vipLists.get('silver')?.has('+919812345670'), true, 'silver loaded');
  const before = app.rules.current!;

  t.equal(
    (await admin({ method: 'POST', url: '/admin/vip-lists/gold/entries', payload: [{ number: '09812345678' }, { number: '09812345679' }] })).statusCode,
    200,
  );
  t.ok(await until(() => app.rules.current!.vipLists.get('gold')?.size === 2), 'the import is in the snapshot');
  const after = app.rules.current!;
  t.ok(after.version > before.version, 'a new snapshot version');
  t.equal(after.vipLists.get('silver'), before.vipLists.get('silver'), 'the other list kept, not read again');
  t.equal(after.flows, before.flows, 'flows kept');
  t.equal(after.dialGroups, before.dialGroups, 'dial groups kept');
  t.not(after.vipLists, before.vipLists, 'the snapshot before keeps its lists as they were (immutable)');
  t.equal(before.vipLists.get('gold')?.size, 0);

  // A list deleted, and one created, by the same path.
  t.equal((await admin({ method: 'DELETE', url: '/admin/vip-lists/gold' })).statusCode, 204);
  t.ok(await until(() => !app.rules.current!.vipLists.has('gold')), 'a deleted list leaves the snapshot');
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists', payload: { slug: 'bronze', name: 'Bronze' } })).statusCode, 201);
  t.ok(await until(() => app.rules.current!.vipLists.get('bronze')?.size === 0), 'a created list joins it, empty');
  t.equal(app.rules.current!.vipLists.get('silver'), before.vipLists.get('silver'), 'silver still not read again');
  // A flow using a list is a full reload, and the list is there.
  const flow = {
    slug: 'f',
    name: 'F',
    type: 'passthru',
    rules: [{ name: 'VIP', when: { callerIn: 'bronze' }, then: { branch: 'A' } }],
    otherwise: { branch: 'B' },
    onError: { branch: 'B' },
  };
  t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: flow })).statusCode, 201);
  t.ok(await until(() => app.rules.current!.flows.has('f')));
  t.equal((await admin({ method: 'POST', url: '/admin/vip-lists/bronze/entries', payload: { number: '09812345677' } })).statusCode, 201);
  t.ok(await until(() => app.rules.current!.vipLists.get('bronze')?.size === 1));
  const call = (sid: string, from: string) => app.inject({ method: 'GET', url: `/exotel/passthru/f?CallSid=${sid}&CallFrom=${from}` });
  t.equal((await call('vip1', '09812345677')).statusCode, 200, 'the caller added to the list is routed as a VIP (A)');
  t.equal((await call('vip2', '09812345670')).statusCode, 302, 'a caller in another list is not (B)');
});

t.test('building a large VIP list gives callbacks turns of the event loop, and until it is built they see the list as it was, whole', async (t) => {
  const db = await migratedDatabase(t);
  const n = 20_000;
  const { id } = await db.prisma.vipList.create({ data: { slug: 'big', name: 'Big' } });
  const entries = `INSERT INTO vip_entries (list_id, number, updated_at) SELECT $1, '+9198' || lpad(g::text, 8, '0'), now() FROM generate_series(1, ${n}) g`;
  await db.pool.query(entries, [id]);
  // A pool of its own whose connections say what they are sent: when a read comes back, a turn of
  // the event loop is asked for (setImmediate); it must come before the transaction ends, i.e.
  // while the snapshot is built from what was read, not after.
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  t.teardown(() => pool.end());
  const events: string[] = [];
  /** The size of the list in the snapshot at the turn asked for when read `i` came back. */
  const seen = new Map<number, number | undefined>();
  const cache: RulesCache = new RulesCache({ pool: pool as unknown, url: db.url } as ConstructorParameters<typeof RulesCache>[0], quietLog);
  t.teardown(() => cache.stop());
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text: string }).text;
      const i = events.push(text.split(' ')[0]!) - 1;
      const out = query(...args);
      // pool.query() calls it with a callback, and no promise comes back.
      if (out instanceof Promise)
        void out.then(
          () =>
            setImmediate(() => {
              events.push(`turn ${i}`);
              seen.set(i, cache.current?.vipLists.get('big')?.size);
            }),
          () => {},
        );
      return out;
    };
  });
  /** Whether the turn asked for when the last read came back came before the COMMIT, i.e. while the snapshot was built from the reads. */
  const turnBeforeCommit = () => {
    const last = events.lastIndexOf('SELECT');
    const turn = events.indexOf(`turn ${last}`);
    return turn !== -1 && turn < events.indexOf('COMMIT', last);
  };

  await cache.start();
  t.equal(cache.current!.vipLists.get('big')!.size, n);
  t.ok(turnBeforeCommit(), `a turn while the full snapshot was built: ${events.join(' ')}`);

  await db.pool.query(`INSERT INTO vip_entries (list_id, number, updated_at) VALUES ($1, '+919700000000', now())`, [id]);
  for (const scope of ['all', { vipList: 'big' }] as const) {
    events.length = 0;
    const size = cache.current!.vipLists.get('big')!.size;
    await cache.reload(scope);
    t.ok(turnBeforeCommit(), `a turn while ${JSON.stringify(scope)} was built: ${events.join(' ')}`);
    t.equal(seen.get(events.lastIndexOf('SELECT')), size, 'meanwhile the snapshot held the list as it was, whole');
    t.equal(cache.current!.vipLists.get('big')!.size, n + 1, 'then the list as it is');
  }
});

t.test('a rules load on a connection that dies without a word (a failover) is given up, its connection dropped, and the next load works', async (t) => {
  const db = await migratedDatabase(t);
  const { pool, silence } = await silencingPool(t, db.url);
  const within = <T>(work: Promise<T>, ms: number) =>
    Promise.race([work, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms).unref())]);
  t.ok((await loadSnapshot({ pool }, 1, 2000)).flows, 'loaded through the proxy');
  silence();
  // Reloads take turns: one held until the kernel gives its connection up (~15 minutes) held every
  // later one, and the instance routed on the rules it had, whatever was changed meanwhile.
  const lost = loadSnapshot({ pool }, 2, 2000).catch((err: Error) => err);
  t.match(await within(lost, 6000), { message: /timeout/ }, 'given up');
  t.equal(pool.totalCount, 0, 'its connection dropped, not back in the pool');
  t.match(await within(loadSnapshot({ pool }, 3, 2000), 15_000), { version: 3 }, 'the next load goes on a new connection');
});
