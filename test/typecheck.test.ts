/**
 * The code type-checks. Tests load through tsx, which strips types without checking them, so a type
 * error passed every test while `npm run build` (the Dockerfile's build stage) refused it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';

t.test('tsc --noEmit finds no type error in src, test, scripts or bench (what `npm run build` compiles is among them)', async (t) => {
  // node_modules/.bin/tsc is an ES module without an extension, which tap's hooks in this process's
  // children cannot load; the script it imports can.
  const tsc = [process.execPath, 'node_modules/typescript/lib/tsc.js', '--noEmit', '-p', 'tsconfig.json'] as const;
  const result = await promisify(execFile)(tsc[0], tsc.slice(1), { maxBuffer: 16 * 1024 * 1024 }).then(
    () => ({ code: 0, output: '' }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? 1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
  );
  t.equal(result.code, 0, result.output.trim() || 'tsc exit code');
});
