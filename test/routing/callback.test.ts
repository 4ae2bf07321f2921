/**
 * answerCallback(): what goes back to Exotel for one Passthru or Switch-case callback, from the rules
 * snapshot alone. No database, no HTTP: the snapshot is built in memory and calls go through the
 * real Exotel parameter parser.
 */
import t from 'tap';
import { collectParams, parseExotelCall, type ExotelCall } from '../../src/exotel/params.js';
import { answerCallback, type CallbackResult, type Endpoint } from '../../src/routing/callback.js';
import type { Flow, Rule } from '../../src/schemas/flow.js';
import type { ScheduleRules } from '../../src/schemas/schedule.js';
import type { RulesSnapshot } from '../../src/routing/snapshot.js';

// 2026-01-05 is a Monday; Kolkata is UTC+05:30. AT = Monday 12:00 IST.
const AT = new Date('2026-01-05T06:30:00Z');
const BUDGET_MS = 1500;
const OPERATOR_URL = 'https://my.exotel.com/acme/exoml/start_voice/42';

function callOf(params: Record<string, string>): ExotelCall {
  const { params: collected, warnings } = collectParams({ query: new URLSearchParams(params).toString() });
  return parseExotelCall(collected, { defaultCountry: 'IN', warnings });
}
/** An incoming call as a Passthru applet sends it; the caller 09812345678 is a VIP. */
const call = (extra: Record<string, string> = {}): ExotelCall =>
  callOf({ CallSid: 'b6cfaf0d5cbd4a5f8a4e9b7a1d2c3e4f', CallFrom: '09876543210', CallTo: '08047115777', Direction: 'incoming', ...extra });
const VIP_CALLER = { CallFrom: '09812345678' };

const SUPPORT: ScheduleRules = {
  timezone: 'Asia/Kolkata',
  weekly: (['mon', 'tue', 'wed', 'thu', 'fri'] as const).map((day) => ({ day, open: '09:00', close: '18:00' })),
  exceptions: [],
};

const stamp = { createdAt: new Date('2026-01-01T00:00:00Z'), updatedAt: new Date('2026-01-01T00:00:00Z') };
const passthruRules: Rule[] = [
  { name: 'vip', when: { callerIn: 'gold' }, then: { branch: 'B' } },
  { name: 'operator', when: { digits: { equals: '9' } }, then: { branch: 'A', url: OPERATOR_URL } },
  { name: 'after hours', when: { closedBy: 'support' }, then: { branch: 'B' } },
];
const FLOWS: Flow[] = [
  { slug: 'inbound', name: 'Main line', type: 'passthru', mode: 'sync', rules: passthruRules, otherwise: { branch: 'A' }, onError: { branch: 'B' }, ...stamp },
  {
    slug: 'inbound-async',
    name: 'Main line, async',
    type: 'passthru',
    mode: 'async',
    rules: passthruRules,
    otherwise: { branch: 'A' },
    onError: { branch: 'B' },
    ...stamp,
  },
  {
    slug: 'menu',
    name: 'IVR menu',
    type: 'switch',
    mode: 'sync',
    rules: [
      { name: 'sales', when: { digits: { equals: '1' } }, then: { select: 'sales' } },
      { name: 'support', when: { digits: { equals: '2' } }, then: { select: 'support' } },
      { name: 'press 3 in hours', when: { digits: { equals: '3' }, openBy: 'support' }, then: { select: 'support' } },
    ],
    otherwise: { select: 'operator' },
    onError: { select: 'fallback' },
    ...stamp,
  },
  {
    slug: 'agents',
    name: 'Agents',
    type: 'dial',
    mode: 'sync',
    rules: [],
    otherwise: { dialGroup: 'sales' },
    onError: { numbers: ['+919812345678'] },
    ...stamp,
  },
];

