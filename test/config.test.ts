import t from 'tap';
import { ConfigError, hostAndPort, loadConfig, startupWarnings } from '../src/config.js';
import { ADMIN_DEAD_CONNECTION_GRACE_MS } from '../src/store/database.js';

t.test('defaults follow docs/contract.md §5 and the README', async (t) => {
  const c = loadConfig({});
  t.match(c, { PORT: 3000, HOST: '127.0.0.1', DATA_DIR: '.data', DEFAULT_COUNTRY: 'IN', DECISION_BUDGET_MS: 1500, CDR_RETENTION_DAYS: 0, LOG_LEVEL: 'info' });
  t.equal(c.PUBLIC_URL, 'http://127.0.0.1:3000');
  t.same(c.EXOTEL_ALLOWED_CIDRS, []);
  t.equal(c.DATABASE_URL, undefined);
});

t.test('values are converted and PUBLIC_URL loses its trailing slash', async (t) => {
  const c = loadConfig({
    PORT: '8080',
    DECISION_BUDGET_MS: '900',
    PUBLIC_URL: 'https://x.example/',
    EXOTEL_ALLOWED_CIDRS: '10.0.0.0/8, 127.0.0.1',
    DEFAULT_COUNTRY: 'US',
  });
  t.equal(c.PORT, 8080);
  t.equal(c.DECISION_BUDGET_MS, 900);
  t.equal(c.PUBLIC_URL, 'https://x.example');
  t.same(c.EXOTEL_ALLOWED_CIDRS, ['10.0.0.0/8', '127.0.0.1']);
});

t.test('every bad variable is named with its value and the problem', async (t) => {
  try {
    loadConfig({ PORT: 'eighty', LOG_LEVEL: 'loud', DEFAULT_COUNTRY: 'ZZ', EXOTEL_ALLOWED_CIDRS: '10.0.0.0/99', DATABASE_URL: 'mysql://x' });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    const msg = (err as Error).message;
    for (const name of ['PORT="eighty"', 'LOG_LEVEL="loud"', 'DATABASE_URL="mysql://x"']) t.match(msg, name);
  }
  t.throws(() => loadConfig({ DEFAULT_COUNTRY: 'ZZ' }), /DEFAULT_COUNTRY="ZZ"/);
  t.throws(() => loadConfig({ EXOTEL_ALLOWED_CIDRS: '10.0.0.0/99' }), /EXOTEL_ALLOWED_CIDRS: "10.0.0.0\/99"/);
  t.throws(() => loadConfig({ ADMIN_API_KEY: 'short' }), /ADMIN_API_KEY/);
});

t.test('AUDIT_RETENTION_DAYS: 0 (keep all, the default) to 36500', async (t) => {
  t.equal(loadConfig({}).AUDIT_RETENTION_DAYS, 0);
  t.equal(loadConfig({ AUDIT_RETENTION_DAYS: '365' }).AUDIT_RETENTION_DAYS, 365);
  for (const value of ['36501', '-1', '1.5']) {
    t.throws(() => loadConfig({ AUDIT_RETENTION_DAYS: value }), /AUDIT_RETENTION_DAYS=/, value);
  }
});

t.test('CDR_RETENTION_DAYS: 0 to 36500; a larger one (meant as "forever") is refused at start, not a retention job failing every hour', async (t) => {
  // Past ~2.4 million days the cut-off is before 4713 BC, out of Postgres' range: every prune
  // failed, and with it the pruning of dial state and agents' offers that runs whatever the setting.
  for (const value of ['36501', '9999999', '99999999999'])
    t.throws(() => loadConfig({ CDR_RETENTION_DAYS: value }), /CDR_RETENTION_DAYS="\d+": must be a whole number from 0 to 36500/);
  t.equal(loadConfig({ CDR_RETENTION_DAYS: '36500' }).CDR_RETENTION_DAYS, 36500);
  t.equal(loadConfig({}).CDR_RETENTION_DAYS, 0);
});

t.test('DECISION_BUDGET_MS: 250 to 30000, so that the 100 ms kept for the CDR spool leave time to decide and commit', async (t) => {
  // At 100 ms or less, every CDR's commit deadline (budget - 100 ms - elapsed) was <= 0: every CDR
  // went to the spool with a healthy Postgres, and /readyz reported it.
  for (const value of ['50', '100', '249'])
    t.throws(() => loadConfig({ DECISION_BUDGET_MS: value }), /DECISION_BUDGET_MS="\d+": must be a whole number from 250 to 30000/);
  t.equal(loadConfig({ DECISION_BUDGET_MS: '250' }).DECISION_BUDGET_MS, 250);
  t.throws(() => loadConfig({ DECISION_BUDGET_MS: '30001' }), /DECISION_BUDGET_MS/);
});

