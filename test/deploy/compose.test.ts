/**
 * docker-compose.yml is valid for every profile (checked by a real `docker-compose config`), and
 * its profiles hold together: the https profile's Caddy is the one address TRUST_PROXY believes,
 * exoroute is not published beyond the host's loopback, and the monitoring profile mounts the
 * rules and dashboard kept in deploy/.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';

const execFileAsync = promisify(execFile);
const compose = await execFileAsync('docker-compose', ['version']).then(
  () => true,
  () => false,
);
const skip = compose ? false : 'docker-compose is not installed (Debian package docker-compose; .ci/run installs it)';

interface Service {
  ports?: Array<string | { published: string | number; target: number; host_ip?: string }>;
  environment?: Record<string, string>;
  volumes?: Array<string | { source: string; target: string }>;
  networks?: Record<string, { ipv4_address?: string } | null>;
  profiles?: string[];
  restart?: string;
  logging?: { driver?: string; options?: Record<string, string> };
}

const emptyEnv = path.join(await mkdtemp(path.join(tmpdir(), 'exoroute-compose-')), 'empty.env');
await writeFile(emptyEnv, '');
t.teardown(() => rm(path.dirname(emptyEnv), { recursive: true, force: true }));

/** `docker-compose config` with the file's own defaults: no .env of yours, no variables of this shell. */
async function config(profiles: string[], env: Record<string, string> = {}): Promise<{ services: Record<string, Service> }> {
  const args = ['--env-file', emptyEnv, ...profiles.flatMap((p) => ['--profile', p]), 'config'];
  const { stdout } = await execFileAsync('docker-compose', args, { env: { PATH: process.env.PATH, ...env } });
  return parse(stdout) as { services: Record<string, Service> };
}

