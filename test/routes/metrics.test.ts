import t from 'tap';
import type { Test } from 'tap';
import { Gauge } from 'prom-client';
import { buildTestApp, type TestApp } from '../helper.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition format: `# TYPE` lines and `name{label="value",...} value` samples. */
function parseMetrics(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const raw = m[3]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (raw !== 'NaN' && Number.isNaN(value)) throw new Error(`bad value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

/** The one sample with this name whose labels include `labels`; undefined when there is none. */
function sample(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

async function scrape(ctx: TestApp, headers: Record<string, string> = {}) {
  const res = await ctx.app.inject({ method: 'GET', url: '/metrics', headers });
  return { res, ...(res.statusCode === 200 ? parseMetrics(res.body) : { samples: [], types: new Map<string, string>() }) };
}

async function withFlow(t: Test, env: Record<string, string> = {}) {
  const ctx = await buildTestApp(t, env);
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'inbound', name: 'Main line', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } },
  });
  t.equal(flow.statusCode, 201);
  const t0 = Date.now();
  while (!ctx.app.rules.current?.flows.has('inbound')) {
    if (Date.now() - t0 > 2000) throw new Error('snapshot did not catch up');
    await new Promise((r) => setTimeout(r, 5));
  }
  return ctx;
}

const callback = (ctx: TestApp, sid: string, flow = 'inbound') =>
  ctx.app.inject({ method: 'GET', url: `/exotel/passthru/${flow}?CallSid=${sid}&CallFrom=09812345678&CallTo=08047115777` });

t.test('/metrics counts every callback by endpoint and outcome, with CDR batches, pool use and snapshot age', async (t) => {
  const ctx = await withFlow(t);
  const answered = 7;
  for (let i = 0; i < answered; i++) t.equal((await callback(ctx, `call-${i}`)).statusCode, 200);
  // Several at once share CDR batches.
  await Promise.all(Array.from({ length: 5 }, (_, i) => callback(ctx, `burst-${i}`)));
  t.equal((await callback(ctx, 'call-x', 'no-such-flow')).statusCode, 404);

  const { res, samples, types } = await scrape(ctx);
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);

  const h = 'exoroute_callback_duration_seconds';
  t.equal(types.get(h), 'histogram');
  t.match(res.body, new RegExp(`# HELP ${h} Time in exoroute's callback handler, from its start to the answer`), 'its help says what it measures');
  const labels = { endpoint: 'passthru', outcome: 'answered' };
  t.equal(sample(samples, `${h}_count`, labels), answered + 5, 'one observation per answered callback');
  t.equal(sample(samples, `${h}_count`, { endpoint: 'passthru', outcome: 'rejected' }), 1, 'the refused one has its own series');
  t.equal(sample(samples, `${h}_bucket`, { ...labels, le: '+Inf' }), answered + 5);
  const buckets = samples.filter((s) => s.name === `${h}_bucket` && s.labels.outcome === 'answered').map((s) => s.value);
  t.same(
    buckets,
    [...buckets].sort((a, b) => a - b),
    'buckets are cumulative',
  );
  t.ok(
    samples.some((s) => s.name === `${h}_bucket` && s.labels.le === '0.001'),
    'millisecond buckets',
  );
  const sum = sample(samples, `${h}_sum`, labels)!;
  t.ok(sum > 0 && sum < 12 * 2.5, `latency sum ${sum}s is plausible`);

  t.equal(sample(samples, 'exoroute_cdr_records_total'), answered + 5 + 1, 'every callback left a CDR');
  const batches = sample(samples, 'exoroute_cdr_batches_total')!;
  t.ok(batches > 0 && batches < answered + 5 + 1, `${batches} batches: the burst shared commits`);
  t.equal(sample(samples, 'exoroute_cdr_batch_size_count'), batches);
  t.equal(sample(samples, 'exoroute_cdr_batch_size_sum'), answered + 5 + 1);
  t.equal(sample(samples, 'exoroute_cdr_batch_duration_seconds_count', { result: 'committed' }), batches);
  t.equal(sample(samples, 'exoroute_cdr_batch_failures_total'), 0);
  t.equal(sample(samples, 'exoroute_cdr_spool_depth'), 0);
  t.equal(types.get('exoroute_cdr_records_total'), 'counter');

  t.ok(sample(samples, 'exoroute_db_pool_connections')! >= 1, 'pool has connections');
  t.ok(sample(samples, 'exoroute_db_pool_idle_connections')! >= 0);
  t.equal(sample(samples, 'exoroute_db_pool_waiting_clients'), 0);
  t.equal(sample(samples, 'exoroute_db_pool_max_connections'), ctx.db.pool.options.max);
  t.ok(sample(samples, 'exoroute_db_admin_pool_connections')! >= 0);
  t.ok(sample(samples, 'exoroute_db_admin_pool_idle_connections')! >= 0);
  t.equal(sample(samples, 'exoroute_db_admin_pool_waiting_clients'), 0);
  t.equal(sample(samples, 'exoroute_db_admin_pool_max_connections'), ctx.db.adminPool.options.max);

  const age = sample(samples, 'exoroute_rules_snapshot_age_seconds')!;
  t.ok(age >= 0 && age < 30, `snapshot age ${age}s`);
  t.ok(sample(samples, 'exoroute_rules_snapshot_version')! >= 1);
  t.equal(sample(samples, 'exoroute_rules_listener_up'), 1);

  t.ok(sample(samples, 'process_cpu_user_seconds_total')! > 0, 'process metrics');
  t.ok(sample(samples, 'nodejs_heap_size_used_bytes')! > 0, 'node metrics');
});

