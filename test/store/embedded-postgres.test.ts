import t from 'tap';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { quietLog } from '../helper.js';
import { startEmbeddedPostgres } from '../../src/store/embedded-postgres.js';

t.test('the embedded Postgres is reached through its Unix socket; loopback TCP works too', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-embedded-'));
  await chmod(dir, 0o755); // as root, initdb runs as a separate postgres user
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const db = await startEmbeddedPostgres(path.join(dir, 'pg'), quietLog, { persistent: false });
  t.teardown(() => db.stop());
  const peer = async (url: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<{ addr: string | null }>('SELECT inet_client_addr()::text AS addr')).rows[0]!.addr;
    } finally {
      await client.end();
    }
  };
  t.equal(await peer(db.url), null, 'no client address: a Unix-socket connection');
  t.equal(await peer(db.tcpUrl), '127.0.0.1/32');
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.teardown(() => client.end());
  t.equal((await client.query<{ wal_init_zero: string }>('SHOW wal_init_zero')).rows[0]!.wal_init_zero, 'off', 'new WAL segments are not zero-filled first');
});