t.test('the smallest DECISION_BUDGET_MS with a healthy Postgres: CDRs are committed, not spooled; /readyz stays ready', async (t) => {
  const { buildTestApp } = await import('./helper.js');
  const ctx = await buildTestApp(t, { DECISION_BUDGET_MS: '250' });
  const f = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'inbound', name: 'I', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } },
  });
  t.equal(f.statusCode, 201);
  for (let i = 0; i < 200 && !ctx.app.rules.current?.flows.has('inbound'); i++) await new Promise((r) => setTimeout(r, 10));
  // The deadline each CDR is given, not whether this machine commits within it: a test file run
  // beside the others on a loaded CI machine may take longer than 150 ms to commit, and then the
  // spool is right to take the CDR.
  const deadlines: number[] = [];
  const write = ctx.app.cdrWriter.write.bind(ctx.app.cdrWriter);
  ctx.app.cdrWriter.write = (record, deadlineMs) => {
    deadlines.push(deadlineMs ?? Infinity);
    return write(record, deadlineMs);
  };
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    t.equal((await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallSid=mb${i}` })).statusCode, 200);
    const took = performance.now() - t0;
    // 250 ms less the spool's reserve (100) less what the callback took before it wrote the CDR.
    const d = deadlines[i] ?? Number.NaN;
    t.ok(d <= 150 && d >= 150 - took, `the CDR's commit deadline (${d.toFixed(1)} ms) is what the budget leaves (the callback took ${took.toFixed(1)} ms)`);
  }
  if (ctx.app.cdrWriter.stats.spooled === 0) {
    t.equal(await ctx.db.prisma.cdr.count({ where: { callSid: { startsWith: 'mb' } } }), 5, 'all five committed');
    t.equal((await ctx.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  } else t.comment(`${ctx.app.cdrWriter.stats.spooled} CDR(s) spooled: this machine took more than the deadline to commit`);
});

t.test('TRUST_PROXY: true/false, or proxy addresses, CIDR ranges and range names; no hop counts', async (t) => {
  t.equal(loadConfig({}).TRUST_PROXY, false);
  t.equal(loadConfig({ TRUST_PROXY: 'false' }).TRUST_PROXY, false);
  t.equal(loadConfig({ TRUST_PROXY: 'true' }).TRUST_PROXY, true);
  t.same(loadConfig({ TRUST_PROXY: '10.0.0.5, 10.1.0.0/16,loopback' }).TRUST_PROXY, ['10.0.0.5', '10.1.0.0/16', 'loopback']);
  t.throws(() => loadConfig({ TRUST_PROXY: '1' }), /TRUST_PROXY: "1" is not/);
  t.throws(() => loadConfig({ TRUST_PROXY: '10.0.0.0/40' }), /TRUST_PROXY: "10.0.0.0\/40"/);
  t.throws(() => loadConfig({ METRICS_TOKEN: 'short' }), /METRICS_TOKEN/);
});

t.test('HEAP_GROWTH_PERCENT: 25 by default, 0 leaves V8 its own heuristics, no negatives', async (t) => {
  t.equal(loadConfig({}).HEAP_GROWTH_PERCENT, 25);
  t.equal(loadConfig({ HEAP_GROWTH_PERCENT: '0' }).HEAP_GROWTH_PERCENT, 0);
  t.throws(() => loadConfig({ HEAP_GROWTH_PERCENT: '-5' }), /HEAP_GROWTH_PERCENT/);
  t.throws(() => loadConfig({ HEAP_GROWTH_PERCENT: 'lots' }), /HEAP_GROWTH_PERCENT/);
});

t.test('behind a trusted balancer, EXOTEL_ALLOWED_CIDRS checks the forwarded client address', async (t) => {
  const { buildTestApp } = await import('./helper.js');
  // A flow that does not exist: 404 once the source is allowed, 403 when it is not.
  const call = (app: import('fastify').FastifyInstance, remoteAddress: string) =>
    app.inject({ method: 'GET', url: '/exotel/passthru/none?CallSid=c1', remoteAddress, headers: { 'x-forwarded-for': '203.0.113.9' } });
  const cidrs = { EXOTEL_ALLOWED_CIDRS: '203.0.113.0/24' };

  const direct = await buildTestApp(t, cidrs);
  t.equal((await call(direct.app, '10.0.0.5')).statusCode, 403, 'without TRUST_PROXY the balancer address is checked');

  const proxied = await buildTestApp(t, { ...cidrs, TRUST_PROXY: '10.0.0.0/24' });
  t.equal((await call(proxied.app, '10.0.0.5')).statusCode, 404, 'forwarded by the trusted balancer: the client address is checked');
  t.equal((await call(proxied.app, '198.51.100.7')).statusCode, 403, 'X-Forwarded-For from anyone else is not believed');
});

t.test('admin API limits: defaults, conversion and bounds', async (t) => {
  t.match(loadConfig({}), { ADMIN_RATE_LIMIT_PER_MINUTE: 600, ADMIN_AUTH_FAILURES_PER_MINUTE: 20, ADMIN_BODY_LIMIT_BYTES: 1048576 });
  t.match(loadConfig({ ADMIN_RATE_LIMIT_PER_MINUTE: '60', ADMIN_AUTH_FAILURES_PER_MINUTE: '5', ADMIN_BODY_LIMIT_BYTES: '65536' }), {
    ADMIN_RATE_LIMIT_PER_MINUTE: 60,
    ADMIN_AUTH_FAILURES_PER_MINUTE: 5,
    ADMIN_BODY_LIMIT_BYTES: 65536,
  });
  for (const [name, value] of [
    ['ADMIN_RATE_LIMIT_PER_MINUTE', '0'],
    ['ADMIN_RATE_LIMIT_PER_MINUTE', 'lots'],
    ['ADMIN_AUTH_FAILURES_PER_MINUTE', '0'],
    ['ADMIN_AUTH_FAILURES_PER_MINUTE', '-1'],
    ['ADMIN_BODY_LIMIT_BYTES', '100'],
    ['ADMIN_BODY_LIMIT_BYTES', '1MB'],
    ['ADMIN_BODY_LIMIT_BYTES', String(64 * 1024 * 1024)],
  ] as const) {
    t.throws(() => loadConfig({ [name]: value }), new RegExp(`${name}="?${value}"?:`), `${name}=${value}`);
  }
});

t.test('EXOTEL_CALLBACK_SECRET: at least 16 characters, and a bad one is never echoed', async (t) => {
  t.equal(loadConfig({ EXOTEL_CALLBACK_SECRET: 'sixteen-chars-ok' }).EXOTEL_CALLBACK_SECRET, 'sixteen-chars-ok');
  for (const secret of ['fifteen-chars-x', 'short']) {
    try {
      loadConfig({ EXOTEL_CALLBACK_SECRET: secret });
      t.fail(`${secret} should be refused`);
    } catch (err) {
      t.ok(err instanceof ConfigError);
      const msg = (err as Error).message;
      t.match(msg, `EXOTEL_CALLBACK_SECRET=(${secret.length} characters, not shown): must be 16 to 200 characters long`);
      t.notOk(msg.includes(secret), 'the value is not in the message');
    }
  }
  t.throws(() => loadConfig({ METRICS_TOKEN: 'tok-short0' }), /METRICS_TOKEN=\(10 characters, not shown\)/);
  t.throws(() => loadConfig({ METRICS_TOKEN: 'x' }), /METRICS_TOKEN=\(1 character, not shown\)/, 'one character, not "1 characters"');
});

t.test('EXOTEL_CALLBACK_SECRET_PREVIOUS: 16 to 200 characters, not the current one, and only beside it; never echoed', async (t) => {
  const current = 'the-new-callback-secret';
  const previous = 'the-old-callback-secret';
  t.equal(loadConfig({ EXOTEL_CALLBACK_SECRET: current, EXOTEL_CALLBACK_SECRET_PREVIOUS: previous }).EXOTEL_CALLBACK_SECRET_PREVIOUS, previous);
  const problem = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (err) {
      t.ok(err instanceof ConfigError);
      return (err as Error).message;
    }
    return t.fail('should be refused');
  };
  const short = problem({ EXOTEL_CALLBACK_SECRET: current, EXOTEL_CALLBACK_SECRET_PREVIOUS: 'old-short' });
  t.match(short, 'EXOTEL_CALLBACK_SECRET_PREVIOUS=(9 characters, not shown): must be 16 to 200 characters long');
  const same = problem({ EXOTEL_CALLBACK_SECRET: current, EXOTEL_CALLBACK_SECRET_PREVIOUS: current });
  t.match(same, `EXOTEL_CALLBACK_SECRET_PREVIOUS=(${current.length} characters, not shown): is the same as EXOTEL_CALLBACK_SECRET`);
  const alone = problem({ EXOTEL_CALLBACK_SECRET_PREVIOUS: previous });
  t.match(alone, /EXOTEL_CALLBACK_SECRET_PREVIOUS=\(23 characters, not shown\): .*EXOTEL_CALLBACK_SECRET, the new one, is unset/);
  for (const msg of [short, same, alone]) t.notOk(/old-short|the-new-callback|the-old-callback/.test(String(msg)), 'no value shown');
});

