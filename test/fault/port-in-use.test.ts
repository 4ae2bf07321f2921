/**
 * A second exoroute (or any other program) already listens on PORT: the start stops with one line
 * naming the address and what to do, not a stack trace, and closes what it had opened in order
 * (no "LISTEN connection lost" from a rules listener whose database was closed under it).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ADMIN_KEY } from '../helper.js';

/** Processes whose command line mentions `text` (the data directory names the embedded Postgres). */
async function processesMentioning(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(text)) found.push(Number(entry));
  }
  return found;
}

t.test('PORT already in use: one line naming the address and the fix, exit 1, nothing else failing', async (t) => {
  // As `npm start` runs by default: DATABASE_URL unset, the embedded Postgres under DATA_DIR.
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-port-'));
  await chmod(dataDir, 0o755); // as root, the embedded Postgres runs as the postgres user
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  // What holds the port: the first exoroute, or another program.
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => holder.close(() => r())));
  const port = (holder.address() as { port: number }).port;

  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, DATABASE_URL: '', PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(async () => {
    if (server.exitCode === null) server.kill('SIGKILL');
    for (const pid of await processesMentioning(dataDir)) process.kill(pid, 'SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  server.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  server.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((r) => server.on('exit', r));

  t.equal(code, 1, 'exits 1');
  t.match(stderr, new RegExp(`^exoroute cannot start: 127\\.0\\.0\\.1:${port} is already in use .*set PORT`, 'm'), 'one line naming the address and PORT', {
    stderr,
  });
  const output = stdout + stderr;
  t.notMatch(output, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
  t.notMatch(output, /\\n\s+at /, 'no stack trace in a log line either');
  t.notMatch(output, /LISTEN connection lost|DatabaseError/, 'nothing runs on against the closed database');
  t.same(await processesMentioning(dataDir), [], 'its embedded Postgres stopped');
});
