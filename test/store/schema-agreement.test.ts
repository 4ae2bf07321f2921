/**
 * prisma/schema.prisma and the hand-written SQL in prisma/migrations must agree: every model and
 * field is usable through the Prisma client against the migrated database, and the database has
 * no column the schema does not know.
 */
import t from 'tap';
import { migratedDatabase } from '../helper.js';
import { readFile } from 'node:fs/promises';

interface ModelColumns {
  table: string;
  columns: Map<string, boolean>;
  indexes: string[];
}

/**
 * Tables, columns (name → nullable) and indexes declared in schema.prisma; relation fields are
 * skipped. An index is written `table (col, col)`, with `unique` for @unique / @@unique; primary
 * keys are left out.
 */
async function declaredTables(): Promise<ModelColumns[]> {
  const text = await readFile(new URL('../../prisma/schema.prisma', import.meta.url), 'utf8');
  const blocks = [...text.matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)];
  const modelNames = new Set(blocks.map((b) => b[1]!));
  return blocks.map(([, name, body]) => {
    const table = /@@map\("([^"]+)"\)/.exec(body!)?.[1] ?? name!;
    const columns = new Map<string, boolean>();
    const columnOf = new Map<string, string>();
    const indexes: string[] = [];
    for (const line of body!.split('\n')) {
      const m = /^\s+(\w+)\s+(\w+)(\[\]|\?)?(.*)$/.exec(line);
      if (!m || m[1]!.startsWith('@@') || modelNames.has(m[2]!)) continue;
      const column = /@map\("([^"]+)"\)/.exec(m[4]!)?.[1] ?? m[1]!;
      // Prisma maps scalar lists (String[]) to array columns that allow NULL.
      columns.set(column, m[3] === '?' || m[3] === '[]');
      columnOf.set(m[1]!, column);
      if (/@unique\b/.test(m[4]!)) indexes.push(`${table} unique (${column})`);
    }
    for (const [, kind, fields] of body!.matchAll(/^\s+@@(index|unique)\(\[([^\]]*)\]/gm)) {
      const cols = fields!.split(',').map((f) => columnOf.get(f.trim().replace(/\(.*$/, '')) ?? `?${f.trim()}`);
      indexes.push(`${table} ${kind === 'unique' ? 'unique ' : ''}(${cols.join(', ')})`);
    }
    return { table, columns, indexes };
  });
}