const SNAPSHOT: RulesSnapshot = {
  version: 1,
  loadedAt: AT,
  flows: new Map(FLOWS.map((f) => [f.slug, f])),
  vipLists: new Map([['gold', new Map([['+919812345678', { expiresAt: null }]])]]),
  schedules: new Map([['support', SUPPORT]]),
  dialGroups: new Map(),
  availability: new Map(),
};
const flow = (slug: string): Flow => SNAPSHOT.flows.get(slug)!;
/** Snapshots a rule refers past: the VIP list 'gold' or the schedule 'support' is not loaded. */
const NO_VIP_LISTS: RulesSnapshot = { ...SNAPSHOT, vipLists: new Map() };
const NO_SCHEDULES: RulesSnapshot = { ...SNAPSHOT, schedules: new Map() };

function answer(opts: {
  endpoint: Endpoint;
  flowSlug: string;
  call?: ExotelCall;
  snapshot?: RulesSnapshot | null;
  at?: Date;
  elapsedMs?: number;
}): CallbackResult {
  return answerCallback({
    snapshot: opts.snapshot === undefined ? SNAPSHOT : opts.snapshot,
    endpoint: opts.endpoint,
    flowSlug: opts.flowSlug,
    call: opts.call ?? call(),
    at: opts.at ?? AT,
    budgetMs: BUDGET_MS,
    elapsedMs: () => opts.elapsedMs ?? 3,
  });
}

const JSON_TYPE = 'application/json; charset=utf-8';
const errorBody = (statusCode: number, error: string, message: string) => JSON.stringify({ statusCode, error, message });

// --- Refusals -------------------------------------------------------------------------------------

t.test('refusals', async (t) => {
  t.test('before the first rules snapshot is loaded: 503, rejected, nothing decided', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound', snapshot: null });
    t.strictSame(r, {
      answer: { statusCode: 503, contentType: JSON_TYPE, body: errorBody(503, 'Service Unavailable', 'routing rules are not loaded yet') },
      outcome: 'rejected',
      reason: 'routing rules are not loaded yet',
      decision: null,
      flow: null,
    });
  });

  t.test('an unknown flow: 404 with a reason naming the flow', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'no-such-flow' });
    t.equal(r.answer.statusCode, 404);
    t.equal(r.outcome, 'rejected');
    t.equal(r.reason, "no flow 'no-such-flow'");
    t.equal(r.answer.body, errorBody(404, 'Not Found', "no flow 'no-such-flow'"), "the body is Fastify's error shape with the reason");
    t.equal(r.answer.contentType, JSON_TYPE);
    t.equal(r.decision, null);
    t.equal(r.flow, null);
  });

  const mismatches: Array<{ endpoint: Endpoint; slug: string; reason: string }> = [
    { endpoint: 'passthru', slug: 'menu', reason: "flow 'menu' is a switch flow, not passthru" },
    { endpoint: 'switch', slug: 'inbound', reason: "flow 'inbound' is a passthru flow, not switch" },
    { endpoint: 'switch', slug: 'agents', reason: "flow 'agents' is a dial flow, not switch" },
    { endpoint: 'passthru', slug: 'agents', reason: "flow 'agents' is a dial flow, not passthru" },
  ];
  for (const m of mismatches) {
    t.test(`a ${flow(m.slug).type} flow called on the ${m.endpoint} endpoint: 404 naming the type mismatch`, async (t) => {
      const r = answer({ endpoint: m.endpoint, flowSlug: m.slug });
      t.equal(r.answer.statusCode, 404);
      t.equal(r.outcome, 'rejected');
      t.equal(r.reason, m.reason);
      t.equal(r.answer.body, errorBody(404, 'Not Found', m.reason));
      t.equal(r.decision, null, 'nothing is decided');
    });
  }

  const noSid: Array<[string, ExotelCall]> = [
    ['CallSid not sent', callOf({ CallFrom: '09812345678', CallTo: '08047115777' })],
    ['CallSid sent empty', callOf({ CallSid: '', CallFrom: '09812345678' })],
    ['CallSid sent as blanks', callOf({ CallSid: '   ', CallFrom: '09812345678' })],
  ];
  for (const [what, c] of noSid) {
    for (const [endpoint, slug] of [
      ['passthru', 'inbound'],
      ['switch', 'menu'],
    ] as const) {
      t.test(`${what} on ${endpoint}: 400 'CallSid is missing', flow known, nothing decided`, async (t) => {
        const r = answer({ endpoint, flowSlug: slug, call: c });
        t.equal(r.answer.statusCode, 400);
        t.equal(r.answer.body, errorBody(400, 'Bad Request', 'CallSid is missing'));
        t.equal(r.outcome, 'rejected');
        t.equal(r.reason, 'CallSid is missing');
        t.equal(r.decision, null);
        t.equal(r.flow?.slug, slug, 'the CDR can still name the flow');
      });
    }
  }
});

