import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { Test } from 'tap';
import { ADMIN_KEY, capturedLog, createTestDatabase, listeningPort, quietLog } from '../helper.js';
import { buildApp } from '../../src/app.js';
import { ensureBootstrapKey } from '../../src/store/api-keys.js';
import { openDatabase } from '../../src/store/database.js';
import { applyMigrations, MIGRATIONS_DIR, pendingMigrations, readMigrations } from '../../src/store/migrate.js';
import { prepareDatabase } from '../../src/store/setup.js';
import { loadConfig } from '../../src/config.js';

t.test('migrations are applied once and recorded in _prisma_migrations as prisma migrate deploy does', async (t) => {
  const db = openDatabase(await createTestDatabase(t), quietLog);
  t.teardown(() => db.close());
  const onDisk = await readMigrations();
  t.ok(onDisk.length >= 1);
  t.same(
    await applyMigrations(db.pool),
    onDisk.map((m) => m.name),
    'first run applies all',
  );
  t.same(await applyMigrations(db.pool), [], 'second run applies none');
  t.same(await pendingMigrations(db.pool), []);
  const { rows } = await db.pool.query(
    'SELECT migration_name, checksum, finished_at, applied_steps_count, rolled_back_at FROM "_prisma_migrations" ORDER BY migration_name',
  );
  t.equal(rows.length, onDisk.length);
  for (const [i, m] of onDisk.entries()) {
    t.equal(rows[i].migration_name, m.name);
    t.equal(rows[i].checksum, createHash('sha256').update(m.sql).digest('hex'), 'checksum is the sha256 of migration.sql');
    t.ok(rows[i].finished_at);
    t.equal(rows[i].applied_steps_count, 1);
    t.equal(rows[i].rolled_back_at, null);
  }
});

t.test('instances starting at once apply each migration only once', async (t) => {
  const url = await createTestDatabase(t);
  const a = openDatabase(url, quietLog);
  const b = openDatabase(url, quietLog);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const [ra, rb] = await Promise.all([applyMigrations(a.pool), applyMigrations(b.pool)]);
  t.equal(ra.length + rb.length, (await readMigrations()).length);
});

/** A database as a version of exoroute whose newest migration is `last` left it: its migrations, up to `last`, applied. */
async function databaseOfVersion(t: Test, last: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-mig-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const m of await readMigrations()) if (m.name <= last) await cp(path.join(MIGRATIONS_DIR, m.name), path.join(dir, m.name), { recursive: true });
  const url = await createTestDatabase(t);
  const db = openDatabase(url, quietLog);
  await applyMigrations(db.pool, dir);
  await db.close();
  return url;
}

/** An instance of this version starting on `url` (README, Upgrading): migrations, bootstrap key, the app; with its log's warnings. */
async function startInstance(t: Test, url: string) {
  const { logger, lines } = capturedLog('warn');
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, DATABASE_URL: url });
  const store = await prepareDatabase(config, logger);
  t.teardown(() => store.close());
  await ensureBootstrapKey(store.db.pool, { configuredKey: ADMIN_KEY, dataDir });
  const app = await buildApp({ config, db: store.db, logger: quietLog });
  t.teardown(() => app.close());
  await app.ready();
  return { app, warnings: () => lines.map((l) => JSON.parse(l) as { msg: string; applied?: string[] }) };
}

