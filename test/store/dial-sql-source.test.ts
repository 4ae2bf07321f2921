/**
 * prisma/functions/dial_answer.sql is the one source of the dial functions and their type: the
 * migrations copy it, and a freshly migrated database holds exactly what it defines. What the
 * file defines is read by applying it to an empty database.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import pg from 'pg';
import { createTestDatabase, migratedDatabase } from '../helper.js';
import { MIGRATIONS_DIR } from '../../src/store/migrate.js';
import { asDialExtra, asDialRequest } from '../../src/store/dial-state.js';

const SOURCE = path.resolve(import.meta.dirname, '../../prisma/functions/dial_answer.sql');
const BEGIN = '-- >>> prisma/functions/dial_answer.sql\n';
const END = '-- <<< prisma/functions/dial_answer.sql\n';

/** Each function (by signature) and composite type of the public schema, or of those named, as Postgres prints it. */
async function definitions(pool: pg.Pool, only?: Iterable<string>): Promise<Map<string, string>> {
  const names = only ? [...only] : null;
  const { rows } = await pool.query<{ name: string; def: string }>(
    `SELECT 'function ' || p.oid::regprocedure::text AS name, pg_get_functiondef(p.oid) AS def
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public'
     UNION ALL
     SELECT 'type ' || t.typname, string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      WHERE n.nspname = 'public'
      GROUP BY t.typname`,
  );
  const normalised = (def: string) =>
    def
      .split('\n')
      .map((line) => line.trimEnd())
      .join('\n')
      .trim();
  return new Map(rows.filter((r) => !names || names.includes(r.name)).map((r) => [r.name, normalised(r.def)]));
}

/** What the file defines: applied alone to an empty database. */
async function fromSource(t: Test): Promise<Map<string, string>> {
  const pool = new pg.Pool({ connectionString: await createTestDatabase(t), max: 1 });
  t.teardown(() => pool.end());
  // SQL-language functions read tables an empty database lacks: their bodies are checked where migrated
  await pool.query('SET check_function_bodies = off');
  await pool.query(await readFile(SOURCE, 'utf8'));
  return definitions(pool);
}

/** Names of what differs between the two: missing, extra or changed. */
function differences(want: Map<string, string>, got: Map<string, string>): string[] {
  return [...new Set([...want.keys(), ...got.keys()])].filter((name) => want.get(name) !== got.get(name)).sort();
}

t.test('the newest migration that installs prisma/functions/dial_answer.sql holds it verbatim', async (t) => {
  const source = await readFile(SOURCE, 'utf8');
  const copies: Array<{ name: string; sql: string }> = [];
  for (const name of (await readdir(MIGRATIONS_DIR)).sort()) {
    const sql = await readFile(path.join(MIGRATIONS_DIR, name, 'migration.sql'), 'utf8').catch(() => '');
    if (sql.includes(BEGIN)) copies.push({ name, sql });
  }
  const newest = copies.at(-1);
  t.ok(newest, 'a migration installs the file');
  const start = newest!.sql.indexOf(BEGIN) + BEGIN.length;
  t.equal(newest!.sql.slice(start, newest!.sql.indexOf(END, start)), source, `${newest!.name} copies the file as it is now`);
});