// --- Passthru -------------------------------------------------------------------------------------

t.test('passthru (sync)', async (t) => {
  t.test('branch A: 200 with an empty text/plain body', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound' });
    t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body: '' });
    t.equal(r.outcome, 'answered');
    t.equal(r.reason, null);
    t.equal(r.decision?.decidedBy, 'otherwise');
    t.equal(r.flow?.slug, 'inbound');
  });

  t.test('branch B: 302 with an empty text/plain body', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound', call: call(VIP_CALLER) });
    t.strictSame(r.answer, { statusCode: 302, contentType: 'text/plain', body: '' });
    t.equal(r.outcome, 'answered');
    t.equal(r.reason, null);
    t.equal(r.decision?.matchedRule, 'vip');
  });

  t.test('an action with a url: 200 with the URL as the text/plain body', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound', call: call({ digits: '"9"' }) });
    t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body: OPERATOR_URL });
    t.equal(r.outcome, 'answered');
    t.equal(r.decision?.matchedRule, 'operator');
  });

  t.test('the decision uses the `at` given, not the wall clock', async (t) => {
    const open = answer({ endpoint: 'passthru', flowSlug: 'inbound', at: new Date('2026-01-05T03:30:00Z') });
    const closed = answer({ endpoint: 'passthru', flowSlug: 'inbound', at: new Date('2026-01-05T12:30:00Z') });
    t.equal(open.answer.statusCode, 200, 'Monday 09:00 IST: open, otherwise → A');
    t.equal(closed.answer.statusCode, 302, 'Monday 18:00 IST: closed → B');
    t.equal(closed.decision?.matchedRule, 'after hours');
  });
});

t.test('passthru (async)', async (t) => {
  t.test('answers 200 with an empty body at once even when the decision is B; the decision is still recorded', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound-async', call: call(VIP_CALLER) });
    t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body: '' });
    t.equal(r.outcome, 'async');
    t.equal(r.reason, null);
    t.equal(r.decision?.decidedBy, 'rule');
    t.equal(r.decision?.matchedRule, 'vip');
    t.strictSame(r.decision?.action, { branch: 'B' });
    t.equal(r.flow?.slug, 'inbound-async');
  });

  t.test('answers 200 with an empty body even when the decision carries a url', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound-async', call: call({ digits: '"9"' }) });
    t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body: '' });
    t.equal(r.outcome, 'async');
    t.strictSame(r.decision?.action, { branch: 'A', url: OPERATOR_URL });
  });

  t.test('a budget overrun still answers 200 at once; the onError decision and why are recorded', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound-async', elapsedMs: BUDGET_MS + 1 });
    t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body: '' });
    t.equal(r.outcome, 'async');
    t.equal(r.decision?.decidedBy, 'onError');
    t.strictSame(r.decision?.action, { branch: 'B' });
    t.match(r.reason, /budget/);
  });

  t.test('a decide error still answers 200 at once; the reason names the missing list', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound-async', snapshot: NO_VIP_LISTS });
    t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body: '' });
    t.equal(r.outcome, 'async');
    t.equal(r.decision?.decidedBy, 'onError');
    t.match(r.reason, /vip-list 'gold'/);
  });
});

// --- Switch ---------------------------------------------------------------------------------------

