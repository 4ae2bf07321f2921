/**
 * The bench's judgement of a load run (bench/scenarios/measure.ts): a run is timed whatever came
 * back, so what came back decides whether `npm run bench` (and CI's smoke run of it) fails.
 * Driven here against a real exoroute app listening on a port, as the bench drives its process.
 */
import type { AddressInfo } from 'node:net';
import t from 'tap';
import pg from 'pg';
import { buildTestApp } from '../helper.js';
import { BASIC, CALLBACK_SECRET } from '../../bench/lib/config.js';
import type { Env } from '../../bench/lib/environment.js';
import { closedLoop } from '../../bench/lib/load.js';
import type { Service } from '../../bench/lib/proc.js';
import { AGENT_NUMBERS } from '../../bench/lib/traffic.js';
import { failed, measure, wrongAnswers, type Contender } from '../../bench/scenarios/measure.js';

t.test("a dial run that exoroute answered from the flow's onError fails the bench, though every answer was a 200", async (t) => {
  const ctx = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: CALLBACK_SECRET, DECISION_BUDGET_MS: '1000' });
  const group = await ctx.admin({
    method: 'POST',
    url: '/admin/dial-groups',
    payload: { slug: 'sales', name: 'Sales', strategy: 'round_robin', members: AGENT_NUMBERS.map((number, i) => ({ number, priority: i + 1 })) },
  });
  t.equal(group.statusCode, 201, 'dial group created');
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'agents', name: 'Sales line', type: 'dial', rules: [], otherwise: { dialGroup: 'sales' }, onError: { numbers: ['+918047110000'] } },
  });
  t.equal(flow.statusCode, 201, 'dial flow created');
  for (let i = 0; i < 300 && !ctx.app.rules.current?.flows.has('agents'); i++) await new Promise((r) => setTimeout(r, 10));
  await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = ctx.app.server.address() as AddressInfo;

  const pool = new pg.Pool({ connectionString: ctx.db.url, max: 2 });
  t.teardown(() => pool.end());
  // What measure() uses of the bench's environment: its Postgres connection (and a postmaster's
  // CPU time, which is not measured here), and the service's pid and URL.
  const env = { pool, postmaster: 0 } as unknown as Env;
  const svc = { name: 'exoroute', pid: process.pid, url: `http://127.0.0.1:${port}` } as Service;
  const c: Contender = { name: 'exoroute dial-whom', svc, kind: 'dial-whom', flow: 'agents' };
  const run = (round: number, seconds = 1, during?: { before: () => Promise<unknown>; after: () => Promise<unknown> }) =>
    measure(env, 'dial', c, round, async (next) => {
      await during?.before();
      try {
        return await closedLoop({ url: svc.url, connections: 4, seconds, next, headers: BASIC, maxRequests: 400 });
      } finally {
        await during?.after();
      }
    });

  const sound = await run(1);
  t.ok(sound.result.requests > 0, `a sound run: ${sound.result.requests} answers`);
  t.same(failed(sound), [], 'a sound run does not fail');

  // Slow, not wrong: Postgres holds every dial statement past the budget (1 s), and exoroute
  // answers onError in time. Timing never fails a run.
  const holder = await pool.connect();
  t.teardown(() => holder.release());
  const late = await run(2, 3, {
    before: () => holder.query('BEGIN; LOCK TABLE dial_calls IN EXCLUSIVE MODE'),
    after: () => holder.query('COMMIT'),
  });
  t.ok((late.onError?.answers ?? 0) > 0, `${late.onError?.answers} callbacks answered from onError as the budget ran out`);
  t.same(failed(late), [], 'a run answered late does not fail');

  // The dial state fails in Postgres (as after a broken migration of dial_answer()): every Dial
  // Whom callback is answered at once from the flow's onError, with a 200.
  await pool.query(`CREATE FUNCTION bench_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'dial state broken'; END $$`);
  await pool.query('CREATE TRIGGER bench_test_refuse BEFORE INSERT OR UPDATE ON dial_calls FOR EACH ROW EXECUTE FUNCTION bench_test_refuse()');
  const broken = await run(3);
  t.ok(broken.result.requests > 0, `${broken.result.requests} answers`);
  t.equal(wrongAnswers(broken.result), 0, `every answer a 2xx/3xx: ${JSON.stringify(broken.result.statuses)}`);
  t.match(
    failed(broken),
    [/callbacks answered from the flow's onError: \d+× dial state unavailable: .*dial state broken/],
    'the run fails: it timed onError answers, not the dial state',
  );
});