t.test('EXOTEL_REQUIRE_CALLBACK_SECRET (set by the deployment files): no secret stops the start unless callbacks are opened', async (t) => {
  t.throws(
    () => loadConfig({ EXOTEL_REQUIRE_CALLBACK_SECRET: 'true' }),
    /EXOTEL_CALLBACK_SECRET is unset, and this deployment requires it \(EXOTEL_REQUIRE_CALLBACK_SECRET=true\).*EXOTEL_CALLBACKS_OPEN=true/,
  );
  t.equal(
    loadConfig({ EXOTEL_REQUIRE_CALLBACK_SECRET: 'true', EXOTEL_CALLBACK_SECRET: 'a-long-enough-secret' }).EXOTEL_CALLBACK_SECRET,
    'a-long-enough-secret',
  );
  const open = loadConfig({ EXOTEL_REQUIRE_CALLBACK_SECRET: 'true', EXOTEL_CALLBACKS_OPEN: 'true' });
  t.equal(open.EXOTEL_CALLBACKS_OPEN, true, 'an open service is a choice');
  t.equal(open.EXOTEL_CALLBACK_SECRET, undefined);
  const laptop = loadConfig({});
  t.match(laptop, { EXOTEL_REQUIRE_CALLBACK_SECRET: false, EXOTEL_CALLBACKS_OPEN: false }, 'npm start without the flag: open, with the warning at start');
  t.throws(
    () => loadConfig({ EXOTEL_CALLBACKS_OPEN: 'true', EXOTEL_CALLBACK_SECRET: 'a-long-enough-secret' }),
    /EXOTEL_CALLBACKS_OPEN=true contradicts EXOTEL_CALLBACK_SECRET/,
  );
  t.throws(() => loadConfig({ EXOTEL_CALLBACKS_OPEN: 'yes' }), /EXOTEL_CALLBACKS_OPEN="yes"/);
});