t.test('switch', async (t) => {
  const cases: Array<[string, Record<string, string>, string, string | null]> = [
    ['a matching rule: 200 text/plain with exactly {"select":"sales"}', { digits: '"1"' }, '{"select":"sales"}', 'sales'],
    ['another rule selects its own case', { digits: '"2"' }, '{"select":"support"}', 'support'],
    ['no rule matching: the otherwise case', { digits: '"5"' }, '{"select":"operator"}', null],
    ['a rule with a schedule condition selects its case in hours', { digits: '"3"' }, '{"select":"support"}', 'press 3 in hours'],
    ['no digits at all: the otherwise case', {}, '{"select":"operator"}', null],
  ];
  for (const [name, extra, body, matched] of cases) {
    t.test(name, async (t) => {
      const r = answer({ endpoint: 'switch', flowSlug: 'menu', call: call(extra) });
      t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body });
      t.equal(r.outcome, 'answered');
      t.equal(r.reason, null);
      t.equal(r.decision?.matchedRule, matched);
    });
  }
});

// --- onError --------------------------------------------------------------------------------------

t.test('time budget', async (t) => {
  t.test('passthru: an overrun answers the onError action (B → 302), outcome on-error, reason names the budget', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound', elapsedMs: BUDGET_MS + 1 });
    t.strictSame(r.answer, { statusCode: 302, contentType: 'text/plain', body: '' });
    t.equal(r.outcome, 'on-error');
    t.equal(r.reason, `decision took longer than the ${BUDGET_MS} ms budget`);
    t.equal(r.decision?.decidedBy, 'onError');
    t.strictSame(r.decision?.action, { branch: 'B' });
    t.ok(r.decision && r.decision.trace.length > 0, 'the trace of the late decision is kept');
  });

  t.test('switch: an overrun answers the onError case', async (t) => {
    const r = answer({ endpoint: 'switch', flowSlug: 'menu', call: call({ digits: '"1"' }), elapsedMs: 10_000 });
    t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body: '{"select":"fallback"}' });
    t.equal(r.outcome, 'on-error');
    t.match(r.reason, /1500 ms budget/);
  });

  t.test('a decision taking exactly the budget is on time', async (t) => {
    const r = answer({ endpoint: 'switch', flowSlug: 'menu', call: call({ digits: '"1"' }), elapsedMs: BUDGET_MS });
    t.equal(r.answer.body, '{"select":"sales"}');
    t.equal(r.outcome, 'answered');
    t.equal(r.reason, null);
  });

  t.test('a decide error stays the reason when the budget is overrun too', async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound', snapshot: NO_VIP_LISTS, elapsedMs: BUDGET_MS * 2 });
    t.equal(r.outcome, 'on-error');
    t.match(r.reason, /vip-list 'gold'/);
  });
});

t.test('a decide error answers the onError action', async (t) => {
  t.test("passthru: a rule's VIP list missing from the snapshot → onError B (302), reason names the list", async (t) => {
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound', snapshot: NO_VIP_LISTS });
    t.strictSame(r.answer, { statusCode: 302, contentType: 'text/plain', body: '' });
    t.equal(r.outcome, 'on-error');
    t.match(r.reason, /vip-list 'gold'/);
    t.equal(r.decision?.decidedBy, 'onError');
    t.equal(r.decision?.error, r.reason, 'the decision carries the same reason');
  });

  t.test("switch: a rule's schedule missing from the snapshot → the onError case, reason names the schedule", async (t) => {
    const r = answer({ endpoint: 'switch', flowSlug: 'menu', call: call({ digits: '"5"' }), snapshot: NO_SCHEDULES });
    t.strictSame(r.answer, { statusCode: 200, contentType: 'text/plain', body: '{"select":"fallback"}' });
    t.equal(r.outcome, 'on-error');
    t.match(r.reason, /schedule 'support'/);
  });

  t.test('a schedule that cannot be evaluated (bad timezone) → onError with the cause', async (t) => {
    const broken: RulesSnapshot = { ...SNAPSHOT, schedules: new Map([['support', { ...SUPPORT, timezone: 'Nowhere/Atlantis' }]]) };
    const r = answer({ endpoint: 'passthru', flowSlug: 'inbound', snapshot: broken });
    t.equal(r.answer.statusCode, 302, 'onError is B');
    t.equal(r.outcome, 'on-error');
    t.match(r.reason, /timezone/);
  });
});