t.test(
  "two instances of this version starting at once on an older version's database: each migration applied once, the one that applied a change to how the dial functions are called says the older instances now fail their dial answers, and both serve",
  async (t) => {
    // The next migration, 20261206230000_sticky_per_tier, adds an attribute to dial_extra, which an instance sends by position.
    const url = await databaseOfVersion(t, '20261206210000_refetch_status_over_guessed_outcome');
    const [a, b] = await Promise.all([startInstance(t, url), startInstance(t, url)]);
    const db = openDatabase(url, quietLog);
    t.teardown(() => db.close());
    const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM "_prisma_migrations" GROUP BY migration_name HAVING count(*) > 1');
    t.same(rows, [], 'no migration recorded twice');
    t.same(await pendingMigrations(db.pool), [], 'all applied');

    const warned = [...a.warnings(), ...b.warnings()].filter((w) => /dial functions/.test(w.msg));
    t.equal(warned.length, 1, 'one warning, from the instance that applied the migrations');
    t.match(warned[0]?.msg, /instances of the version before .* onError .* restart them now/);
    t.ok(warned[0]?.applied?.includes('20261206230000_sticky_per_tier'), 'naming the migrations applied');

    const headers = { authorization: `Bearer ${ADMIN_KEY}` };
    const group = { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '+919812345678', priority: 1 }] };
    t.equal((await a.app.inject({ method: 'POST', url: '/admin/dial-groups', headers, payload: group })).statusCode, 201);
    const flow = { slug: 'agents', name: 'Agents', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { numbers: ['+918047110000'] } };
    t.equal((await a.app.inject({ method: 'POST', url: '/admin/flows', headers, payload: flow })).statusCode, 201);
    for (const [name, app] of [
      ['a', a.app],
      ['b', b.app],
    ] as const) {
      let res = await app.inject({ method: 'GET', url: `/exotel/dial-whom/agents?CallSid=both-${name}&CallFrom=09800000001` });
      // b's rules snapshot has the flow within a second (NOTIFY)
      for (let i = 0; i < 100 && res.statusCode === 404; i++) {
        await new Promise((r) => setTimeout(r, 20));
        res = await app.inject({ method: 'GET', url: `/exotel/dial-whom/agents?CallSid=both-${name}-${i}&CallFrom=09800000001` });
      }
      t.same([res.statusCode, res.body], [200, '+919812345678'], `instance ${name} answers from the dial group, not onError`);
    }
  },
);

t.test('an upgrade whose migrations keep how the dial functions are called does not say the older instances fail: they keep answering', async (t) => {
  for (const [last, why] of [
    ['20261210016000_empty_answer_not_repeated', '20261210016001 drops and creates the dial functions with the same types and parameters'],
    [
      '20261206230000_sticky_per_tier',
      "20261207010000 adds a parameter with a default to dial_agent_event(), which the older instances' calls without it still reach",
    ],
  ]) {
    const { warnings } = await startInstance(t, await databaseOfVersion(t, last!));
    t.same(
      warnings().filter((w) => /dial functions/.test(w.msg)),
      [],
      `from ${last}: no warning (${why})`,
    );
  }
});

t.test('a failing migration is rolled back and named; an edited applied migration is refused', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-mig-'));
  await mkdir(path.join(dir, '001_ok'));
  await writeFile(path.join(dir, '001_ok', 'migration.sql'), 'CREATE TABLE a (id int);');
  await mkdir(path.join(dir, '002_bad'));
  await writeFile(path.join(dir, '002_bad', 'migration.sql'), 'CREATE TABLE b (id int); SELECT nope FROM nowhere;');
  const db = openDatabase(await createTestDatabase(t), quietLog);
  t.teardown(() => db.close());
  await t.rejects(applyMigrations(db.pool, dir), /migration 002_bad failed/);
  const tables = await db.pool.query(`SELECT to_regclass('a') AS a, to_regclass('b') AS b`);
  t.same(tables.rows[0], { a: 'a', b: null }, '001 stays, 002 rolled back whole');
  t.same(await pendingMigrations(db.pool, dir), ['002_bad']);
  await writeFile(path.join(dir, '001_ok', 'migration.sql'), 'CREATE TABLE a (id bigint);');
  await t.rejects(applyMigrations(db.pool, dir), /001_ok was edited/);
});