t.test('the deployment files ask for the secret: Dockerfile and docker-compose.yml set EXOTEL_REQUIRE_CALLBACK_SECRET=true', async (t) => {
  const { readFile } = await import('node:fs/promises');
  const { parse } = await import('yaml');
  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8');
  const env = /^ENV (.*)$/m.exec(dockerfile.split('\nFROM ').at(-1)!)?.[1] ?? '';
  t.match(env, /\bEXOTEL_REQUIRE_CALLBACK_SECRET=true\b/, 'the runtime image');
  const compose = parse(await readFile(new URL('../docker-compose.yml', import.meta.url), 'utf8')) as {
    services: Record<string, { environment?: Record<string, string> }>;
  };
  const environment = compose.services.exoroute!.environment!;
  t.equal(environment.EXOTEL_REQUIRE_CALLBACK_SECRET, 'true');
  // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's own interpolation syntax, not a JS template
  t.equal(environment.EXOTEL_CALLBACKS_OPEN, '${EXOTEL_CALLBACKS_OPEN:-}', 'opening callbacks is up to the operator');
  // What the container would load with nothing set in .env: the start stops, naming the fix.
  const unset = Object.fromEntries(Object.entries(environment).map(([k, v]) => [k, /^\$\{\w+:-\}$/.test(v) ? '' : v]));
  t.throws(() => loadConfig({ ...unset, PUBLIC_URL: 'https://exo.example.com' }), /EXOTEL_CALLBACK_SECRET is unset/);
});

