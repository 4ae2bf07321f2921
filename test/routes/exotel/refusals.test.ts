/**
 * Refused callbacks are recorded within a bound per source address (issue 27): the first few a
 * minute as CDRs, the rest counted per address and minute, all in the metric; callbacks that pass
 * the guard keep exactly one CDR each, also during a flood.
 */
import t from 'tap';
import type { Test } from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { buildTestApp, type TestApp } from '../../helper.js';
import { DEFAULT_REFUSAL_LIMITS } from '../../../src/store/refusals.js';

const SECRET = 'refusals-callback-secret';
const ATTACKER = '203.0.113.66';
const EXOTEL = '198.51.100.10';

async function setup(t: Test, env: Record<string, string> = {}): Promise<TestApp> {
  const ctx = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: SECRET, ...env });
  const created = async (url: string, payload: unknown) => t.equal((await ctx.admin({ method: 'POST', url, payload })).statusCode, 201, url);
  await created('/admin/vip-lists', { slug: 'gold', name: 'Gold' });
  await created('/admin/vip-lists/gold/entries', { number: '09812345678' });
  await created('/admin/flows', {
    slug: 'inbound',
    name: 'Main line',
    type: 'passthru',
    rules: [{ name: 'VIPs', when: { callerIn: 'gold' }, then: { branch: 'A' } }],
    otherwise: { branch: 'B' },
    onError: { branch: 'A' },
  });
  await created('/admin/flows', { slug: 'menu', name: 'Menu', type: 'switch', rules: [], otherwise: { select: 'sales' }, onError: { select: 'error' } });
  for (let i = 0; i < 300 && !(ctx.app.rules.current?.flows.has('inbound') && ctx.app.rules.current.flows.has('menu')); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  return ctx;
}

/** Prometheus samples of one metric, by their labels. */
async function refusalMetric(ctx: TestApp): Promise<Map<string, number>> {
  const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^exoroute_callback_refusals_total\{reason="(\w+)",handling="(\w+)"\} (\d+)$/gm)) out.set(`${m[1]}/${m[2]}`, Number(m[3]));
  return out;
}
const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const cdrCount = async (ctx: TestApp, where = 'true') => Number((await ctx.db.pool.query(`SELECT count(*)::int AS n FROM cdrs WHERE ${where}`)).rows[0].n);

