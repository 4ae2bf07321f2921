/**
 * `npm test`'s runner (scripts/test.ts), whose last line CI reads: what tap would let pass must
 * count as failed there. Run in a project of its own (this one's package.json "tap" settings and
 * node_modules), so that its tap leaves this run's .tap/ alone, on the Postgres server of this run
 * (TEST_DATABASE_URL), so that it starts none of its own.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type { Test } from 'tap';

async function runner(t: Test, fixtures: string[]): Promise<{ code: number; lines: string[] }> {
  const root = await mkdtemp(path.join(tmpdir(), 'exoroute-runner-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const { tap } = JSON.parse(await readFile('package.json', 'utf8')) as { tap: unknown };
  await writeFile(path.join(root, 'package.json'), JSON.stringify({ name: 'runner-fixture', private: true, type: 'module', tap }));
  await symlink(path.resolve('node_modules'), path.join(root, 'node_modules'));
  await mkdir(path.join(root, 'test'));
  for (const f of fixtures) await cp(f, path.join(root, 'test', path.basename(f)));
  // As from a shell: without what tap tells the processes it runs (a tap run inside one reports as a part of it).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS_)|^NODE_OPTIONS$/.test(k)));
  env.DATABASE_URL = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  const args = ['--import=tsx', path.resolve('scripts/test.ts'), ...fixtures.map((f) => `test/${path.basename(f)}`)];
  const { code, stdout } = await promisify(execFile)(process.execPath, args, { cwd: root, env, maxBuffer: 16 * 1024 * 1024 }).then(
    ({ stdout }) => ({ code: 0, stdout }),
    (err: { code?: number; stdout?: string }) => ({ code: err.code ?? 1, stdout: err.stdout ?? '' }),
  );
  return { code, lines: stdout.trimEnd().split('\n') };
}

t.test('a test file that runs no test fails the run, named, instead of passing as a skip', async (t) => {
  const { code, lines } = await runner(t, ['test/fixtures/runner/no-tests.test.ts']);
  t.equal(lines.at(-1), '0 passed, 1 failed', 'the last line counts it');
  t.equal(code, 1, 'and the exit code says so');
  t.match(lines.at(-2), /no tests found in test\/no-tests\.test\.ts/);
});
