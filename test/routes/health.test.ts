import t from 'tap';
import pino from 'pino';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/store/database.js';
import { DB_ERROR_KINDS } from '../../src/plugins/readiness.js';
import { buildTestApp, capturedLog, quietLog } from '../helper.js';

t.test('/healthz is up and /readyz is ready on a migrated database', async (t) => {
  const { app, db } = await buildTestApp(t);
  t.same((await app.inject({ method: 'GET', url: '/healthz' })).json(), { status: 'ok' });
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 200);
  t.same(ready.json(), { status: 'ready', reasons: [] });

  t.test('/readyz names a migration that is not applied', async (t) => {
    await db.pool.query(`UPDATE "_prisma_migrations" SET finished_at = NULL`);
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    t.equal(res.statusCode, 503);
    t.match(res.json(), { status: 'degraded', reasons: [/migrations not applied: .*_init/] });
    await db.pool.query(`UPDATE "_prisma_migrations" SET finished_at = now()`);
  });
});

t.test('/readyz is 503 when the database is unreachable, /healthz stays 200', async (t) => {
  const db = openDatabase('postgresql://nobody@127.0.0.1:1/none', quietLog);
  const app = await buildApp({ config: loadConfig({}), db, logger: pino({ level: 'silent' }) });
  t.teardown(async () => {
    await app.close();
    await db.close();
  });
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  const res = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(res.statusCode, 503);
  t.match(res.json(), { status: 'degraded', reasons: [/database unreachable/] });
});

t.test('errors: malformed JSON is 400, unknown routes 404, internal errors never leak', async (t) => {
  const { app, admin, db } = await buildTestApp(t);
  const bad = await admin({ method: 'POST', url: '/admin/vip-lists', payload: '{"slug": ', headers: { 'content-type': 'application/json' } });
  t.equal(bad.statusCode, 400);
  t.match(bad.json(), { statusCode: 400, error: 'Bad Request', message: /JSON/ });
  const missing = await app.inject({ method: 'GET', url: '/nope' });
  t.equal(missing.statusCode, 404);
  t.match(missing.json(), { statusCode: 404, message: 'no route GET /nope' });

  await db.pool.query('ALTER TABLE vip_lists RENAME TO vip_lists_gone');
  const boom = await admin({ method: 'GET', url: '/admin/vip-lists' });
  t.equal(boom.statusCode, 500);
  t.notMatch(boom.body, /vip_lists|prisma|relation|postgres/i, 'no SQL or driver detail in the body');
  t.match(boom.json(), { statusCode: 500, error: 'Internal Server Error' });
});

t.test('a URL the router refuses is 400 saying why: a malformed %-escape, or a path segment over 4096 characters', async (t) => {
  const { app, admin, db } = await buildTestApp(t);
  const badEscape = await admin({ method: 'GET', url: '/admin/flows/%E0%A4' });
  t.same(badEscape.json(), { statusCode: 400, error: 'Bad Request', code: 'FST_ERR_BAD_URL', message: 'the URL has a malformed %-escape' });
  const long = await admin({ method: 'GET', url: `/admin/flows/${'a'.repeat(5000)}` });
  t.equal(long.statusCode, 400);
  t.equal(long.json().message, 'params: a path segment of the URL is longer than 4096 characters', 'not a malformed %-escape');
  const callback = await app.inject({ method: 'GET', url: `/exotel/passthru/${'a'.repeat(5000)}?CallSid=long-flow` });
  t.equal(callback.statusCode, 400);
  const { rows } = await db.pool.query("SELECT reason FROM cdrs WHERE call_sid = 'long-flow'");
  t.same(rows, [{ reason: 'params: a path segment of the URL is longer than 4096 characters' }], "the callback's CDR says why");
});

t.test("a URL the router refuses (outside the callbacks) gets the security headers and the request's log line, as any other refusal", async (t) => {
  const { logger, lines } = capturedLog();
  const { app, admin } = await buildTestApp(t, {}, { logger: logger });
  const refused = [
    await admin({ method: 'GET', url: '/admin/flows/%E0%A4' }),
    await app.inject({ method: 'GET', url: `/admin/dial-groups/${'a'.repeat(5000)}` }),
  ];
  for (const res of refused) {
    t.equal(res.statusCode, 400);
    t.ok(res.headers['content-security-policy'], 'a CSP');
    t.equal(res.headers['x-content-type-options'], 'nosniff');
    t.equal(res.headers['x-frame-options'], 'SAMEORIGIN');
  }
  await new Promise((r) => setImmediate(r));
  const logged = lines.map((l) => JSON.parse(l));
  t.match(
    logged,
    [
      { level: 30, msg: 'request', method: 'GET', url: '/admin/flows/%E0%A4', status: 400, message: 'the URL has a malformed %-escape' },
      { level: 30, msg: 'request', method: 'GET', status: 400, message: /longer than 4096 characters/ },
    ],
    'one line each, as for any refused request',
  );
  t.equal(logged.length, 2);
});

t.test("a 503 of /readyz is logged with its reasons: the probe's line says why the instance is not ready", async (t) => {
  const { logger, lines } = capturedLog();
  const db = openDatabase('postgresql://nobody@127.0.0.1:1/none', quietLog);
  const app = await buildApp({ config: loadConfig({}), db, logger });
  t.teardown(async () => {
    await app.close();
    await db.close();
  });
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
  const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request' && l.url === '/readyz');
  t.equal(logged.length, 1);
  t.match(logged[0], { status: 503, message: /^database unreachable: / });
});

