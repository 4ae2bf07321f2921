/**
 * deploy/Caddyfile run by a real Caddy on its internal CA and loopback ports, in front of the real
 * app: a Passthru callback and an admin call over HTTPS, plain HTTP redirected to HTTPS, and the
 * caller's address (not Caddy's, not a forged X-Forwarded-For) seen by EXOTEL_ALLOWED_CIDRS.
 */
import t, { type Test } from 'tap';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/store/embedded-postgres.js';
import { ADMIN_KEY, buildTestApp } from '../helper.js';

const caddy = await promisify(execFile)('caddy', ['version']).then(
  () => true,
  () => false,
);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  protocol?: string | null;
}

function https(port: number, ca: string, method: string, url: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', servername: 'localhost', port, ca, method, path: url, headers: { host: `localhost:${port}`, ...headers } },
      (res) => {
        let text = '';
        const protocol = (res.socket as import('node:tls').TLSSocket).getProtocol();
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: text, headers: res.headers, protocol }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * deploy/Caddyfile on a real Caddy, on its internal CA and free loopback ports, in front of
 * 127.0.0.1:`upstream`; stopped at teardown. Ports free a moment ago may be taken before Caddy binds
 * them (another test file, another program): then again, on others.
 */
async function startCaddy(t: Test, upstream: number): Promise<{ httpPort: number; httpsPort: number; ca: string; log: () => string }> {
  for (let attempt = 1; ; attempt++) {
    const started = await tryCaddy(t, upstream);
    if (started.serving || attempt === 5 || !/address already in use/.test(started.log())) {
      t.ok(started.serving, 'Caddy serves HTTPS', { log: started.log() });
      return started;
    }
  }
}

async function tryCaddy(t: Test, upstream: number) {
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const home = await mkdtemp(path.join(tmpdir(), 'exoroute-caddy-'));
  await chmod(home, 0o700);
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const proxy = spawn('caddy', ['run', '--config', 'deploy/Caddyfile', '--adapter', 'caddyfile'], {
    env: {
      PATH: process.env.PATH,
      HOME: home,
      XDG_DATA_HOME: path.join(home, 'data'),
      XDG_CONFIG_HOME: path.join(home, 'config'),
      EXOROUTE_DOMAIN: 'localhost',
      ACME_EMAIL: 'ops@example.com',
      EXOROUTE_UPSTREAM: `127.0.0.1:${upstream}`,
      // Caddy's own CA instead of Let's Encrypt, nothing installed in the system trust store, loopback ports.
      CADDY_GLOBAL_OPTIONS: [
        'local_certs',
        'skip_install_trust',
        'admin off',
        'default_bind 127.0.0.1',
        `http_port ${httpPort}`,
        `https_port ${httpsPort}`,
      ].join('\n\t'),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  proxy.stderr.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise((r) => proxy.once('exit', r));
  t.teardown(async () => {
    proxy.kill('SIGTERM');
    await exited;
  });
  const rootCert = path.join(home, 'data', 'caddy', 'pki', 'authorities', 'local', 'root.crt');
  let ca = '';
  let serving = false;
  for (let i = 0; i < 300 && !serving && proxy.exitCode === null; i++) {
    await sleep(100);
    if (!ca && existsSync(rootCert)) ca = readFileSync(rootCert, 'utf8');
    if (ca)
      serving = await https(httpsPort, ca, 'GET', '/healthz').then(
        () => true,
        () => false,
      );
  }
  return { httpPort, httpsPort, ca, serving, log: () => log };
}

t.test(
  'deploy/Caddyfile on a real Caddy: Passthru and admin over HTTPS, 80 → 443, the real client address',
  { skip: caddy ? false : 'caddy is not installed (Debian package caddy; .ci/run installs it)' },
  async (t) => {
    const { app } = await buildTestApp(t, { TRUST_PROXY: '127.0.0.1', EXOTEL_ALLOWED_CIDRS: '127.0.0.1/32' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const upstream = (app.server.address() as import('node:net').AddressInfo).port;
    const { httpPort, httpsPort, ca, log } = await startCaddy(t, upstream);
    const health = await https(httpsPort, ca, 'GET', '/healthz').catch(() => null);
    t.equal(health?.status, 200, 'exoroute answers through Caddy over HTTPS, with a certificate from the CA', { log: log() });
    t.match(health?.protocol ?? '', /^TLSv1\.[23]$/, 'TLS 1.2 or newer');

    const created = await https(
      httpsPort,
      ca,
      'POST',
      '/admin/flows',
      { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      JSON.stringify({
        slug: 'front',
        name: 'Front door',
        type: 'passthru',
        rules: [{ name: 'VIP line', when: { calledNumber: ['+918000000001'] }, then: { branch: 'A' } }],
        otherwise: { branch: 'B' },
        onError: { branch: 'A' },
      }),
    );
    t.equal(created.status, 201, 'an admin call through the proxy');
    for (let i = 0; i < 200 && !app.rules.current?.flows.has('front'); i++) await sleep(10);
    const vip = await https(httpsPort, ca, 'GET', '/exotel/passthru/front?CallSid=caddy-1&CallFrom=09812345678&CallTo=08000000001');
    t.equal(vip.status, 200, 'a Passthru callback over HTTPS: branch A');
    const other = await https(httpsPort, ca, 'GET', '/exotel/passthru/front?CallSid=caddy-2&CallFrom=09812345678&CallTo=08000000002');
    t.equal(other.status, 302, 'and branch B');

    const redirect = await new Promise<Answer>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port: httpPort, path: '/exotel/passthru/front?CallSid=x', headers: { host: 'localhost' } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, body: '', headers: res.headers });
      })
        .on('error', reject)
        .end();
    });
    t.equal(redirect.status, 308, 'plain HTTP is redirected');
    t.match(String(redirect.headers.location), /^https:\/\/localhost(:\d+)?\/exotel\/passthru\/front\?CallSid=x$/, 'to HTTPS, same path and query');

    // EXOTEL_ALLOWED_CIDRS checks the caller Caddy saw: a forged X-Forwarded-For is not believed.
    await app.close();
    const strict = await buildTestApp(t, { TRUST_PROXY: '127.0.0.1', EXOTEL_ALLOWED_CIDRS: '203.0.113.0/24' });
    await strict.app.listen({ port: upstream, host: '127.0.0.1' });
    const forged = await https(httpsPort, ca, 'GET', '/exotel/passthru/front?CallSid=caddy-3', { 'x-forwarded-for': '203.0.113.7' });
    t.equal(forged.status, 403, 'a caller claiming an allowed address in X-Forwarded-For is refused: Caddy passes its real address');
  },
);

t.test(
  "the README's start without Docker gives the Debian Caddy every variable deploy/Caddyfile needs",
  { skip: caddy ? false : 'caddy is not installed (Debian package caddy; .ci/run installs it)' },
  async (t) => {
    // It said only "put Caddy in front with deploy/Caddyfile (EXOROUTE_UPSTREAM=127.0.0.1:3000)":
    // EXOROUTE_DOMAIN and ACME_EMAIL, without which Caddy refuses the file, were named nowhere
    // there, nor how the caddy service gets them.
    const readme = readFileSync('README.md', 'utf8');
    const section = readme.slice(readme.indexOf('### Production start without Docker'), readme.indexOf('### Backup and restore'));
    const environment = [...section.matchAll(/^Environment=(.*)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
    t.ok(environment.length > 0, 'the section sets the caddy service its Environment= lines');
    const env = Object.fromEntries(environment.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    t.equal(env.EXOROUTE_UPSTREAM, '127.0.0.1:3000', 'the service on this machine');
    const adapted = await promisify(execFile)('caddy', ['adapt', '--config', 'deploy/Caddyfile', '--adapter', 'caddyfile'], {
      env: { PATH: process.env.PATH, HOME: tmpdir(), ...env },
    }).catch((err: { stderr: string }) => ({ stdout: '', stderr: err.stderr }));
    t.notMatch(adapted.stderr, /Error/, 'Caddy takes the Caddyfile with those variables');
    t.match(adapted.stdout, /"dial":"127\.0\.0\.1:3000"/);
    t.match(section, /\/etc\/caddy\/Caddyfile/, 'and the section says where the Caddyfile goes');
  },
);

t.test(
  'behind deploy/Caddyfile, /metrics is not served to the internet: Prometheus scrapes exoroute itself',
  { skip: caddy ? false : 'caddy is not installed (Debian package caddy; .ci/run installs it)' },
  async (t) => {
    // The HTTPS guide makes METRICS_TOKEN optional ("if you will scrape metrics"), and without it
    // /metrics is open: Caddy served every visitor the flows' and dial groups' names, the traffic
    // and the process' internals, where the README says to keep /metrics off the public listener.
    const { app } = await buildTestApp(t);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const upstream = (app.server.address() as import('node:net').AddressInfo).port;
    const proxy = await startCaddy(t, upstream);
    t.equal((await https(proxy.httpsPort, proxy.ca, 'GET', '/healthz')).status, 200, 'exoroute answers through Caddy');
    for (const url of ['/metrics', '/metrics?format=text', '/Metrics', '/%6Detrics', '/metrics/', '//metrics']) {
      const res = await https(proxy.httpsPort, proxy.ca, 'GET', url);
      t.equal(res.status, 404, `GET ${url} through Caddy: 404`);
      t.notOk(/exoroute_|process_cpu/.test(res.body), `GET ${url} through Caddy shows no metric`);
    }
    const direct = await fetch(`http://127.0.0.1:${upstream}/metrics`);
    t.equal(direct.status, 200, 'exoroute itself still serves /metrics, to the Prometheus beside it');
    t.match(await direct.text(), /exoroute_callback_duration_seconds/);
  },
);

t.test(
  "Caddy's log never holds the callback secret, also while exoroute cannot be reached (a restart, an upgrade)",
  { skip: caddy ? false : 'caddy is not installed (Debian package caddy; .ci/run installs it)' },
  async (t) => {
    // Caddy logs a request it cannot pass on (502) with its URI: the `token` of every callback URL
    // exoroute hands out (exotelUrls, a Connect answer's dial_passthru_event_url) went into
    // `docker compose logs caddy` or the journal during each restart of exoroute.
    const upstream = await freePort(); // nothing listens there: exoroute is down
    const proxy = await startCaddy(t, upstream);
    const secret = 'caddy-log-secret-0123456789';
    for (const url of [
      `/exotel/passthru/front?CallSid=down-1&token=${secret}`,
      `/exotel/dial-events?token=${secret}&group=sales&flow=agents&CallSid=down-2&DialWhomNumber=09812345678`,
      `/exotel/switch/front?CallSid=down-3&Token=${secret}`,
      // pasted wrong: the secret in the path
      `/exotel/passthru/front&token=${secret}`,
    ]) {
      const res = await https(proxy.httpsPort, proxy.ca, 'GET', url);
      t.equal(res.status, 502, `GET ${url.replace(secret, 'SECRET')}: 502 from Caddy`);
    }
    const basic = `Basic ${Buffer.from(`exotel:${secret}`).toString('base64')}`;
    t.equal((await https(proxy.httpsPort, proxy.ca, 'GET', '/exotel/passthru/front?CallSid=down-4', { authorization: basic })).status, 502);
    await sleep(200);
    t.match(proxy.log(), /"status":502/, 'Caddy logged the requests it could not pass on');
    t.notOk(proxy.log().includes(secret), 'without the secret');
    t.notOk(proxy.log().includes(basic.slice(6)), 'nor its Basic credentials');
  },
);