t.test('a freshly migrated database holds the dial functions and their type as the file defines them', async (t) => {
  const want = await fromSource(t);
  t.same(
    [...want.keys()].sort(),
    [
      'function agent_missed_offers(text,integer)',
      'function agent_offer_claim(text,text,text,timestamp with time zone)',
      'function dial_agent_event(text,text,boolean,boolean,boolean,boolean,text,timestamp with time zone,text,integer,integer,integer,integer,text,integer,timestamp with time zone)',
      'function dial_answer(dial_request,boolean)',
      'function dial_answer_batch(json)',
      'function dial_group_rr_sequence()',
      'function dial_offer(dial_request,dial_extra,boolean)',
      'function dial_offer_batch(json)',
      'function dial_offer_ended(text,text,text,text,text,boolean,timestamp with time zone,integer,integer,integer,text)',
      'function dial_offers(json)',
      'function dial_turn(text[],text[],text,boolean)',
      'type dial_batch_item',
      'type dial_batch_request',
      'type dial_extra',
      'type dial_request',
    ],
    'what the file defines',
  );
  const db = await migratedDatabase(t);
  t.same(differences(want, await definitions(db.pool, want.keys())), [], 'no function or type differs');
  const overloads = await db.pool.query(`SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'dial_agent_event'`);
  t.equal(overloads.rows[0].n, 1, 'one dial_agent_event(): an older signature left beside it would make old calls ambiguous');
  const old = await db.pool.query(`SELECT dial_agent_event('+919811100001', 'c1', true, true, false, false, NULL, now(), NULL, 35, 0, 0, 0, 'f') AS effect`);
  t.same(old.rows[0].effect, { offered: true }, 'called as the version before calls it (14 arguments)');
});

t.test('a dial function or the request type changed by hand no longer matches the file', async (t) => {
  const want = await fromSource(t);
  const db = await migratedDatabase(t);
  const current = () => definitions(db.pool, want.keys());
  const def = (await current()).get('function dial_offer_batch(json)')!;
  t.match(def, /idx := idx \+ 1;/);
  await db.pool.query(def.replace('idx := idx + 1;', 'idx := idx + 2;'));
  t.same(differences(want, await current()), ['function dial_offer_batch(json)'], 'the changed function is named');
  await db.pool.query(def);
  t.same(differences(want, await current()), [], 'put back, it matches again');
  await db.pool.query('ALTER TYPE dial_request ADD ATTRIBUTE priority INT');
  t.same(differences(want, await current()), ['type dial_request'], 'an attribute added by hand is found');
});

t.test('a DialRequest is marshalled into exactly the attributes of dial_request, in their order', async (t) => {
  const db = await migratedDatabase(t);
  const { rows } = await db.pool.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
      WHERE t.typname = 'dial_request' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
  );
  const at = new Date('2026-12-05T10:00:00.000Z');
  const marshalled = asDialRequest({
    key: { callSid: 'CA1', endpoint: 'connect', flowSlug: 'agents' },
    attemptKey: '|',
    tried: [],
    candidates: ['+919811100001'],
    plan: { base: ['+919811100001'], arrange: 'as_is' },
    rrGroup: null,
    sticky: null,
    connected: null,
    at,
    busyExpired: at,
  });
  t.same(
    Object.keys(marshalled),
    rows.map((r) => r.name),
    'by name, and in order (a request alone is sent by position)',
  );
});

t.test("a request's tiers and reported attempt are marshalled into exactly the attributes of dial_extra", async (t) => {
  const db = await migratedDatabase(t);
  const { rows } = await db.pool.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
      WHERE t.typname = 'dial_extra' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
  );
  const at = new Date('2026-12-05T10:00:00.000Z');
  const marshalled = asDialExtra({
    key: { callSid: 'CA1', endpoint: 'connect', flowSlug: 'agents' },
    attemptKey: '|',
    tried: [],
    candidates: ['+919811100001'],
    plan: { base: ['+919811100001'], arrange: 'as_is' },
    rrGroup: null,
    sticky: null,
    connected: null,
    at,
    busyExpired: at,
    extra: { tiers: null, reported: null, tierGroups: null },
  });
  t.same(
    Object.keys(marshalled),
    rows.map((r) => r.name),
    "in the type's order: a request alone is sent as ROW($1, …)",
  );
});

t.test('a request of a batch (dial_batch_request) has the attributes of dial_request, then those of dial_extra', async (t) => {
  // dial_offer_batch() builds the two records from it by position
  const db = await migratedDatabase(t);
  const attributes = async (type: string) =>
    (
      await db.pool.query<{ a: string }>(
        `SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) AS a FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
          WHERE t.typname = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
        [type],
      )
    ).rows.map((r) => r.a);
  t.same(await attributes('dial_batch_request'), [...(await attributes('dial_request')), ...(await attributes('dial_extra'))]);
});