t.test('every model and field of schema.prisma round-trips through the client on the migrated database', async (t) => {
  const db = await migratedDatabase(t);
  const { prisma } = db;
  const now = new Date('2026-11-20T10:00:00.123Z');

  const list = await prisma.vipList.create({ data: { slug: 'gold', name: 'Gold', description: 'd' } });
  const entry = await prisma.vipEntry.create({
    data: { listId: list.id, number: '+919812345678', name: 'A', tier: 't', note: 'n', expiresAt: now },
  });
  t.same((await prisma.vipEntry.findUniqueOrThrow({ where: { id: entry.id }, include: { list: true } })).list.slug, 'gold');
  t.equal(entry.expiresAt?.toISOString(), now.toISOString(), 'timestamptz keeps milliseconds');

  const schedule = await prisma.schedule.create({
    data: { slug: 's', name: 'S', timezone: 'Asia/Kolkata', weekly: [{ day: 'mon', open: '09:00', close: '18:00' }], exceptions: [] },
  });
  t.same(schedule.weekly, [{ day: 'mon', open: '09:00', close: '18:00' }]);

  const group = await prisma.dialGroup.create({
    data: {
      slug: 'sales',
      name: 'Sales',
      strategy: 'round_robin',
      sticky: { enabled: true, lookbackDays: 30 },
      connect: { record: true },
      members: { create: [{ number: '+919812345678', name: 'Asha', priority: 1, weight: 2, active: false, scheduleSlug: 's' }] },
    },
    include: { members: true },
  });
  t.equal(group.rrPosition, 0n);
  t.match(group.members[0], { weight: 2, active: false, scheduleSlug: 's' });
  await prisma.dialGroup.update({ where: { id: group.id }, data: { rrPosition: { increment: 1 } } });

  const flow = await prisma.flow.create({
    data: { slug: 'inbound', name: 'Main', type: 'passthru', mode: 'async', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'B' } },
  });
  t.same(flow.onError, { branch: 'B' });

  const cdr = await prisma.cdr.create({
    data: {
      receivedAt: now,
      endpoint: 'passthru',
      flowSlug: 'inbound',
      callSid: 'abc',
      callFrom: '+919812345678',
      callFromRaw: '09812345678',
      callTo: '+918047115777',
      callToRaw: '08047115777',
      direction: 'incoming',
      callStatus: 'in-progress',
      callType: 'call-attempt',
      digits: '1',
      customField: 'x',
      dialCallStatus: 'busy',
      dialWhomNumber: '+919812345679',
      legs: [{ Number: '1' }],
      params: { CallSid: 'abc' },
      decision: { branch: 'A' },
      matchedRule: 'vip',
      outcome: 'answered',
      reason: null,
      httpStatus: 200,
      responseBody: '',
      handlingMs: 1.25,
      attempt: 2,
      idempotencyKey: 'k1',
    },
  });
  t.equal(cdr.handlingMs, 1.25);
  await t.rejects(
    prisma.cdr.create({ data: { endpoint: 'x', params: {}, outcome: 'x', httpStatus: 200, handlingMs: 0, idempotencyKey: 'k1' } }),
    { code: 'P2002' },
    'idempotency key is unique',
  );

  const refusal = await prisma.callbackRefusal.create({
    data: { minute: now, address: '203.0.113.9', refusals: 3, wrongSecret: 2, outsideCidrs: 1, storedAsCdrs: 1, throttled: 1, firstAt: now, lastAt: now },
  });
  t.equal(refusal.refusals, 3);
  await t.rejects(
    prisma.callbackRefusal.create({ data: { minute: now, address: '203.0.113.9', firstAt: now, lastAt: now } }),
    { code: 'P2002' },
    'one row per minute and address',
  );

  const key = await prisma.apiKey.create({ data: { name: 'k', role: 'admin', hash: 'h', prefix: 'p', revokedAt: now, lastUsedAt: now } });
  await prisma.auditEntry.create({ data: { apiKeyId: key.id, action: 'create', entity: 'vip-list', entityId: 'gold', before: {}, after: { a: 1 } } });
  t.equal(await prisma.auditEntry.count(), 1);

  const agent = await prisma.agentState.create({
    data: {
      number: '+919812345678',
      busy: true,
      busySince: now,
      lastDialedAt: now,
      lastConnectedAt: now,
      busyCallSid: 'abc',
      wrapUpUntil: now,
      missedOffers: 2,
      pausedUntil: now,
      pausedReason: '2 missed offers',
    },
  });
  t.equal(agent.busy, true);
  t.equal(agent.missedOffers, 2);
  const away = await prisma.agentAvailability.create({
    data: { number: '+919812345678', status: 'away', reason: 'lunch', until: now, setBy: 'api-key:x', setAt: now },
  });
  t.equal(away.until?.toISOString(), now.toISOString());
  const offer = await prisma.agentOffer.create({
    data: { callSid: 'abc', number: '+919812345678', groupSlug: 'sales', offeredAt: now, outcome: 'no-answer', endedAt: now },
  });
  t.equal(offer.outcome, 'no-answer');
  const overridden = await prisma.schedule.update({
    where: { slug: 's' },
    data: { overrideOpen: false, overrideReason: 'flood', overrideUntil: now, overrideSetAt: now },
  });
  t.equal(overridden.overrideOpen, false);
  t.match(
    await prisma.dialGroup.findUniqueOrThrow({ where: { slug: 'sales' } }),
    { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 300 },
    'pacing defaults',
  );
  await prisma.callerAgent.create({ data: { caller: '+919800000000', agent: '+919812345678', connectedAt: now } });
  const call = await prisma.dialCall.create({ data: { callSid: 'abc', endpoint: 'dial-whom', flowSlug: 'f', order: ['+1', '+2'], tried: ['+1'] } });
  t.same(call.order, ['+1', '+2']);
  t.same(call.answers, {}, 'no answer given yet');
  const answer = await prisma.dialAnswer.create({ data: { callSid: 'abc', endpoint: 'dial-whom', flowSlug: 'f', attemptKey: 'k', numbers: [] } });
  t.same(answer.numbers, []);

  await prisma.vipList.delete({ where: { id: list.id } });
  t.equal(await prisma.vipEntry.count(), 0, 'deleting a list cascades to its entries');
});