t.test("a migration stuck behind a long query gives up its lock wait and retries, so the running instances' queries are not queued behind it", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-mig-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(path.join(dir, '001_table'));
  await writeFile(path.join(dir, '001_table', 'migration.sql'), 'CREATE TABLE calls (id int);');
  const url = await createTestDatabase(t);
  const db = openDatabase(url, quietLog);
  const other = openDatabase(url, quietLog);
  t.teardown(async () => {
    await db.close();
    await other.close();
  });
  await applyMigrations(db.pool, dir);
  await mkdir(path.join(dir, '002_alter'));
  await writeFile(path.join(dir, '002_alter', 'migration.sql'), 'ALTER TABLE calls ADD COLUMN note text;');

  // A long read of the table (say a CSV export) on another connection, as a running instance holds it.
  const reader = await other.pool.connect();
  await reader.query('BEGIN');
  await reader.query('SELECT count(*) FROM calls');
  const warnings: unknown[] = [];
  const log = { debug: () => {}, info: () => {}, warn: (o: unknown) => warnings.push(o) } as unknown as Pick<pino.Logger, 'debug' | 'info' | 'warn'>;
  const migrating = applyMigrations(db.pool, dir, log, { timeoutMs: 100, retryMs: 50 });
  await new Promise((r) => setTimeout(r, 300));

  // A running instance's write to the table meanwhile (a callback's CDR) must not wait for the read.
  const started = Date.now();
  const writer = await other.pool.connect();
  await writer.query(`SET statement_timeout = 2000`);
  await writer.query('INSERT INTO calls (id) VALUES (1)');
  writer.release();
  t.ok(Date.now() - started < 1500, `the write went through in ${Date.now() - started} ms while the migration waited`);

  await reader.query('COMMIT');
  reader.release();
  t.same(await migrating, ['002_alter'], 'applied once the long read ended');
  const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'calls' AND column_name = 'note'`);
  t.equal(rows[0].n, 1);
  t.match(warnings[0], { migration: '002_alter', attempt: 1 }, 'the wait is logged, naming the migration');
});

t.test('a database migrated by a newer version (a rolled-back deploy): the start warns, naming what this version does not know', async (t) => {
  const url = await createTestDatabase(t);
  const db = openDatabase(url, quietLog);
  t.teardown(() => db.close());
  await applyMigrations(db.pool);
  const newer = '20991231000000_from_a_newer_version';
  await db.pool.query(
    `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, finished_at, applied_steps_count) VALUES (gen_random_uuid()::text, $1, $2, now(), 1)`,
    ['0'.repeat(64), newer],
  );
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const store = await prepareDatabase(loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: 'exr_test-admin-key-0123456789', DATABASE_URL: url }), log);
  await store.close();
  const warning = lines.find((l) => l.level === 40);
  t.ok(warning, 'a warning at start');
  t.same(warning?.unknownMigrations, [newer], 'naming the migrations this version does not have');
  t.match(warning?.msg, /newer version/);
});

t.test('an instance whose clock is off from Postgres says so at start: instances read wrap-ups and pauses other instances stamped', async (t) => {
  const url = await createTestDatabase(t);
  const start = async (now?: () => number) => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
    t.teardown(() => rm(dataDir, { recursive: true, force: true }));
    const config = loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: 'exr_test-admin-key-0123456789', DATABASE_URL: url });
    const store = await prepareDatabase(config, log, now ? { now } : {});
    await store.close();
    return lines.filter((l) => l.level === 40);
  };
  t.same(await start(), [], 'in step (the same machine): no warning');
  const ahead = await start(() => Date.now() + 120_000);
  t.equal(ahead.length, 1, 'two minutes ahead: a warning');
  t.ok(Math.abs((ahead[0]?.clockOffsetMs as number) - 120_000) < 1000, `naming the offset (${String(ahead[0]?.clockOffsetMs)} ms)`);
  t.match(ahead[0]?.msg, /clock is 1\d\d\.\d s ahead of Postgres'.*wrap-ups.*NTP/);
  const behind = await start(() => Date.now() - 120_000);
  t.match(behind[0]?.msg, /clock is 1\d\d\.\d s behind Postgres'/);
});

t.test(
  'a migration recorded as unfinished, or edited since it was applied, stops the start with one line and exit code 3 (no restart can fix it)',
  async (t) => {
    const url = await createTestDatabase(t);
    const db = openDatabase(url, quietLog);
    t.teardown(() => db.close());
    await applyMigrations(db.pool);
    const last = (await readMigrations()).at(-1)!.name;
    const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
    t.teardown(() => rm(dataDir, { recursive: true, force: true }));
    const start = () =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          ['--import=tsx', 'src/server.ts'],
          {
            env: {
              ...process.env,
              DATABASE_URL: url,
              DATA_DIR: dataDir,
              ADMIN_API_KEY: 'exr_test-admin-key-0123456789',
              EXOTEL_CALLBACKS_OPEN: 'true',
              PORT: '0',
            },
            timeout: 60_000,
          },
          (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
        );
      });
    // as a failed `prisma migrate deploy` leaves it
    await db.pool.query(`UPDATE "_prisma_migrations" SET finished_at = NULL WHERE migration_name = $1`, [last]);
    const unfinished = await start();
    t.equal(unfinished.code, 3, 'exit code 3: the unit is not restarted every 2 s for ever');
    t.match(unfinished.stderr, new RegExp(`^exoroute cannot start: migration ${last} started but did not finish.*prisma migrate resolve.*\\n$`));
    t.equal(unfinished.stderr.split('\n').length, 2, 'one line, no stack trace');

    await db.pool.query(`UPDATE "_prisma_migrations" SET finished_at = now(), checksum = $2 WHERE migration_name = $1`, [last, '0'.repeat(64)]);
    const edited = await start();
    t.equal(edited.code, 3);
    t.match(edited.stderr, new RegExp(`^exoroute cannot start: migration ${last} was edited after it was applied`));
    t.equal(edited.stderr.split('\n').length, 2, 'one line, no stack trace');
  },
);

t.test("a running instance stays ready when the next version's migrations land on its disk (git pull, before the restart)", async (t) => {
  // A checkout of its own, as on a server upgraded with `git pull`, `npm ci && npm run build`, then a restart (README, Upgrading).
  const root = await mkdtemp(path.join(tmpdir(), 'exoroute-checkout-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  for (const entry of ['src', 'prisma', 'package.json', 'tsconfig.json']) await cp(entry, path.join(root, entry), { recursive: true });
  await symlink(path.resolve('node_modules'), path.join(root, 'node_modules'));
  const url = await createTestDatabase(t);
  const server = spawn(process.execPath, ['--import=tsx', 'src/server.ts'], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: url,
      DATA_DIR: path.join(root, 'data'),
      ADMIN_API_KEY: 'exr_test-admin-key-0123456789',
      EXOTEL_CALLBACKS_OPEN: 'true',
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  server.stdout.on('data', (c: Buffer) => (output += c.toString()));
  server.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise((resolve) => server.on('exit', resolve));
  t.teardown(async () => {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM');
    await exited;
  });
  const base = `http://127.0.0.1:${await listeningPort(t, server, () => output, 60_000)}`;
  const readyz = async () => {
    const res = await fetch(`${base}/readyz`);
    return { status: res.status, body: (await res.json()) as { reasons: string[] } };
  };
  let ready = await readyz();
  for (let i = 0; i < 100 && ready.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 50));
    ready = await readyz();
  }
  t.equal(ready.status, 200, 'ready once started', { body: ready.body });

  const next = path.join(root, 'prisma/migrations/20991231000000_next_version');
  await mkdir(next);
  await writeFile(path.join(next, 'migration.sql'), 'ALTER TABLE cdrs ADD COLUMN next_version_column TEXT;\n');
  t.same(
    await readyz(),
    { status: 200, body: { status: 'ready', reasons: [] } },
    "still ready: this instance's code needs none of the next version's migrations",
  );

  // A migration of its own missing from the database (a backup from before it restored) still shows.
  const db = openDatabase(url, quietLog);
  t.teardown(() => db.close());
  const last = (await readMigrations()).at(-1)!.name;
  await db.pool.query('DELETE FROM "_prisma_migrations" WHERE migration_name = $1', [last]);
  t.match(await readyz(), { status: 503, body: { reasons: [`migrations not applied: ${last}`] } }, 'one of its own migrations missing: unready, naming it');
});