t.test('a warning at start when PUBLIC_URL is not https, points at a loopback or private address, or callbacks are open', async (t) => {
  const warnings = (env: Record<string, string>) => startupWarnings(loadConfig({ EXOTEL_CALLBACK_SECRET: 'a-callback-secret-16', ...env }));
  t.same(warnings({ PUBLIC_URL: 'https://exoroute.example.com' }), [], 'a public https URL with a secret: nothing to say');
  t.same(warnings({ PUBLIC_URL: 'https://203.0.113.10:8443' }), [], 'a public address is fine');
  t.match(warnings({ PUBLIC_URL: 'http://exoroute.example.com' }), [/PUBLIC_URL=http:\/\/exoroute.example.com is not https:\/\//]);
  t.match(warnings({}), [/is not https/, /PUBLIC_URL=http:\/\/127.0.0.1:3000 points at a loopback or private address/], 'the default names both problems');
  for (const host of [
    'localhost',
    'api.localhost',
    '127.0.0.1',
    '10.1.2.3',
    '172.20.0.5',
    '192.168.1.10',
    '169.254.1.1',
    '100.64.0.1',
    '0.0.0.0',
    '[::1]',
    '[fd00::5]',
    '[fe80::1]',
    '[::ffff:10.0.0.1]',
  ]) {
    t.match(warnings({ PUBLIC_URL: `https://${host}` }), [/points at a loopback or private address/], host);
  }
  for (const host of ['172.32.0.1', '11.0.0.1', '[2001:db8::1]', 'localhost.example.com'])
    t.same(warnings({ PUBLIC_URL: `https://${host}` }), [], `${host} is not private`);
  t.match(startupWarnings(loadConfig({ PUBLIC_URL: 'https://exoroute.example.com' })), [/EXOTEL_CALLBACK_SECRET is unset: callback URLs are open/]);
  t.match(startupWarnings(loadConfig({ PUBLIC_URL: 'https://exoroute.example.com', EXOTEL_CALLBACKS_OPEN: 'true' })), [
    /callback URLs are open to anyone \(EXOTEL_CALLBACKS_OPEN=true\)/,
  ]);
  t.notMatch(JSON.stringify(warnings({ PUBLIC_URL: 'http://x.example' })), /a-callback-secret-16/, 'never the secret');
  t.same(warnings({ PUBLIC_URL: 'https://exoroute.example.com', DECISION_BUDGET_MS: '5000' }), [], "a budget within Connect's 5 s");
  t.match(warnings({ PUBLIC_URL: 'https://exoroute.example.com', DECISION_BUDGET_MS: '8000' }), [
    /DECISION_BUDGET_MS=8000 is longer than the 5 s Exotel waits for a Connect answer/,
  ]);
});

t.test('PUBLIC_URL and DATABASE_URL must be URLs that parse: a bad one stops the start naming the variable, not a stack trace', async (t) => {
  // Each of these passed the prefix check; start-up then died on `new URL` (PUBLIC_URL, after the
  // database was prepared) or in pg (DATABASE_URL) with "TypeError: Invalid URL" and a stack trace.
  for (const url of ['https://exoroute.example.com:99999', 'https://[::1', 'https://exoroute.example.com:44x']) {
    t.throws(() => loadConfig({ PUBLIC_URL: url }), /PUBLIC_URL=.*: must be an http:\/\/ or https:\/\/ URL/, url);
  }
  // A query or fragment would end up in the middle of every URL exoroute hands out (PUBLIC_URL + path).
  t.throws(() => loadConfig({ PUBLIC_URL: 'https://exoroute.example.com/?x=1' }), /PUBLIC_URL=.*no query string or fragment/);
  t.throws(() => loadConfig({ PUBLIC_URL: 'https://exoroute.example.com#top' }), /PUBLIC_URL=.*no query string or fragment/);
  // A password in PUBLIC_URL would be logged at start and shown to viewer keys in exotelUrls.
  try {
    loadConfig({ PUBLIC_URL: 'https://exotel:callback-secret-123@exoroute.example.com' });
    t.fail('a password in PUBLIC_URL should be refused');
  } catch (err) {
    const msg = (err as Error).message;
    t.match(msg, /PUBLIC_URL=.*EXOTEL_CALLBACK_SECRET/);
    t.notOk(msg.includes('callback-secret-123'), 'the password is not in the message');
  }
  t.equal(loadConfig({ PUBLIC_URL: 'https://exoroute.example.com/exo/' }).PUBLIC_URL, 'https://exoroute.example.com/exo', 'a path prefix is fine');

  // A password with "/", "#" or "?" not percent-encoded (openssl rand -base64 makes such) broke the URL.
  for (const url of ['postgresql://exoroute:ab/cd@postgres:5432/exoroute', 'postgresql://exoroute:ab#cd@postgres:5432/exoroute']) {
    try {
      loadConfig({ DATABASE_URL: url });
      t.fail(`${url} should be refused`);
    } catch (err) {
      t.ok(err instanceof ConfigError);
      const msg = (err as Error).message;
      t.match(msg, /DATABASE_URL=.*percent-encode/, url);
      t.notOk(msg.includes('cd@'), 'the password is not in the message');
    }
  }
  for (const url of [
    'postgresql://exoroute:exoroute@postgres:5432/exoroute',
    'postgres://u:p%2Fq@localhost/db?host=/var/run/postgresql',
    'postgresql://u:p@/db?host=/var/run/postgresql',
    'postgresql://u:p w@localhost/db',
  ])
    t.equal(loadConfig({ DATABASE_URL: url }).DATABASE_URL, url, `${url} is one pg takes`);
});

t.test('a DATABASE_URL that is no URL (libpq keyword form, a slash missing) is refused without showing its password', async (t) => {
  // The URL pattern refuses these before pg is asked, and the message showed the value whole.
  for (const [value, shown] of [
    ['host=db port=5432 user=exoroute password=Pw0rd-hidden dbname=exoroute', 'password=***'],
    ["host=db user=exoroute password='Pw0rd hidden' dbname=exoroute", 'password=***'],
    ['postgresql:/exoroute:Pw0rd-hidden@db:5432/exoroute', 'postgresql:/exoroute:***@db'],
  ] as const) {
    try {
      loadConfig({ DATABASE_URL: value });
      t.fail(`${value} should be refused`);
    } catch (err) {
      t.ok(err instanceof ConfigError);
      const msg = (err as Error).message;
      t.match(msg, /DATABASE_URL=.*: must be a Postgres URL/, value);
      t.match(msg, shown, 'the value is shown, its password masked');
      t.notMatch(msg, 'Pw0rd', 'the password is not in the message');
    }
  }
});

t.test('an IPv6 HOST (::, ::1) makes a default PUBLIC_URL that is a URL, so the start warns about it instead of dying on new URL()', async (t) => {
  for (const [host, url] of [
    ['::', 'http://[::]:3000'],
    ['::1', 'http://[::1]:3000'],
    ['0.0.0.0', 'http://0.0.0.0:3000'],
  ] as const) {
    const c = loadConfig({ HOST: host });
    t.equal(c.HOST, host, 'listens where it was told');
    t.equal(c.PUBLIC_URL, url);
    t.match(startupWarnings(c), [/is not https/, /points at a loopback or private address/], host);
  }
});

t.test('hostAndPort, which the default PUBLIC_URL, the listen errors and the docs line share, brackets an IPv6 address only', async (t) => {
  t.equal(hostAndPort('::', 3000), '[::]:3000');
  t.equal(hostAndPort('fe80::1', 8080), '[fe80::1]:8080');
  t.equal(hostAndPort('127.0.0.1', 3000), '127.0.0.1:3000');
  t.equal(hostAndPort('exoroute.internal', 443), 'exoroute.internal:443');
});

t.test('a whole-number variable takes decimal digits only: "1.5", "1e3" or "0x10" stop the start, never truncated', async (t) => {
  // TypeBox's conversion read "1e3" as 1 and "1.5" as 1: CDR_RETENTION_DAYS=1e3 (meant: 1000 days)
  // deleted every CDR older than a day.
  for (const [name, value] of [
    ['CDR_RETENTION_DAYS', '1e3'],
    ['CDR_RETENTION_DAYS', '1.5'],
    ['PORT', '0x10'],
    ['PORT', '3000.5'],
    ['DECISION_BUDGET_MS', '1.5e3'],
    ['CDR_RETENTION_DAYS', 'Infinity'],
  ] as const) {
    t.throws(
      () => loadConfig({ [name]: value }),
      new RegExp(`${name}=${JSON.stringify(value).replace(/[.+]/g, '\\$&')}: must be a whole number`),
      `${name}=${value}`,
    );
  }
  t.match(loadConfig({ PORT: ' 8080 ', CDR_RETENTION_DAYS: '007', ADMIN_RATE_LIMIT_PER_MINUTE: '+60' }), {
    PORT: 8080,
    CDR_RETENTION_DAYS: 7,
    ADMIN_RATE_LIMIT_PER_MINUTE: 60,
  });
});

t.test('HOST must be an address or host name: one with a port, scheme, brackets or spaces stops the start naming HOST', async (t) => {
  // Each passed the check; the start then prepared the database and died in startupWarnings on
  // `new URL("http://[localhost:3000]:3000")` with a stack trace and exit code 1 (systemd restarts that).
  for (const host of ['localhost:3000', '0.0.0.0:3000', 'http://0.0.0.0', '[::1]', ' ', '0.0.0.0 ', 'exo host', 'fe80::1%eth0']) {
    t.throws(() => loadConfig({ HOST: host }), new RegExp(`HOST=${JSON.stringify(host).replace(/[.[\]]/g, '\\$&')}: `), JSON.stringify(host));
  }
  t.throws(() => loadConfig({ HOST: 'localhost:3000', PUBLIC_URL: 'https://exo.example.com' }), /HOST=.*the port goes in PORT/, 'listen() would fail too');
  t.equal(loadConfig({ HOST: 'fe80::1%eth0', PUBLIC_URL: 'https://exo.example.com' }).HOST, 'fe80::1%eth0', 'a zone is fine with PUBLIC_URL set');
  for (const host of ['127.0.0.1', '0.0.0.0', '::', '::1', 'localhost', 'exoroute.internal', 'my-host'])
    t.equal(loadConfig({ HOST: host }).HOST, host, `${host} is fine`);
});

t.test('ADMIN_API_KEY and METRICS_TOKEN: visible ASCII only, as no Bearer header can carry a space or other characters', async (t) => {
  // A key with a space (a pass phrase), a trailing space or a non-ASCII letter passed the check, and
  // then every admin request (or every scrape of /metrics) answered 401: `Bearer a b` is no token.
  for (const name of ['ADMIN_API_KEY', 'METRICS_TOKEN'] as const) {
    for (const value of ['correct horse battery staple', 'exr_0123456789abcdef ', ' exr_0123456789abcdef', 'exr_0123456789abcdé', 'exr_0123456789abcdef\r']) {
      try {
        loadConfig({ [name]: value });
        t.fail(`${name}=${JSON.stringify(value)} should be refused`);
      } catch (err) {
        t.ok(err instanceof ConfigError);
        const msg = (err as Error).message;
        t.match(msg, new RegExp(`${name}=\\(${value.length} characters, not shown\\): must be letters, digits and punctuation only`));
        t.notOk(msg.includes(value.trim()), 'the value is not in the message');
      }
    }
    t.equal(loadConfig({ [name]: 'exr_A-b.c~d+e/f=0123:x' })[name], 'exr_A-b.c~d+e/f=0123:x', 'punctuation is fine');
  }
});

t.test('a DATABASE_URL without its scheme (user:password@host/db) is refused without showing its password', async (t) => {
  // The masking looked for the password after `//` or a scheme's `:`: without a scheme, the line
  // naming the variable showed it whole, in the journal or `docker compose logs`.
  for (const [value, shown] of [
    ['exoroute:Pw0rd-hidden@db:5432/exoroute', 'exoroute:***@db:5432/exoroute'],
    ['exoroute:Pw0rd@hidden@db/exoroute', 'exoroute:***@db/exoroute'],
    ['jdbc:postgresql://exoroute:Pw0rd-hidden@db/exoroute', '***@db/exoroute'],
  ] as const) {
    try {
      loadConfig({ DATABASE_URL: value });
      t.fail(`${value} should be refused`);
    } catch (err) {
      t.ok(err instanceof ConfigError);
      const msg = (err as Error).message;
      t.match(msg, /DATABASE_URL=.*: must be a Postgres URL/, value);
      t.match(msg, shown, 'the value is shown, its password masked');
      t.notMatch(msg, 'Pw0rd', 'the password is not in the message');
    }
  }
});

t.test('a true/false variable with another value names what it takes', async (t) => {
  // The line was TypeBox's own `EXOTEL_CALLBACKS_OPEN="yes": Expected boolean`, which names no value to write.
  for (const name of ['EXOTEL_CALLBACKS_OPEN', 'EXOTEL_REQUIRE_CALLBACK_SECRET'])
    for (const value of ['yes', 'on', 'enabled'])
      t.throws(() => loadConfig({ [name]: value }), new RegExp(`^invalid configuration:\\n  ${name}="${value}": must be true or false$`), `${name}=${value}`);
  t.equal(loadConfig({ EXOTEL_CALLBACKS_OPEN: 'true' }).EXOTEL_CALLBACKS_OPEN, true);
  t.equal(loadConfig({ EXOTEL_CALLBACKS_OPEN: 'false' }).EXOTEL_CALLBACKS_OPEN, false);
});

t.test('an unknown DEFAULT_COUNTRY is named beside the other bad variables, not only once they are fixed', async (t) => {
  // It was checked only when nothing else was wrong: fix PORT, restart, and only then hear about ZZ.
  t.throws(() => loadConfig({ PORT: 'eighty', DEFAULT_COUNTRY: 'ZZ' }), /PORT="eighty".*\n.*DEFAULT_COUNTRY="ZZ": not a country/);
  t.throws(
    () => loadConfig({ DEFAULT_COUNTRY: 'in' }),
    /^invalid configuration:\n {2}DEFAULT_COUNTRY="in": must be a two-letter country code in capitals, e.g. IN$/,
    'one line for one problem',
  );
});

t.test('a DATA_DIR that cannot be a directory stops the start with exit code 2 and one line naming it', async (t) => {
  // With ADMIN_API_KEY and DATABASE_URL set (as compose sets the latter), nothing touched DATA_DIR
  // until the CDR spool was created while listening: its mkdir error was reported as the listen's
  // (`cannot listen on 127.0.0.1:0: ENOTDIR…`; EACCES, on a root-owned mount, as "ports below 1024
  // need root: set PORT to 1024 or above"), exit code 1, which the systemd unit restarts every 2 s.
  const { execFile } = await import('node:child_process');
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { createTestDatabase, ADMIN_KEY } = await import('./helper.js');
  const url = await createTestDatabase(t);
  const dir = await mkdtemp(path.join(tmpdir(), 'exoroute-datadir-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'a-file');
  await writeFile(file, 'not a directory\n');
  const dataDir = path.join(file, 'data');
  const env = { ...process.env, DATABASE_URL: url, DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, EXOTEL_CALLBACKS_OPEN: 'true', HOST: '127.0.0.1', PORT: '0' };
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import=tsx', 'src/server.ts'], { env, timeout: 60_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
    );
  });
  t.equal(code, 2, 'exit code 2, which the systemd unit does not restart', { stderr });
  t.match(
    stderr,
    new RegExp(`^exoroute cannot start: DATA_DIR=${JSON.stringify(dataDir).replace(/[.[\]]/g, '\\$&')} cannot be used \\(ENOTDIR.*set DATA_DIR to a directory`),
  );
  t.equal(stderr.split('\n').length, 2, 'one line, no stack trace');
});

t.test(
  'a DATABASE_URL whose Postgres is not there or refuses exoroute stops the start with one line naming it and the fix, without its password',
  async (t) => {
    // It printed the pg error with its stack and twenty `undefined` fields, and nothing about what to check.
    const { execFile } = await import('node:child_process');
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { createServer } = await import('node:net');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const { createTestDatabase, ADMIN_KEY } = await import('./helper.js');
    const dataDir = await mkdtemp(path.join(tmpdir(), 'exoroute-dburl-'));
    t.teardown(() => rm(dataDir, { recursive: true, force: true }));
    // A free port nothing listens on.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const wrongPassword = new URL(await createTestDatabase(t));
    wrongPassword.password = 'not-the-password-4711';
    const cases = [
      { url: `postgresql://exo:hunter2-secret-4711@127.0.0.1:${port}/exo`, problem: /ECONNREFUSED/, secret: 'hunter2-secret-4711' },
      { url: wrongPassword.toString(), problem: /password authentication failed/, secret: 'not-the-password-4711' },
    ];
    for (const { url, problem, secret } of cases) {
      const env = {
        ...process.env,
        DATABASE_URL: url,
        DATA_DIR: dataDir,
        ADMIN_API_KEY: ADMIN_KEY,
        EXOTEL_CALLBACKS_OPEN: 'true',
        HOST: '127.0.0.1',
        PORT: '0',
      };
      const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--import=tsx', 'src/server.ts'], { env, timeout: 60_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
        );
      });
      t.equal(code, 1, 'exit code 1: the supervisor restarts it, as README says', { stderr });
      t.match(stderr, /^exoroute cannot start: the database at DATABASE_URL=.* cannot be used: .*check/, 'names DATABASE_URL and what to check');
      t.match(stderr, problem, 'says what Postgres (or the network) said');
      t.equal(stderr.split('\n').length, 2, 'one line, no stack trace', { stderr });
      t.notOk(`${stdout}${stderr}`.includes(secret), 'the password is not shown');
    }
  },
);