t.test('/metrics counts dial-state statements: requests per statement, and their time', async (t) => {
  const ctx = await buildTestApp(t);
  const agents = ['+919800000001', '+919800000002'];
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'agents', name: 'Agents', type: 'dial', rules: [], otherwise: { numbers: agents }, onError: { numbers: agents } },
  });
  t.equal(flow.statusCode, 201);
  const t0 = Date.now();
  while (!ctx.app.rules.current?.flows.has('agents')) {
    if (Date.now() - t0 > 2000) throw new Error('snapshot did not catch up');
    await new Promise((r) => setTimeout(r, 5));
  }
  const dialWhom = (sid: string) => ctx.app.inject({ method: 'GET', url: `/exotel/dial-whom/agents?CallSid=${sid}&CallFrom=09812345678` });
  t.equal((await dialWhom('d-0')).body, agents.join(','));
  // The first goes alone; the others wait for it and go together.
  const burst = await Promise.all(Array.from({ length: 6 }, (_, i) => dialWhom(`d-${i + 1}`)));
  t.same(
    burst.map((r) => r.body),
    Array(6).fill(agents.join(',')),
  );

  const { samples, types } = await scrape(ctx);
  t.equal(types.get('exoroute_dial_batch_size'), 'histogram');
  t.equal(sample(samples, 'exoroute_dial_batch_size_sum'), 7, 'every request answered by exactly one statement');
  const statements = sample(samples, 'exoroute_dial_batch_size_count')!;
  t.ok(statements >= 2 && statements < 7, `${statements} statements for 7 requests: the burst shared one`);
  const alone = sample(samples, 'exoroute_dial_batch_size_bucket', { le: '1' })!;
  t.ok(alone >= 1 && alone < statements, `${alone} of ${statements} statements answered one request (d-0 did)`);
  t.equal(sample(samples, 'exoroute_dial_batch_duration_seconds_count', { result: 'answered' }), statements);
  t.equal(sample(samples, 'exoroute_dial_batch_duration_seconds_count', { result: 'failed' }), 0, 'none failed');
  const seconds = sample(samples, 'exoroute_dial_batch_duration_seconds_sum', { result: 'answered' })!;
  t.ok(seconds > 0 && seconds < 5, `statement time ${seconds}s is plausible`);
});

t.test('a fresh instance exports the onError series of every flow endpoint at 0, so that rate() sees the first onError answer', async (t) => {
  // A series that appears with its first sample at 1 has no increase for rate() or increase(): the
  // first callback an instance answered with onError after a start showed on neither the dashboard's
  // onError panel nor ExorouteOnErrorAnswers (test/deploy/alerts.promtool.yml).
  const ctx = await buildTestApp(t);
  const { samples } = await scrape(ctx);
  for (const endpoint of ['passthru', 'switch', 'dial-whom', 'connect']) {
    t.equal(sample(samples, 'exoroute_callback_duration_seconds_count', { endpoint, outcome: 'on-error' }), 0, endpoint);
  }
});

t.test('a fresh instance exports the failed CDR and dial batch series at 0, so that the dashboard sees the first failure', async (t) => {
  const ctx = await buildTestApp(t);
  const { samples } = await scrape(ctx);
  for (const stage of ['exoroute_cdr_batch', 'exoroute_dial_batch']) {
    t.equal(sample(samples, `${stage}_duration_seconds_count`, { result: 'failed' }), 0, stage);
  }
});