t.test('a flood of refused callbacks from one address: under 1 % stored, all counted, Exotel callbacks untouched', async (t) => {
  const ctx = await setup(t);
  const { app } = ctx;
  const WAVES = 100;
  const REFUSED_PER_WAVE = 50;
  const EXOTEL_PER_WAVE = 2;
  const refused: LightMyRequestResponse[] = [];
  const exotel: Array<{ sid: string; vip: boolean; endpoint: string; res: LightMyRequestResponse }> = [];
  const started = performance.now();
  for (let w = 0; w < WAVES; w++) {
    const flood = Array.from({ length: REFUSED_PER_WAVE }, (_, i) => {
      // Wrong and missing secrets, on every endpoint, GET and POST, and a path that is no endpoint.
      const kind = i % 5;
      const url =
        kind === 0
          ? `/exotel/passthru/inbound?CallSid=x-${w}-${i}&token=guess-${i}`
          : kind === 1
            ? `/exotel/switch/menu?CallSid=x-${w}-${i}`
            : kind === 2
              ? '/exotel/dial-events?Status=free'
              : kind === 3
                ? `/exotel/nowhere/${i}?CallSid=x-${w}-${i}`
                : `/exotel/passthru/inbound`;
      return app
        .inject({
          method: kind === 4 ? 'POST' : 'GET',
          url,
          remoteAddress: ATTACKER,
          ...(kind === 4
            ? { payload: `CallSid=x-${w}-${i}`, headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ZXhvdGVsOndyb25n' } }
            : {}),
        })
        .then((res) => refused.push(res));
    });
    const calls = Array.from({ length: EXOTEL_PER_WAVE }, (_, i) => {
      const sid = `exo-${w}-${i}`;
      const vip = (w + i) % 2 === 0;
      const endpoint = i === 0 ? 'passthru' : 'switch';
      const url =
        endpoint === 'passthru'
          ? `/exotel/passthru/inbound?CallSid=${sid}&CallFrom=${vip ? '09812345678' : '09800000001'}&token=${SECRET}`
          : `/exotel/switch/menu?CallSid=${sid}&digits=%221%22`;
      const headers = endpoint === 'switch' ? { authorization: `Basic ${Buffer.from(`exotel:${SECRET}`).toString('base64')}` } : {};
      return app.inject({ method: 'GET', url, remoteAddress: EXOTEL, headers }).then((res) => exotel.push({ sid, vip, endpoint, res }));
    });
    await Promise.all([...flood, ...calls]);
  }
  const seconds = (performance.now() - started) / 1000;
  await app.refusals.flush();

  const total = WAVES * REFUSED_PER_WAVE;
  t.equal(refused.length, total);
  const statuses = new Map<number, number>();
  for (const r of refused) statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
  t.ok(
    refused.every((r) => [401, 404, 429].includes(r.statusCode)),
    `refused with 401 (404 off the endpoints), then 429: ${JSON.stringify([...statuses])}`,
  );
  const throttled = refused.filter((r) => r.statusCode === 429);
  // Past 600 a minute (a run that crosses a minute boundary starts afresh once).
  t.ok(throttled.length >= total - 2 * DEFAULT_REFUSAL_LIMITS.throttleAfter, `${throttled.length} answered 429`);
  t.ok(
    throttled.every((r) => Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 60),
    'with Retry-After: the rest of the minute',
  );

  const refusedCdrs = await cdrCount(ctx, "outcome = 'rejected'");
  const summaries = (await ctx.db.pool.query('SELECT * FROM callback_refusals')).rows;
  const stored = refusedCdrs + summaries.length;
  t.ok(
    stored < total / 100,
    `refused rows stored: ${refusedCdrs} CDRs and ${summaries.length} summary rows for ${total} refusals (${((100 * stored) / total).toFixed(2)} %), in ${seconds.toFixed(1)} s`,
  );
  t.ok(refusedCdrs >= DEFAULT_REFUSAL_LIMITS.cdrsPerAddress, 'the first ones are CDRs, as samples');
  t.same(
    summaries.map((r) => r.address),
    summaries.map(() => ATTACKER),
    "summaries: the attacker's address",
  );
  t.equal(
    summaries.reduce((n, r) => n + r.refusals, 0),
    total,
    'summaries count every refusal',
  );
  t.equal(
    summaries.reduce((n, r) => n + r.stored_as_cdrs, 0),
    refusedCdrs,
  );
  t.equal(
    summaries.reduce((n, r) => n + r.throttled, 0),
    throttled.length,
  );
  t.equal(
    summaries.reduce((n, r) => n + r.wrong_secret, 0),
    total,
    'all for the secret',
  );

  const metric = await refusalMetric(ctx);
  t.equal(sum(metric), total, 'the metric counts every refusal');
  t.equal(metric.get('secret/cdr'), refusedCdrs);
  t.equal(metric.get('secret/throttled'), throttled.length);
  t.equal(metric.get('address/counted'), 0);

  // Exotel's callbacks, beside the flood: answered right, none on-error (the budget held), one CDR each.
  t.equal(exotel.length, WAVES * EXOTEL_PER_WAVE);
  const cdrs = new Map(
    (await ctx.db.pool.query("SELECT call_sid, outcome, http_status, endpoint FROM cdrs WHERE call_sid LIKE 'exo-%'")).rows.map((r) => [r.call_sid, r]),
  );
  const perSid = (await ctx.db.pool.query("SELECT count(*)::int AS n FROM cdrs WHERE call_sid LIKE 'exo-%' GROUP BY call_sid HAVING count(*) <> 1")).rowCount;
  t.equal(perSid, 0, 'exactly one CDR per Exotel callback');
  const wrong = exotel.filter(({ sid, vip, endpoint, res }) => {
    const expected = endpoint === 'switch' ? [200, '{"select":"sales"}'] : [vip ? 200 : 302, ''];
    const cdr = cdrs.get(sid);
    return res.statusCode !== expected[0] || res.body !== expected[1] || !cdr || cdr.outcome !== 'answered' || cdr.http_status !== res.statusCode;
  });
  t.same(
    wrong.map((w) => [w.sid, w.res.statusCode, cdrs.get(w.sid)?.outcome]),
    [],
    'every Exotel callback answered by its rule, outcome answered (not on-error)',
  );
  t.comment(
    `${total} refusals and ${exotel.length} Exotel callbacks in ${seconds.toFixed(1)} s: ${refusedCdrs} refusal CDRs, ${summaries.length} summary rows, ${throttled.length} answered 429`,
  );
});

t.test("right secret, unknown flow or no CallSid: Exotel's own (misconfigured) callbacks keep one CDR each, however many", async (t) => {
  const ctx = await setup(t);
  const n = DEFAULT_REFUSAL_LIMITS.cdrsPerAddress * 3;
  for (let i = 0; i < n; i++) {
    const unknown = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/nope?CallSid=unknown-${i}&token=${SECRET}` });
    t.equal(unknown.statusCode, 404);
    const noSid = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallFrom=09812345678&token=${SECRET}` });
    t.equal(noSid.statusCode, 400);
  }
  t.equal(await cdrCount(ctx, "call_sid LIKE 'unknown-%'"), n);
  t.equal(await cdrCount(ctx, 'call_sid IS NULL AND http_status = 400'), n);
  t.equal(sum(await refusalMetric(ctx)), 0, 'none of them a refusal');
});