t.test('ADMIN_STATEMENT_TIMEOUT_MS 15000 and ADMIN_BULK_STATEMENT_TIMEOUT_MS 50000 by default, 100 to 3600000', async (t) => {
  const defaults = loadConfig({});
  t.match(defaults, { ADMIN_STATEMENT_TIMEOUT_MS: 15000, ADMIN_BULK_STATEMENT_TIMEOUT_MS: 50000 });
  // Behind AWS's ALB (idle timeout 60 s) the client must read exoroute's 503, not the balancer's 504.
  const longestWait = Math.max(defaults.ADMIN_STATEMENT_TIMEOUT_MS, defaults.ADMIN_BULK_STATEMENT_TIMEOUT_MS) + ADMIN_DEAD_CONNECTION_GRACE_MS;
  t.ok(longestWait < 60_000, `an admin request's longest wait on Postgres by default (${longestWait} ms) is under an ALB's 60 s`);
  t.match(loadConfig({ ADMIN_STATEMENT_TIMEOUT_MS: '100', ADMIN_BULK_STATEMENT_TIMEOUT_MS: '3600000' }), {
    ADMIN_STATEMENT_TIMEOUT_MS: 100,
    ADMIN_BULK_STATEMENT_TIMEOUT_MS: 3600000,
  });
  for (const name of ['ADMIN_STATEMENT_TIMEOUT_MS', 'ADMIN_BULK_STATEMENT_TIMEOUT_MS']) {
    t.throws(() => loadConfig({ [name]: '99' }), new RegExp(`${name}="99"`));
    t.throws(() => loadConfig({ [name]: '3600001' }), new RegExp(name));
  }
});

t.test('REQUEST_TIMEOUT_SECONDS: 300 by default, 1 to 3600', async (t) => {
  t.equal(loadConfig({}).REQUEST_TIMEOUT_SECONDS, 300);
  t.equal(loadConfig({ REQUEST_TIMEOUT_SECONDS: '1' }).REQUEST_TIMEOUT_SECONDS, 1);
  t.throws(() => loadConfig({ REQUEST_TIMEOUT_SECONDS: '0' }), /REQUEST_TIMEOUT_SECONDS/);
  t.throws(() => loadConfig({ REQUEST_TIMEOUT_SECONDS: '3601' }), /REQUEST_TIMEOUT_SECONDS/);
});