t.test(
  '/readyz, which needs no key, names the kind of database error, not the host, address, user or database its message names; the log line has it whole',
  async (t) => {
    const { db: running } = await buildTestApp(t);
    const cases = [
      { url: 'postgresql://nobody@127.0.0.1:1/none', hidden: ['127.0.0.1:1'], reason: 'database unreachable: connection refused (ECONNREFUSED)' },
      {
        url: Object.assign(new URL(running.url), { pathname: '/internal_billing_db' }).href,
        hidden: ['internal_billing_db'],
        reason: 'database unreachable: database does not exist (3D000)',
      },
    ];
    for (const c of cases) {
      const { logger, lines } = capturedLog();
      const db = openDatabase(c.url, quietLog);
      const app = await buildApp({ config: loadConfig({}), db, logger });
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      await app.close();
      await db.close();
      t.equal(res.statusCode, 503);
      t.same(res.json().reasons.slice(0, 1), [c.reason], c.reason);
      for (const h of c.hidden) t.notOk(res.body.includes(h), `the body does not name ${h}`);
      const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request' && l.url === '/readyz');
      for (const h of c.hidden) t.match(logged[0]?.message, h, `the probe's log line does`);
    }
  },
);

t.test("README's Operations and the OpenAPI description quote /readyz's 200 body as it is sent", async (t) => {
  const { app } = await buildTestApp(t);
  const body = (await app.inject({ method: 'GET', url: '/readyz' })).body;
  const { readFileSync } = await import('node:fs');
  const readme = readFileSync('README.md', 'utf8');
  t.ok(readme.includes(`\`GET /readyz\` — \`200 ${body}\``), `README: 200 ${body}`);
  const doc = JSON.parse((await app.inject({ method: 'GET', url: '/openapi.json' })).body) as {
    paths: Record<string, { get: { description: string } }>;
  };
  t.ok(doc.paths['/readyz']!.get.description.includes(`200 \`${body}\``), `OpenAPI: 200 ${body}`);
});

t.test(
  '/readyz is 503 once a newer version migrated the database and changed how the dial functions are called (its dial answers all fail), and stays 200 for a newer migration that did not',
  async (t) => {
    const { app, admin, db } = await buildTestApp(t);
    const group = { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '+919812345678', priority: 1 }] };
    t.equal((await admin({ method: 'POST', url: '/admin/dial-groups', payload: group })).statusCode, 201);
    const flow = { slug: 'agents', name: 'Agents', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { numbers: ['+918047110000'] } };
    t.equal((await admin({ method: 'POST', url: '/admin/flows', payload: flow })).statusCode, 201);
    for (let i = 0; i < 300 && !app.rules.current?.flows.has('agents'); i++) await new Promise((r) => setTimeout(r, 10));
    const probe = () => app.inject({ method: 'GET', url: '/readyz' });
    const dialWhom = (sid: string) => app.inject({ method: 'GET', url: `/exotel/dial-whom/agents?CallSid=${sid}&CallFrom=09800000001` });
    t.equal((await probe()).statusCode, 200, 'ready on its own version');

    // A newer version's migration that leaves the dial functions as they were called: still ready.
    const record = (name: string) =>
      db.pool.query(
        `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, finished_at, applied_steps_count) VALUES (gen_random_uuid(), 'x', $1, now(), now(), 1)`,
        [name],
      );
    await record('20991231000000_a_newer_index');
    t.equal((await probe()).statusCode, 200, 'a newer migration that leaves the dial functions as they were: ready');

    // One that adds an attribute to a type this version sends by position (as 20261206230000 did).
    await db.pool.query('ALTER TYPE dial_extra ADD ATTRIBUTE from_a_newer_version BOOLEAN');
    await record('20991231000001_dial_extra_grows');
    t.equal((await dialWhom('incompatible')).body, '+918047110000', "this instance's dial answers are the flow's onError");
    const res = await probe();
    t.equal(res.statusCode, 503);
    t.same(res.json(), {
      status: 'degraded',
      reasons: [
        'a newer version of exoroute migrated the database (20991231000000_a_newer_index, 20991231000001_dial_extra_grows) and changed how the dial functions are called: every Dial Whom and Connect callback here is answered onError; restart this instance on that version (README, Upgrading)',
      ],
    });
  },
);

t.test("README's Operations names every kind of database error /readyz names, with its code, as /readyz words it", async (t) => {
  // It listed five and `…`: an operator reading `starting up (57P03)` or `connection not authorised (28000)` found neither.
  const { readFileSync } = await import('node:fs');
  const readme = readFileSync('README.md', 'utf8').replace(/\s+/g, ' ');
  for (const [code, kind] of Object.entries(DB_ERROR_KINDS)) t.ok(readme.includes(`\`${kind} (${code})\``), `${kind} (${code})`);
});

t.test('/readyz counts the spooled CDRs as a person would: 1 CDR, 2 CDRs', async (t) => {
  const { app } = await buildTestApp(t);
  let depth = 1;
  // The depth itself is the CDR writer's (test/store/cdr-writer.test.ts): here, only how /readyz words it.
  Object.defineProperty(app.cdrWriter, 'spoolDepth', { get: () => depth, configurable: true });
  t.same((await app.inject({ method: 'GET', url: '/readyz' })).json().reasons, ['1 CDR in the local spool, waiting for Postgres']);
  depth = 2;
  t.same((await app.inject({ method: 'GET', url: '/readyz' })).json().reasons, ['2 CDRs in the local spool, waiting for Postgres']);
  delete (app.cdrWriter as { spoolDepth?: number }).spoolDepth; // the writer's own again, before it closes
});