t.test('each app has its own registry: a second app starts from zero', async (t) => {
  const first = await withFlow(t);
  await callback(first, 'call-1');
  const second = await buildTestApp(t);
  const { samples } = await scrape(second);
  t.equal(sample(samples, 'exoroute_callback_duration_seconds_count', { endpoint: 'passthru', outcome: 'answered' }), undefined);
  t.equal(sample(samples, 'exoroute_callback_duration_seconds_count', { endpoint: 'passthru', outcome: 'on-error' }), 0);
  t.equal(sample(samples, 'exoroute_cdr_records_total'), 0);
  t.equal(sample((await scrape(first)).samples, 'exoroute_callback_duration_seconds_count', { endpoint: 'passthru', outcome: 'answered' }), 1);
});

t.test('with METRICS_TOKEN, /metrics needs Authorization: Bearer <token>', async (t) => {
  const token = 'metrics-token-0123456789';
  const ctx = await withFlow(t, { METRICS_TOKEN: token });
  t.equal((await scrape(ctx)).res.statusCode, 401, 'no token');
  t.equal((await scrape(ctx, { authorization: 'Bearer wrong-token-0123456789' })).res.statusCode, 401, 'wrong token');
  t.equal((await scrape(ctx, { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` })).res.statusCode, 401, 'not bearer');
  const denied = await scrape(ctx);
  t.notMatch(denied.res.body, /exoroute_/, 'nothing leaks in the refusal');
  t.equal((await callback(ctx, 'call-1')).statusCode, 200, 'callbacks do not need the metrics token');
  const ok = await scrape(ctx, { authorization: `Bearer ${token}` });
  t.equal(ok.res.statusCode, 200);
  t.equal(sample(ok.samples, 'exoroute_callback_duration_seconds_count', { endpoint: 'passthru', outcome: 'answered' }), 1);
});

t.test('with METRICS_TOKEN, a 401 from /metrics carries WWW-Authenticate: Bearer, as RFC 9110 requires of every 401', async (t) => {
  const ctx = await buildTestApp(t, { METRICS_TOKEN: 'metrics-token-0123456789' });
  const none = await scrape(ctx);
  t.equal(none.res.statusCode, 401);
  t.equal(none.res.headers['www-authenticate'], 'Bearer realm="exoroute metrics"');
  const wrong = await scrape(ctx, { authorization: 'Bearer wrong-token-0123456789' });
  t.equal(wrong.res.statusCode, 401);
  t.equal(wrong.res.headers['www-authenticate'], 'Bearer realm="exoroute metrics", error="invalid_token"');
});

t.test('a value that is not a number is written NaN, as the exposition format spells it', async (t) => {
  const ctx = await buildTestApp(t);
  new Gauge({ name: 'test_not_a_number', help: 'ends in Nan', registers: [ctx.app.metrics.registry] }).set(Number.NaN);
  const { res, samples } = await scrape(ctx);
  t.match(res.body, /^test_not_a_number NaN$/m);
  t.notMatch(res.body, /^[^#\n].* Nan$/m, 'no sample is written Nan');
  t.match(res.body, /^# HELP test_not_a_number ends in Nan$/m, 'help texts are left as they are');
  t.ok(Number.isNaN(sample(samples, 'test_not_a_number')));
});

t.test('without METRICS_TOKEN, /metrics is open', async (t) => {
  const ctx = await buildTestApp(t);
  t.equal((await scrape(ctx)).res.statusCode, 200);
});

t.test('/metrics counts dial-group members by state, each once, and per group as that group sees them', async (t) => {
  const ctx = await buildTestApp(t);
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: {
          slug: 'sales',
          name: 'Sales',
          strategy: 'sequential',
          members: [{ number: '09811100001' }, { number: '09811100002' }, { number: '09811100003' }, { number: '09811100004', active: false }],
        },
      })
    ).statusCode,
    201,
  );
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: {
          slug: 'support',
          name: 'Support',
          strategy: 'sequential',
          members: [{ number: '09811100001' }, { number: '09811100005' }, { number: '09811100003', active: false }],
        },
      })
    ).statusCode,
    201,
  );
  t.equal((await ctx.admin({ method: 'PUT', url: '/admin/agents/09811100002/availability', payload: { status: 'away' } })).statusCode, 200);
  await ctx.db.pool.query(`INSERT INTO agent_states (number, busy, busy_since, updated_at) VALUES ('+919811100001', true, now(), now())`);
  await ctx.db.pool.query(
    `INSERT INTO agent_states (number, paused_until, paused_reason, updated_at) VALUES ('+919811100005', now() + interval '1 hour', '2 missed offers', now())`,
  );
  // Both groups and the availability in the rules snapshot: a reload may read the groups before the second one committed.
  const loaded = () => ctx.app.rules.current?.dialGroups.has('support') === true && ctx.app.rules.current.availability.get('+919811100002')?.status === 'away';
  for (let i = 0; i < 300 && !loaded(); i++) await new Promise((r) => setTimeout(r, 10));
  const { samples, types } = await scrape(ctx);
  t.equal(types.get('exoroute_agents'), 'gauge');
  const byState = Object.fromEntries(samples.filter((s) => s.name === 'exoroute_agents').map((s) => [s.labels.state, s.value]));
  t.same(byState, { on_call: 1, away: 1, wrapping_up: 0, paused: 1, inactive: 1, off_shift: 0, available: 1 });
  // A supervisor's panel per queue: "sales: 1 available, 1 on a call".
  t.equal(types.get('exoroute_dial_group_agents'), 'gauge');
  const inGroup = (all: Sample[], group: string) =>
    Object.fromEntries(all.filter((s) => s.name === 'exoroute_dial_group_agents' && s.labels.group === group).map((s) => [s.labels.state, s.value]));
  t.same(inGroup(samples, 'sales'), { on_call: 1, away: 1, wrapping_up: 0, paused: 0, inactive: 1, off_shift: 0, available: 1 }, 'sales');
  t.same(
    inGroup(samples, 'support'),
    { on_call: 1, away: 0, wrapping_up: 0, paused: 1, inactive: 1, off_shift: 0, available: 0 },
    'support: the agent on a call counted here too; 09811100003, available in sales, is switched off in support',
  );
  const { res } = await scrape(ctx);
  t.match(res.body, /# HELP exoroute_dial_group_agents .*counted in each/, 'the HELP text says an agent in two groups counts in each');
  t.equal((await ctx.admin({ method: 'DELETE', url: '/admin/dial-groups/support' })).statusCode, 204);
  for (let i = 0; i < 300 && ctx.app.rules.current?.dialGroups.has('support'); i++) await new Promise((r) => setTimeout(r, 10));
  const after = (await scrape(ctx)).samples;
  t.same(inGroup(after, 'support'), {}, "a deleted group's series go");
  t.same(inGroup(after, 'sales'), { on_call: 1, away: 1, wrapping_up: 0, paused: 0, inactive: 1, off_shift: 0, available: 1 }, 'the others stay');
  for (const name of ['exoroute_agent_offers_total', 'exoroute_agent_answers_total', 'exoroute_agent_misses_total']) t.equal(types.get(name), 'counter', name);
});

t.test('a Postgres that does not answer leaves /metrics answering, with the spool depth and without the agents', async (t) => {
  // exoroute_agents is read from Postgres at scrape time. Its query had no time limit: with
  // agent_states locked (or Postgres stalled) the scrape hung until Prometheus gave up, so the
  // instance looked down (ExorouteDown) and its spool depth, the one thing to watch then, was lost.
  const ctx = await buildTestApp(t);
  for (let i = 0; i < 300 && !ctx.app.rules.current; i++) await new Promise((r) => setTimeout(r, 10));
  const { default: pg } = await import('pg');
  const locker = new pg.Client({ connectionString: ctx.db.url });
  await locker.connect();
  t.teardown(() => locker.end());
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE agent_states IN ACCESS EXCLUSIVE MODE');
  const started = Date.now();
  const res = await Promise.race([scrape(ctx), new Promise<null>((resolve) => setTimeout(() => resolve(null), 5000))]);
  const ms = Date.now() - started;
  await locker.query('ROLLBACK');
  t.ok(res, `/metrics answered (after ${ms} ms)`);
  if (!res) return;
  t.equal(res.res.statusCode, 200);
  t.ok(ms < 2500, `within Prometheus' scrape timeout with room to spare (${ms} ms)`);
  t.equal(sample(res.samples, 'exoroute_cdr_spool_depth'), 0, 'the spool depth is in the scrape');
  t.notOk(
    res.samples.some((s) => s.name === 'exoroute_agents' || s.name === 'exoroute_dial_group_agents'),
    'the agents are left out of this scrape, by state and by group',
  );
  const after = await scrape(ctx);
  t.ok(
    after.samples.some((s) => s.name === 'exoroute_agents'),
    'and are back once Postgres answers',
  );
});

t.test("a scrape counts the agents on the admin API's pool, not on a connection a callback waits for", async (t) => {
  // The agents' query ran on the callbacks' pool: with every one of its connections taken by
  // callbacks (a busy minute), each scrape queued behind them and, after 1 s, left the agents out.
  const ctx = await buildTestApp(t);
  for (let i = 0; i < 300 && !ctx.app.rules.current; i++) await new Promise((r) => setTimeout(r, 10));
  const held = await Promise.all(Array.from({ length: ctx.db.pool.options.max! }, () => ctx.db.pool.connect()));
  t.teardown(() => {
    for (const c of held) c.release();
  });
  const { samples } = await scrape(ctx);
  t.equal(sample(samples, 'exoroute_db_pool_idle_connections'), 0, "every callbacks' connection is taken");
  t.ok(
    samples.some((s) => s.name === 'exoroute_agents'),
    'the agents are counted all the same',
  );
  t.equal(sample(samples, 'exoroute_db_pool_waiting_clients'), 0, 'and the scrape did not wait for one');
});

t.test('the latency buckets reach past any DECISION_BUDGET_MS, so p99 can show a callback near or over its budget', async (t) => {
  // The top finite bucket was 2.5 s, while DECISION_BUDGET_MS goes to 30 s (Exotel waits 10 s for
  // Dial Whom): with a budget of 4 s, histogram_quantile could never exceed 2.5 s, so the dashboard's
  // percentiles flattened there and ExorouteLatencyNearBudget (p99 > 80 % of the budget) never fired.
  const ctx = await buildTestApp(t, { DECISION_BUDGET_MS: '30000' });
  const { samples } = await scrape(ctx);
  const budget = sample(samples, 'exoroute_decision_budget_seconds')!;
  t.equal(budget, 30);
  ctx.app.metrics.observeCallback('dial-whom', 'answered', 0.9 * budget);
  const after = await scrape(ctx);
  const bounds = after.samples
    .filter((s) => s.name === 'exoroute_callback_duration_seconds_bucket' && s.labels.endpoint === 'dial-whom')
    .map((s) => Number(s.labels.le))
    .filter(Number.isFinite);
  t.ok(Math.max(...bounds) >= budget, `a finite bucket at or above the largest budget (top: ${Math.max(...bounds)} s)`);
  t.ok(bounds.includes(1.5), 'and still one at the default budget');
});

t.test('every reason /readyz is 503 for is a series of exoroute_not_ready, so an alert sees what a balancer sees', async (t) => {
  // ExorouteNotReady saw only rules never loaded (and rules not followed, which /readyz does not
  // count): an instance out of the balancer for a migration not applied, or for a newer version's
  // dial functions, or for a database it could not reach, raised no alert.
  const ctx = await withFlow(t);
  const reasons = ['database', 'migrations', 'dial_functions', 'rules', 'spool'];
  const notReady = async () => {
    const { samples } = await scrape(ctx);
    return Object.fromEntries(reasons.map((reason) => [reason, sample(samples, 'exoroute_not_ready', { reason })]));
  };
  t.same(await notReady(), Object.fromEntries(reasons.map((r) => [r, 0])), 'a ready instance: every reason at 0, so the series are there');
  t.equal((await ctx.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);

  await ctx.db.pool.query(`UPDATE "_prisma_migrations" SET finished_at = NULL`);
  t.teardown(() => ctx.db.pool.query(`UPDATE "_prisma_migrations" SET finished_at = now()`));
  t.match((await ctx.app.inject({ method: 'GET', url: '/readyz' })).json(), { status: 'degraded', reasons: [/migrations not applied/] });
  t.same(await notReady(), { database: 0, migrations: 1, dial_functions: 0, rules: 0, spool: 0 }, 'a migration not applied');
  await ctx.db.pool.query(`UPDATE "_prisma_migrations" SET finished_at = now()`);
  t.same(await notReady(), Object.fromEntries(reasons.map((r) => [r, 0])), 'and back to 0 once it is');
});

t.test('exoroute_not_ready says database (and rules) for an instance whose database does not answer, and the scrape still answers', async (t) => {
  const { default: pino } = await import('pino');
  const { buildApp } = await import('../../src/app.js');
  const { loadConfig } = await import('../../src/config.js');
  const { openDatabase } = await import('../../src/store/database.js');
  const db = openDatabase('postgresql://nobody@127.0.0.1:1/none', pino({ level: 'silent' }));
  const app = await buildApp({ config: loadConfig({}), db, logger: pino({ level: 'silent' }), background: false });
  t.teardown(async () => {
    await app.close();
    await db.close();
  });
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  const { samples } = parseMetrics(res.body);
  t.equal(sample(samples, 'exoroute_not_ready', { reason: 'database' }), 1);
  t.equal(sample(samples, 'exoroute_not_ready', { reason: 'rules' }), 1);
  t.equal(sample(samples, 'exoroute_not_ready', { reason: 'migrations' }), 0);
});
