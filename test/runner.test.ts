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

t.test('.ci/run: a step failing before the tests (npm ci, bench smoke, lint, npm test before its runner) still ends with the line, counted', async (t) => {
  // .ci/run in a directory of its own, with an `npm` (test/fixtures/runner/ci-npm) that fails the
  // step named, and the deploy tools present (so that it installs nothing).
  const root = await mkdtemp(path.join(tmpdir(), 'exoroute-ci-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await mkdir(path.join(root, '.ci'));
  await cp('.ci/run', path.join(root, '.ci', 'run'));
  const bin = path.join(root, 'bin');
  await mkdir(bin);
  await cp('test/fixtures/runner/ci-npm', path.join(bin, 'npm'));
  for (const tool of ['caddy', 'promtool', 'docker-compose']) await symlink('/bin/true', path.join(bin, tool));
  const ci = (fail: string) =>
    promisify(execFile)('bash', [path.join(root, '.ci', 'run')], {
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, TMPDIR: root, CI_FIXTURE_FAIL: fail },
    }).then(
      ({ stdout }) => ({ code: 0, lines: stdout.trimEnd().split('\n') }),
      (err: { code?: number; stdout?: string }) => ({ code: err.code ?? 1, lines: (err.stdout ?? '').trimEnd().split('\n') }),
    );
  for (const [fail, last] of [
    ['', '4 passed, 0 failed'],
    ['test', '3 passed, 1 failed'],
    ['ci', '0 passed, 1 failed'],
    ['bench', '0 passed, 1 failed'],
    ['lint', '0 passed, 1 failed'],
    ['runner', '0 passed, 1 failed'],
  ]) {
    const { code, lines } = await ci(fail!);
    const step = fail || 'nothing';
    t.equal(lines.at(-1), last, `${step} failing: the last line`, { lines });
    t.equal(lines.filter((l) => /^\d+ passed, \d+ failed$/.test(l)).length, 1, `${step} failing: one such line`);
    t.equal(code === 0, fail === '', `${step} failing: exit code ${code}`);
  }
});
