import t from 'tap';
import { migratedDatabase, silencingPool } from '../helper.js';
import { writeAvailability } from '../../src/store/agents.js';

t.test('an availability write on a connection that dies without a word (a failover) is given up, its connection dropped', async (t) => {
  const db = await migratedDatabase(t);
  const { pool, silence } = await silencingPool(t, db.url);
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

t.test(
  "a phone's repeated request, whose read of what the call set goes on a connection that dies without a word, is given up, its connection dropped",
  async (t) => {
    const db = await migratedDatabase(t);
    const { pool, silence } = await silencingPool(t, db.url);
    const within = <T>(work: Promise<T>, ms: number) =>
      Promise.race([work, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms).unref())]);
    // Exotel asking again for one call: its repeat writes nothing, then reads back what the call set.
    const write = () =>
      writeAvailability(
        pool,
        { number: '+919800000002', mode: 'away', reason: null, until: null, setBy: 'phone:CArepeat', apiKeyId: null, at: new Date(), once: true },
        5000,
        2000,
      );

    t.match(await write(), { after: { status: 'away' } }, 'set by the call');
    // The connection dies once the repeat's transaction is over, before that read.
    pool.once('release', () => silence());
    const repeat = write().catch((err: Error) => err);
    // Its caller is answered by its own deadline; the read kept its pool connection ~15 minutes.
    t.match(await within(repeat, 6000), { message: /timeout/ }, 'given up');
    t.equal(pool.totalCount, 0, 'its connection dropped, not back in the pool');
  },
);