t.test('EXOTEL_ALLOWED_CIDRS: refusals by address are bounded and counted the same way; another address has its own budget', async (t) => {
  const ctx = await setup(t, { EXOTEL_ALLOWED_CIDRS: EXOTEL });
  const n = 50;
  for (let i = 0; i < n; i++) {
    const res = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallSid=cidr-${i}&token=${SECRET}`, remoteAddress: '2001:db8:7:7::1' });
    t.equal(res.statusCode, 403);
  }
  const other = await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallSid=cidr-other&token=${SECRET}`, remoteAddress: '192.0.2.1' });
  t.equal(other.statusCode, 403);
  t.equal(await cdrCount(ctx, "call_sid = 'cidr-other'"), 1, 'a new address: stored as a CDR');
  const stored = await cdrCount(ctx, "call_sid LIKE 'cidr-%' AND call_sid <> 'cidr-other'");
  t.ok(stored <= 2 * DEFAULT_REFUSAL_LIMITS.cdrsPerAddress && stored >= DEFAULT_REFUSAL_LIMITS.cdrsPerAddress, `${stored} of ${n} stored`);
  const metric = await refusalMetric(ctx);
  t.equal((metric.get('address/cdr') ?? 0) + (metric.get('address/counted') ?? 0), n + 1);

  await ctx.app.refusals.flush();
  const page = await ctx.admin({ method: 'GET', url: '/admin/refusals?limit=10' });
  t.equal(page.statusCode, 200);
  const items = (page.json() as { items: Array<{ address: string; refusals: number; outsideAllowedCidrs: number; storedAsCdrs: number; wrongSecret: number }> })
    .items;
  const v6 = items.filter((r) => r.address === '2001:db8:7:7::/64');
  t.equal(
    v6.reduce((a, r) => a + r.refusals, 0),
    n,
    'GET /admin/refusals: the IPv6 source by its /64, every refusal',
  );
  t.equal(
    v6.reduce((a, r) => a + r.outsideAllowedCidrs, 0),
    n,
  );
  t.equal(
    v6.reduce((a, r) => a + r.storedAsCdrs, 0),
    stored,
  );
  const filtered = await ctx.admin({ method: 'GET', url: '/admin/refusals?address=192.0.2.1' });
  t.match(filtered.json(), { items: [{ address: '192.0.2.1', refusals: 1, storedAsCdrs: 1 }], nextCursor: null });
  const bad = await ctx.admin({ method: 'GET', url: '/admin/refusals?from=2026-12-05T10:00:00Z&to=2026-12-05T09:00:00Z' });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /querystring\/to/);
});