t.test('the migrated tables have exactly the columns schema.prisma declares', async (t) => {
  const db = await migratedDatabase(t);
  const models = await declaredTables();
  t.equal(models.length, 16, 'sixteen models');
  const { rows } = await db.pool.query<{ table_name: string; column_name: string; is_nullable: string }>(
    `SELECT table_name, column_name, is_nullable FROM information_schema.columns
      WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'`,
  );
  const actual = new Map<string, Map<string, boolean>>();
  for (const r of rows) {
    if (!actual.has(r.table_name)) actual.set(r.table_name, new Map());
    actual.get(r.table_name)!.set(r.column_name, r.is_nullable === 'YES');
  }
  const tables = new Set<string>();
  for (const { table, columns: declared } of models) {
    tables.add(table);
    const columns = actual.get(table);
    t.ok(columns, `table ${table} exists`);
    if (!columns) continue;
    for (const [column, nullable] of declared) {
      t.ok(columns.has(column), `${table}.${column} exists`);
      t.equal(columns.get(column), nullable, `${table}.${column} nullability matches`);
    }
    t.same([...columns.keys()].sort(), [...declared.keys()].sort(), `${table} has no extra column`);
  }
  t.same(
    [...actual.keys()].filter((x) => !tables.has(x)),
    [],
    'no table without a model',
  );
});

t.test('the migrated tables have exactly the indexes schema.prisma declares, columns in order', async (t) => {
  const db = await migratedDatabase(t);
  const declared = (await declaredTables()).flatMap((m) => m.indexes).sort();
  const { rows } = await db.pool.query<{ index: string }>(
    `SELECT t.relname || CASE WHEN x.indisunique THEN ' unique (' ELSE ' (' END
            || string_agg(a.attname, ', ' ORDER BY k.ord) || ')' AS index
       FROM pg_index x
       JOIN pg_class t ON t.oid = x.indrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'
       CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
      WHERE NOT x.indisprimary AND t.relname <> '_prisma_migrations'
      GROUP BY x.indexrelid, t.relname, x.indisunique`,
  );
  t.ok(declared.includes('cdrs (flow_slug, received_at, id)'), 'the parser reads @@index');
  t.same(rows.map((r) => r.index).sort(), declared);
});

t.test('CDR JSON columns are json: stored and exported as sent, key order included (schema.prisma says @db.Json)', async (t) => {
  const db = await migratedDatabase(t);
  const types = await db.pool.query<{ column_name: string; data_type: string }>(
    `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'cdrs' AND column_name IN ('legs', 'params', 'decision') ORDER BY column_name`,
  );
  t.same(
    types.rows.map((r) => [r.column_name, r.data_type]),
    [
      ['decision', 'json'],
      ['legs', 'json'],
      ['params', 'json'],
    ],
  );
  const schema = await readFile(new URL('../../prisma/schema.prisma', import.meta.url), 'utf8');
  for (const field of ['legs', 'params', 'decision']) t.match(schema, new RegExp(`\\n\\s+${field}\\s+Json\\??\\s+@db\\.Json\\n`), `${field} is @db.Json`);
  await db.pool.query(
    `INSERT INTO cdrs (endpoint, params, outcome, http_status, handling_ms, idempotency_key) VALUES ('passthru', '{"z":"1","a":"2"}', 'answered', 200, 0, 'k')`,
  );
  t.equal((await db.pool.query<{ p: string }>('SELECT params::text AS p FROM cdrs')).rows[0]!.p, '{"z":"1","a":"2"}', 'key order and spacing kept');
});