const mounts = (s: Service) => (s.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`)).join('\n');

t.test('docker-compose config passes for every profile, each starting the services it should', { skip }, async (t) => {
  for (const [profiles, expected] of [
    [[], ['exoroute', 'postgres']],
    [['https'], ['caddy', 'exoroute', 'postgres']],
    [['monitoring'], ['exoroute', 'grafana', 'postgres', 'prometheus']],
    [
      ['https', 'monitoring'],
      ['caddy', 'exoroute', 'grafana', 'postgres', 'prometheus'],
    ],
  ] as const) {
    const { services } = await config([...profiles]);
    // docker-compose 1.x lists every service; the ones a profile starts are those without
    // `profiles` or naming one of the given.
    const started = Object.entries(services).filter(([, s]) => !s.profiles || s.profiles.some((p) => (profiles as readonly string[]).includes(p)));
    t.same(started.map(([name]) => name).sort(), expected, `profiles: ${profiles.join(', ') || '(none)'}`);
  }
});

t.test("every service's log is bounded, so that a restart loop on exit 2 or a day of callbacks cannot fill the disk", { skip }, async (t) => {
  // Docker's json-file driver keeps a container's output for ever by default: exoroute logs a line
  // per callback, and `restart: unless-stopped` (which cannot exclude exit 2, a configuration error)
  // starts it again and again, each start logging its error.
  const { services } = await config(['https', 'monitoring']);
  for (const [name, service] of Object.entries(services)) {
    t.equal(service.restart, 'unless-stopped', `${name}: restarted after a crash or a reboot`);
    t.equal(service.logging?.driver, 'json-file', `${name}: json-file, as docker compose logs reads`);
    t.match(service.logging?.options, { 'max-size': /^\d+m$/, 'max-file': /^\d+$/ }, `${name}: rotated, with a bounded number of files`);
  }
});

t.test('https: Caddy is the address TRUST_PROXY believes; exoroute is published on loopback only; the Caddyfile is mounted', { skip }, async (t) => {
  const { services } = await config(['https', 'monitoring']);
  const caddy = services.caddy!;
  const exoroute = services.exoroute!;
  t.equal(caddy.networks?.default?.ipv4_address, exoroute.environment!.TRUST_PROXY, "TRUST_PROXY is Caddy's fixed address");
  t.match(JSON.stringify(caddy.ports), /"?80"?.*"?443"?/, 'Caddy publishes 80 and 443');
  t.match(JSON.stringify(exoroute.ports), /127\.0\.0\.1/, "exoroute is published on the host's loopback only");
  t.match(mounts(caddy), /deploy\/Caddyfile:\/etc\/caddy\/Caddyfile/);
  t.match(mounts(services.prometheus!), /deploy\/prometheus\/alerts\.yml:\/etc\/prometheus\/alerts\.yml/);
  t.match(mounts(services.grafana!), /deploy\/grafana\/dashboards:\/etc\/grafana\/dashboards/);
});

t.test('the docs read a file out of a container with `exec -T`: a TTY would end the value with a carriage return', async (t) => {
  // `docker compose exec` allocates a TTY when stdin is a terminal, and a TTY turns "\n" into
  // "\r\n": `KEY=$(docker compose exec exoroute cat /data/admin-api-key)` left KEY ending in "\r",
  // which curl sends inside the Authorization header, and Node refuses that request with 400.
  const { readFile } = await import('node:fs/promises');
  for (const file of ['README.md', 'docs/contract.md', 'docs/exotel.md']) {
    const text = await readFile(file, 'utf8');
    const captured = [...text.matchAll(/\$\((docker[ -]compose\s+exec\b[^)]*)\)/g)].map((m) => m[1]!);
    for (const command of captured) t.match(command, /\bexec\s+(?:-\S+\s+)*-T\b/, `${file}: $(${command})`);
    if (file === 'README.md') t.ok(captured.length > 0, 'the README reads the admin key out of the container');
  }
});

t.test("the image's HEALTHCHECK, run as the image runs it, asks the port the service listens on (PORT)", async (t) => {
  // It fetched 127.0.0.1:3000 whatever PORT said: `docker run -e PORT=8080` made a healthy
  // container "unhealthy", and an orchestrator acting on that restarted it for ever.
  const { readFile } = await import('node:fs/promises');
  const { buildTestApp } = await import('../helper.js');
  const dockerfile = await readFile('Dockerfile', 'utf8');
  const js = /^HEALTHCHECK .* CMD node -e "(.*)"$/m.exec(dockerfile)?.[1];
  t.ok(js, 'the HEALTHCHECK runs node -e "…"');
  const { app } = await buildTestApp(t);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as import('node:net').AddressInfo).port;
  const run = (env: Record<string, string>) =>
    execFileAsync('node', ['-e', js!], { env: { PATH: process.env.PATH, ...env }, timeout: 10_000 }).then(
      () => 0,
      (err: { code: number }) => err.code,
    );
  t.equal(await run({ PORT: String(port) }), 0, `healthy with PORT=${port}`);
});

t.test('any POSTGRES_PASSWORD is the one Postgres gets and exoroute sends: nothing to encode', { skip }, async (t) => {
  // It went into DATABASE_URL as it stands: with a `/`, `#` or `?` (openssl rand -base64 makes
  // them) exoroute refused its own DATABASE_URL and did not start, and the percent-encoding
  // .env.example advised then gave Postgres `a%2Fb` and exoroute `a/b`: password authentication failed.
  const read = [
    "import pg from 'pg';",
    "import { loadConfig } from './src/config.ts';",
    'const c = new pg.Client({ connectionString: loadConfig().DATABASE_URL });',
    'console.log(JSON.stringify({ user: c.user, password: c.password, host: c.host, port: c.port, database: c.database }));',
  ].join('\n');
  for (const password of ['p/w?x@y#z:1', 'a%2Fb', 'fe0a9c3d71b2']) {
    const { services } = await config([], { POSTGRES_PASSWORD: password, EXOTEL_CALLBACK_SECRET: 'compose-test-secret-0123' });
    t.equal(services.postgres!.environment!.POSTGRES_PASSWORD, password, `${password}: Postgres' password as it stands`);
    // As the container reads it: exoroute's configuration check, then node-postgres' own reading of
    // DATABASE_URL and the PG* variables, in the service's environment alone.
    const seen = await execFileAsync(process.execPath, ['--import=tsx', '--input-type=module', '-e', read], {
      env: { PATH: process.env.PATH, ...services.exoroute!.environment },
    }).then(
      ({ stdout }) => JSON.parse(stdout) as Record<string, unknown>,
      (err: { stderr: string }) => ({ error: /^\s*(DATABASE_URL=.*)$/m.exec(err.stderr)?.[1] ?? err.stderr }),
    );
    t.same(seen, { user: 'exoroute', password, host: 'postgres', port: 5432, database: 'exoroute' }, `${password}: the password exoroute sends`);
  }
});

t.test('every variable docker-compose.yml reads from .env is documented in the README', async (t) => {
  // PROMETHEUS_RETENTION (how long the monitoring profile keeps metrics, 30d) was read and named nowhere.
  const { readFile } = await import('node:fs/promises');
  const file = await readFile(new URL('../../docker-compose.yml', import.meta.url), 'utf8');
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const names = new Set([...file.matchAll(/(?<!\$)\$\{(\w+)/g)].map((m) => m[1]!));
  t.ok(names.size > 10);
  for (const name of names) t.ok(readme.includes(`\`${name}`), `${name} is in the README`);
});

t.test('.env.example names no domain of its own: a copy left unedited stops Caddy rather than hand Exotel URLs nobody serves', async (t) => {
  // It preset EXOROUTE_DOMAIN=exoroute.example.com: `cp .env.example .env` and `up` without editing
  // it gave PUBLIC_URL https://exoroute.example.com, and every Connect answer's dial events URL
  // named it, with no warning (it is https and public).
  const { readFile } = await import('node:fs/promises');
  const env = Object.fromEntries(
    (await readFile('.env.example', 'utf8'))
      .split('\n')
      .filter((line) => /^\w+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
  t.equal(env.EXOROUTE_DOMAIN, '', 'EXOROUTE_DOMAIN is to be filled in');
  t.equal(env.ACME_EMAIL, '', 'ACME_EMAIL is to be filled in');
  t.notOk(env.PUBLIC_URL, 'PUBLIC_URL is not preset');
});