t.test('summaries are not lost on a clean shutdown: close() writes them', async (t) => {
  const ctx = await setup(t);
  for (let i = 0; i < 30; i++) await ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallSid=s-${i}`, remoteAddress: ATTACKER });
  await ctx.app.refusals.flush();
  // Counted after the last flush, with no chance for the timer to write them before close().
  for (let i = 0; i < 20; i++) ctx.app.refusals.note(ATTACKER, 'secret');
  await ctx.app.close();
  const rows = (await ctx.db.pool.query('SELECT address, sum(refusals)::int AS refusals FROM callback_refusals GROUP BY address')).rows;
  t.same(rows, [{ address: ATTACKER, refusals: 50 }]);
});

t.test('a refused callback whose values no index can hold (a CallSid of 2000 CJK characters) leaves its CDR, cut, and holds back no other', async (t) => {
  const ctx = await setup(t);
  const huge = Array.from({ length: 2000 }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 0x5000))).join('');
  const [bad, ok1, ok2] = await Promise.all([
    ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?${new URLSearchParams({ CallSid: huge, DialWhomNumber: huge })}`, remoteAddress: ATTACKER }),
    ctx.app.inject({ method: 'GET', url: `/exotel/passthru/inbound?CallSid=legit-1&token=${SECRET}`, remoteAddress: EXOTEL }),
    ctx.app.inject({ method: 'GET', url: `/exotel/passthru/${huge}?CallSid=legit-2&token=${SECRET}`, remoteAddress: EXOTEL }),
  ]);
  t.same([bad.statusCode, ok1.statusCode, ok2.statusCode], [401, 302, 404]);
  t.equal(ctx.app.cdrWriter.spoolDepth, 0, 'nothing spooled: Postgres took every CDR');
  t.equal((await ctx.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  const { rows } = await ctx.db.pool.query(
    `SELECT call_sid, dial_whom_number, flow_slug, params ->> 'CallSid' AS sent FROM cdrs WHERE call_sid LIKE 'legit-%' OR length(call_sid) > 100 ORDER BY call_sid`,
  );
  t.equal(rows.length, 3, 'one CDR each');
  const cut = rows.find((r) => r.sent === huge);
  t.ok(cut, 'the whole CallSid is kept in params');
  t.equal(cut.call_sid, `${huge.slice(0, 200)}…`, 'call_sid: its first 200 characters');
  t.equal(cut.dial_whom_number, `${huge.slice(0, 200)}…`);
  t.equal(rows.find((r) => r.call_sid === 'legit-2').flow_slug, `${huge.slice(0, 200)}…`, 'flow_slug too');
});

t.test("README's EXOTEL_ALLOWED_CIDRS section points at the field GET /admin/refusals counts a new Exotel address in", async (t) => {
  // It said `(reason \`address\`)`: a metric label's value; the list's rows have no `reason`.
  const { readFileSync } = await import('node:fs');
  const { RefusalSummarySchema } = await import('../../../src/schemas/refusal.js');
  const readme = readFileSync('README.md', 'utf8');
  const start = readme.indexOf("### Exotel's source addresses (`EXOTEL_ALLOWED_CIDRS`)");
  t.ok(start >= 0, 'the section is there');
  const section = readme.slice(start, readme.indexOf('\n#', start + 4));
  t.ok('outsideAllowedCidrs' in RefusalSummarySchema.properties, 'GET /admin/refusals counts refusals by address in outsideAllowedCidrs');
  t.match(section, /GET \/admin\/refusals`[^.]*`outsideAllowedCidrs`/, 'and the section names that field');
});
