/**
 * `npm start` as the README gives it, with its embedded Postgres: stopped by SIGTERM to the npm
 * process (what `kill` or a supervisor sends), and by SIGINT to its whole process group (what Ctrl-C
 * in a terminal sends). Either way it answers, exits 0, prints no stack trace, and leaves no
 * server nor Postgres behind.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ADMIN_KEY, listeningPort } from '../helper.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

async function npmStart(t: Test, dataDir: string, signal: 'SIGTERM' | 'SIGINT', to: 'npm' | 'group') {
  // Its own process group, as a terminal gives a foreground job.
  const npm = spawn('npm', ['start'], {
    detached: true,
    env: { ...process.env, DATABASE_URL: '', PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  npm.stdout.on('data', (c: Buffer) => (output += c.toString()));
  npm.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => npm.on('exit', (code, sig) => r({ code, signal: sig })));
  t.teardown(async () => {
    if (npm.exitCode === null && npm.signalCode === null) process.kill(-npm.pid!, 'SIGKILL');
    for (const pid of await processesMentioning(dataDir)) process.kill(pid, 'SIGKILL');
  });
  const base = `http://127.0.0.1:${await listeningPort(t, npm, () => output, 90_000)}`;
  let ready = false;
  for (let i = 0; i < 900 && !ready && npm.exitCode === null; i++) {
    ready = await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (!ready) await sleep(100);
  }
  t.ok(ready, 'npm start serves', { output });
  const answer = await fetch(`${base}/exotel/passthru/nowhere?CallSid=npm-start-1`);
  t.equal(answer.status, 404, 'a callback is answered');
  t.ok((await processesMentioning(dataDir)).length > 0, 'the embedded Postgres runs');

  process.kill(to === 'npm' ? npm.pid! : -npm.pid!, signal);
  const { code } = await exited;
  t.equal(code, 0, `exit code 0 after ${signal} to the ${to === 'npm' ? 'npm process' : 'process group'}`, { output });
  t.match(output, /"msg":"stopped"/, 'the server stopped itself');
  t.notMatch(output, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
  t.notMatch(output, /DatabaseError|"level":50/, 'no database error, no error line');
  t.notMatch(output, /\(node:\d+\) \w*Warning:/, "no warning from Node (a library's deprecation included)");
  let left = await processesMentioning(dataDir);
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await sleep(100);
    left = await processesMentioning(dataDir);
  }
  t.same(left, [], 'no Postgres left running');
  const server = await fetch(`${base}/healthz`).then(
    () => 'answering',
    () => 'gone',
  );
  t.equal(server, 'gone', 'no server left answering');
}

t.test('npm start: SIGTERM to npm, then Ctrl-C to its process group, each stop it cleanly with exit 0', async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-npm-start-'));
  await chmod(dataDir, 0o755); // as root, the embedded Postgres runs as the postgres user
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  await t.test('SIGTERM to the npm process', (t) => npmStart(t, dataDir, 'SIGTERM', 'npm'));
  await t.test('SIGINT to the process group (Ctrl-C)', (t) => npmStart(t, dataDir, 'SIGINT', 'group'));
});