t.test('an instance that waits for another one applying migrations says so, and each migration is named as it starts', async (t) => {
  const url = await createTestDatabase(t);
  const holder = openDatabase(url, quietLog);
  t.teardown(() => holder.close());
  // another instance, applying migrations: it holds Prisma's migration lock
  const other = await holder.pool.connect();
  await other.query('SELECT pg_advisory_lock(72707369)');
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const starting = prepareDatabase(loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: 'exr_test-admin-key-0123456789', DATABASE_URL: url }), log);
  for (let i = 0; i < 200 && !lines.some((l) => /waiting/.test(String(l.msg))); i++) await new Promise((r) => setTimeout(r, 10));
  t.match(
    lines.find((l) => /waiting/.test(String(l.msg))),
    { level: 30, msg: /another instance .*migrations/ },
    'the wait is logged while it lasts',
  );
  await other.query('SELECT pg_advisory_unlock(72707369)');
  other.release();
  const store = await starting;
  await store.close();
  const first = (await readMigrations())[0]!.name;
  t.ok(
    lines.some((l) => l.migration === first && /applying/.test(String(l.msg))),
    'each migration is logged as it starts (at debug on this new database)',
  );
});

t.test(
  'a start on a new database says in one info line how many migrations it applied and the newest, each one at debug; an upgrade names each at info as it starts',
  async (t) => {
    const start = async (url: string, level: pino.Level) => {
      const { logger, lines } = capturedLog(level);
      const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-data-'));
      t.teardown(() => rm(dataDir, { recursive: true, force: true }));
      const store = await prepareDatabase(loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, DATABASE_URL: url }), logger);
      await store.close();
      return lines.map((l) => JSON.parse(l) as { level: number; msg: string; migration?: string; applied?: number; newest?: string });
    };
    const all = (await readMigrations()).map((m) => m.name);
    const newest = all.at(-1)!;

    const fresh = await start(await createTestDatabase(t), 'info');
    const about = fresh.filter((l) => /migration/.test(l.msg));
    t.equal(about.length, 1, `one line on a new database, not one per migration (${all.length})`, { lines: about.map((l) => l.msg) });
    t.match(about[0], { level: 30, applied: all.length, newest, msg: new RegExp(`${all.length} migrations applied.*${newest}`) }, 'how many, and the newest');
    const debug = await start(await createTestDatabase(t), 'debug');
    t.same(
      debug.filter((l) => /applying/.test(l.msg)).map((l) => [l.level, l.migration]),
      all.map((name) => [20, name]),
      'each one at debug',
    );

    // An upgrade applies few, and one on a large table may take minutes: each is named as it starts.
    const upgrade = await start(await databaseOfVersion(t, all.at(-3)!), 'info');
    t.same(
      upgrade.filter((l) => /applying/.test(l.msg)).map((l) => [l.level, l.migration]),
      all.slice(-2).map((name) => [30, name]),
      'an upgrade: each migration at info as it starts',
    );
    t.match(
      upgrade.find((l) => l.applied !== undefined),
      { level: 30, applied: 2, newest },
      'and the count',
    );
  },
);

const LF_FILES = ['prisma/migrations/20261206230000_sticky_per_tier/migration.sql', 'prisma/functions/dial_answer.sql'];
const eolAttributes = await new Promise<string | null>((resolve) =>
  execFile('git', ['check-attr', 'eol', '--', ...LF_FILES], (err, stdout) => resolve(err ? null : stdout)),
);
t.test(
  'migrations and function files are checked out with LF line endings everywhere (their checksums are byte for byte)',
  { skip: eolAttributes === null ? 'git is not available here (not a git checkout)' : false },
  async (t) => {
    for (const file of LF_FILES) t.match(eolAttributes, `${file}: eol: lf`, file);
  },
);
