import t from 'tap';
import { randomUUID } from 'node:crypto';
import { migratedDatabase, quietLog } from '../helper.js';
import { CdrWriter, type CdrRecord } from '../../src/store/cdr-writer.js';

const record = (over: Partial<CdrRecord> = {}): CdrRecord => ({
  receivedAt: new Date(), endpoint: 'passthru', flowSlug: 'f', callSid: 'c', callFrom: '+919812345678', callFromRaw: '09812345678',
  callTo: null, callToRaw: null, direction: 'incoming', callStatus: null, callType: null, digits: null, customField: null,
  dialCallStatus: null, dialWhomNumber: null, legs: null, params: { CallSid: 'c' }, decision: { action: { branch: 'A' } },
  matchedRule: null, outcome: 'answered', reason: null, httpStatus: 200, responseBody: '', handlingMs: 0.5, attempt: 1,
  idempotencyKey: randomUUID(), ...over,
});

t.test('CDRs handed over together share one insert and one commit', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog);
  await Promise.all(Array.from({ length: 500 }, (_, i) => writer.write(record({ callSid: `c${i}` }))));
  t.equal(writer.stats.batches, 1);
  t.equal(writer.stats.records, 500);
  t.equal(await db.prisma.cdr.count(), 500);
});

t.test('batches are capped at maxBatch', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog, { maxBatch: 100 });
  await Promise.all(Array.from({ length: 250 }, () => writer.write(record())));
  t.equal(writer.stats.batches, 3, '250 CDRs with a cap of 100: 3 commits');
  t.equal(await db.prisma.cdr.count(), 250);
});

t.test('every field is stored as given; a replayed idempotency key is stored once; NUL and lone surrogates are cleaned', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog);
  const r = record({
    legs: [{ index: 0, number: { raw: '07200498123', e164: '+917200498123' } }], digits: 'a\u0000b', customField: 'x\ud800y',
    params: { CallSid: 'c', weird: 'q"\\u0000\'' }, reason: 'why', responseBody: '{"select":"a"}', attempt: 3, handlingMs: 1.234,
  });
  await writer.write(r);
  await writer.write({ ...r });
  const rows = await db.prisma.cdr.findMany();
  t.equal(rows.length, 1);
  t.match(rows[0], {
    endpoint: 'passthru', callSid: 'c', callFrom: '+919812345678', callFromRaw: '09812345678', digits: 'ab', customField: 'x\ufffdy',
    reason: 'why', responseBody: '{"select":"a"}', attempt: 3, handlingMs: 1.234, idempotencyKey: r.idempotencyKey,
  });
  t.same(rows[0]!.params, { CallSid: 'c', weird: 'q"\\u0000\'' }, 'text that merely looks like an escape is kept');
  t.same(rows[0]!.legs, r.legs);
  t.equal(rows[0]!.receivedAt.toISOString(), r.receivedAt.toISOString());
});

t.test('a failed commit rejects every CDR of its batch, and the writer goes on', async (t) => {
  const db = await migratedDatabase(t);
  const writer = new CdrWriter(db.pool, quietLog);
  await db.pool.query('ALTER TABLE cdrs RENAME TO cdrs_away');
  const results = await Promise.allSettled([writer.write(record()), writer.write(record())]);
  t.same(results.map((r) => r.status), ['rejected', 'rejected']);
  t.equal(writer.stats.failures, 1);
  await db.pool.query('ALTER TABLE cdrs_away RENAME TO cdrs');
  await writer.write(record());
  t.equal(await db.prisma.cdr.count(), 1);
  await writer.close();
  await t.rejects(writer.write(record()), /closed/);
});
