import net from 'node:net';
import t from 'tap';
import pg from 'pg';
import { migratedDatabase } from '../helper.js';
import { writeAvailability } from '../../src/store/agents.js';

t.test('an availability write on a connection that dies without a word (a failover) is given up, its connection dropped', async (t) => {
  // A proxy to the test's Postgres (as test/store/dial-state.test.ts's): `silence()` makes the
  // connections made so far lose every packet; new connections go through.
  const db = await migratedDatabase(t);
  const target = Number(new URL(db.url).port);
  const live = new Set<net.Socket>();
  const silenced = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const server = net.connect(target, '127.0.0.1');
    for (const [a, b] of [
      [client, server],
      [server, client],
    ] as const) {
      live.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const silence = () => {
    for (const s of live) {
      s.unpipe();
      s.pause();
      silenced.add(s);
    }
    live.clear();
  };
  const url = new URL(db.url);
  url.searchParams.delete('host');
  url.hostname = '127.0.0.1';
  url.port = String((proxy.address() as net.AddressInfo).port);
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
  pool.on('error', () => {});
  t.teardown(async () => {
    for (const s of [...live, ...silenced]) s.destroy();
    await pool.end();
    await new Promise<void>((r) => proxy.close(() => r()));
  });
  const within = <T>(work: Promise<T>, ms: number) =>
    Promise.race([work, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms).unref())]);
  const write = (callSid: string, mode: 'available' | 'away', withinMs?: number) =>
    writeAvailability(
      pool,
      { number: '+919800000001', mode, reason: null, until: null, setBy: `phone:${callSid}`, apiKeyId: null, at: new Date(), once: true },
      withinMs,
      2000,
    );

  t.match((await write('before', 'away', 5000)).after, { status: 'away' }, 'written through the proxy');
  for (const withinMs of [5000, undefined]) {
    silence();
    // The phone's caller is answered by its own deadline; the write kept its pool connection ~15 minutes.
    const lost = write(`lost-${withinMs}`, 'available', withinMs).catch((err: Error) => err);
    t.match(await within(lost, 6000), { message: /timeout/ }, `given up (withinMs ${withinMs})`);
    t.equal(pool.totalCount, 0, 'its connection dropped, not back in the pool');
    t.match(
      (await within(write(`next-${withinMs}`, 'away', 5000), 15_000)) as object,
      { after: { status: 'away' } },
      'the next write goes on a new connection',
    );
  }
});
