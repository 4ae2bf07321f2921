/**
 * deploy/exoroute.service starts the built service the way `npm run build` lays it out, stops it
 * with SIGTERM within exoroute's own shutdown bound, and is a unit systemd accepts.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const unit = readFileSync('deploy/exoroute.service', 'utf8');
const service = Object.fromEntries(
  unit
    .slice(unit.indexOf('[Service]'))
    .split('\n')
    .slice(1)
    .filter((l) => /^\w+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
) as Record<string, string>;

t.test('the unit runs the built server as an unprivileged user and stops it with SIGTERM', async (t) => {
  const [node, script, ...rest] = service.ExecStart!.split(/\s+/);
  t.match(node, /^\/\S*\/node$/, 'node by absolute path, as systemd requires');
  const tsconfig = JSON.parse(readFileSync('tsconfig.json', 'utf8')) as { compilerOptions: { outDir: string; rootDir: string } };
  t.equal(script, `${tsconfig.compilerOptions.outDir}/src/server.js`, 'the file `npm run build` makes from src/server.ts');
  t.same(rest, [], 'no other arguments');
  t.match(readFileSync('Dockerfile', 'utf8'), /CMD \["node", "dist\/src\/server\.js"\]/, 'the same command the container runs');
  t.not(service.User ?? 'root', 'root', 'not as root');
  t.equal(service.KillSignal, 'SIGTERM');
  t.equal(service.KillMode, 'mixed', 'SIGTERM to node alone: it stops its embedded Postgres itself, last');
  t.ok(Number(service.TimeoutStopSec) > 10, 'more time than the 10 s exoroute takes at most to stop');
  t.match(service.Environment, /DATA_DIR=\/var\/lib\/exoroute/);
  t.match(
    service.Environment,
    /\bEXOTEL_REQUIRE_CALLBACK_SECRET=true\b/,
    'a server: no start without the callback secret unless callbacks are opened on purpose',
  );
  t.equal(service.StateDirectory, 'exoroute', 'DATA_DIR made by systemd, owned by the user');
  t.match(service.EnvironmentFile, /^\/etc\/exoroute\/exoroute\.env$/);
});

const analyze = await execFileAsync('systemd-analyze', ['--version']).then(
  () => true,
  () => false,
);
t.test('systemd-analyze verify accepts the unit', { skip: analyze ? false : 'systemd-analyze is not installed' }, async (t) => {
  const { stderr } = await execFileAsync('systemd-analyze', ['verify', 'deploy/exoroute.service']).catch((err: { stderr: string; code: number }) => {
    t.fail(`systemd-analyze verify failed: ${err.stderr}`);
    return { stderr: err.stderr };
  });
  t.notMatch(stderr, /exoroute\.service/, 'no complaint about the unit');
});

t.test('a configuration error stops the unit instead of restarting it every 2 s forever', async (t) => {
  // server.ts exits 2 on a ConfigError (a bad or missing variable, EXOTEL_CALLBACK_SECRET unset):
  // no restart can fix that. With Restart=on-failure and RestartSec=2 alone the unit restarted
  // for ever (5 starts take over 10 s, so systemd's start limit never stopped it), repeating the
  // message in the journal and showing "activating (auto-restart)" rather than failed.
  const server = readFileSync('src/server.ts', 'utf8');
  const code = /if \(err instanceof ConfigError\) \{[^}]*process\.exit\((\d+)\)/.exec(server)?.[1];
  t.ok(code, 'server.ts exits with its own code on a configuration error');
  t.equal(service.Restart, 'on-failure', 'other failures (Postgres down at start) are still restarted');
  t.ok((service.RestartPreventExitStatus ?? '').split(/\s+/).includes(code!), `RestartPreventExitStatus names ${code}`);
  // A migration recorded as unfinished or edited since it was applied: the operator settles it.
  const migration = /if \(err instanceof MigrationHistoryError\) \{[\s\S]*?process\.exit\((\d+)\)/.exec(server)?.[1];
  t.ok(migration, 'server.ts exits with its own code when the migration history needs the operator');
  t.ok((service.RestartPreventExitStatus ?? '').split(/\s+/).includes(migration!), `RestartPreventExitStatus names ${migration}`);
});

t.test("the README's upgrade without Docker runs git and npm as the user who owns the checkout, as the install does", async (t) => {
  // The install (README "Production start without Docker") clones as root, hands the checkout to
  // the service's user and builds as that user. An upgrade run as root then fails at its first
  // step: git refuses a repository another user owns ("detected dubious ownership"), and an
  // `npm ci` as root would leave files that user's next build cannot replace.
  const readme = readFileSync('README.md', 'utf8');
  const section = (title: string) => {
    const start = readme.indexOf(`### ${title}`);
    const end = readme.indexOf('\n#', start + 4);
    return readme.slice(start, end < 0 ? undefined : end);
  };
  const user = service.User!;
  const install = section('Production start without Docker (systemd)');
  t.match(install, new RegExp(`chown -R ${user}: \\.`), `the install hands the checkout to ${user}`);
  t.match(install, new RegExp(`sudo -u ${user} sh -c 'npm ci && npm run build'`), `and builds as ${user}`);
  const upgrade = section('Upgrading');
  const command = new RegExp(`sudo -u ${user} sh -c '([^']*)' && systemctl restart exoroute`).exec(upgrade);
  t.ok(command, `the upgrade without Docker runs as ${user}, then restarts the unit`);
  t.match(command?.[1] ?? '', /^git pull && npm ci && npm run build$/, 'git pull, npm ci and the build, all as that user');
});
