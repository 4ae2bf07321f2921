/**
 * A Dial Whom / Connect answer from start to end (src/routing/dial/answer.ts), with the dial state
 * in Postgres replaced by functions: the decision, the request asked, the answer rendered, and the
 * flow's onError numbers when the dial state fails or does not answer within the budget.
 */
import t from 'tap';
import { DEFAULT_CONNECT } from '../../../src/exotel/connect.js';
import { answerDialWith } from '../../../src/routing/dial/answer.js';
import type { DialRequest } from '../../../src/routing/dial/request.js';
import type { RulesSnapshot } from '../../../src/routing/snapshot.js';
import { A, AT, B, C, call, dialFlow, group, member, seeded, snapshotOf } from './fixtures.js';

const EVENT_URL = 'https://exo.example.com/exotel/dial-events';
const sales = group('sales', 'parallel', [member(A), member(B), member(C)], { connect: { ...group('x', 'parallel', []).connect, maxRingingDuration: 20 } });
const SNAPSHOT = snapshotOf([sales], [dialFlow('agents', { dialGroup: 'sales' }, { numbers: [C, A] })]);

function service(answer: (req: DialRequest) => Promise<string[]>, rules: { current: RulesSnapshot | null } = { current: SNAPSHOT }) {
  const asked: Array<['answer' | 'preview', DialRequest]> = [];
  const answerDial = answerDialWith({
    rules,
    answer: (req) => {
      asked.push(['answer', req]);
      return answer(req).then((numbers) => ({ numbers }));
    },
    preview: (req) => {
      asked.push(['preview', req]);
      return answer(req).then((numbers) => ({ numbers }));
    },
    random: seeded(1),
    budgetMs: 1500,
    busyTtlMs: 3_600_000,
    eventUrl: EVENT_URL,
  });
  return { answerDial, asked };
}
const elapsedMs = () => 0;

t.test('Dial Whom: the numbers Postgres answers, as comma-separated text, and a decision carrying them', async (t) => {
  const { answerDial, asked } = service(async (req) => req.candidates.slice(1));
  const result = await answerDial({ endpoint: 'dial-whom', flowSlug: 'agents', call: call(), at: AT, elapsedMs });
  t.same(result.answer, { statusCode: 200, contentType: 'text/plain', body: `${B},${C}` });
  t.match(result, { outcome: 'answered', reason: null, decision: { decidedBy: 'otherwise', action: { dialGroup: 'sales' }, numbers: [B, C] } });
  t.match(result.decision?.dial, { strategy: 'parallel', sticky: null }, 'the decision says how the group orders');
  t.match(asked, [['answer', { key: { callSid: 'b6cfaf0d5cbd4a5f8a4e9b7a1d2c3e4f', endpoint: 'dial-whom', flowSlug: 'agents' }, candidates: [A, B, C] }]]);
});

t.test('a simulation asks for a preview, from the snapshot it is given', async (t) => {
  const { answerDial, asked } = service(async (req) => req.candidates, { current: null });
  const result = await answerDial({ endpoint: 'dial-whom', flowSlug: 'agents', call: call(), at: AT, elapsedMs, dryRun: true, snapshot: SNAPSHOT });
  t.equal(result.answer.body, `${A},${B},${C}`);
  t.same(
    asked.map(([what]) => what),
    ['preview'],
  );
});

t.test("Connect: the group's settings, parallel ringing, and the dial-events URL", async (t) => {
  const { answerDial } = service(async (req) => req.candidates);
  const result = await answerDial({ endpoint: 'connect', flowSlug: 'agents', call: call(), at: AT, elapsedMs });
  t.match(JSON.parse(result.answer.body), {
    destination: { numbers: [A, B, C] },
    max_ringing_duration: 20,
    fetch_after_attempt: true,
    parallel_ringing: { activate: true, max_parallel_attempts: 5 },
    dial_passthru_event_url: EVENT_URL,
  });
});

t.test("dial state failing: the flow's onError numbers, minus those tried, and why", async (t) => {
  const { answerDial } = service(async () => {
    throw new Error('connection refused');
  });
  const result = await answerDial({ endpoint: 'dial-whom', flowSlug: 'agents', call: call({ DialWhomNumber: '09811100001' }), at: AT, elapsedMs });
  t.same(result.answer.body, C);
  t.match(result, {
    outcome: 'on-error',
    reason: 'dial state unavailable: connection refused',
    decision: { decidedBy: 'onError', action: { numbers: [C, A] }, error: 'dial state unavailable: connection refused', numbers: [C] },
  });
});

t.test('no answer within the budget: the onError numbers, in time', async (t) => {
  const { answerDial } = service(() => new Promise<string[]>(() => {}));
  const result = await answerDial({ endpoint: 'dial-whom', flowSlug: 'agents', call: call(), at: AT, elapsedMs: () => 1500 });
  t.match(result, { outcome: 'on-error', reason: /^no answer within the 0 ms left of the budget$/, decision: { numbers: [C, A] } });
});

t.test('refusals: rules not loaded, an unknown flow, no CallSid', async (t) => {
  const { answerDial, asked } = service(async () => [], { current: null });
  t.match(await answerDial({ endpoint: 'dial-whom', flowSlug: 'agents', call: call(), at: AT, elapsedMs }), {
    outcome: 'rejected',
    answer: { statusCode: 503 },
  });
  const loaded = service(async () => []);
  t.match(await loaded.answerDial({ endpoint: 'dial-whom', flowSlug: 'nope', call: call(), at: AT, elapsedMs }), {
    outcome: 'rejected',
    answer: { statusCode: 404 },
  });
  t.match(await loaded.answerDial({ endpoint: 'dial-whom', flowSlug: 'agents', call: call({ CallSid: '' }), at: AT, elapsedMs }), {
    outcome: 'rejected',
    answer: { statusCode: 400 },
  });
  t.same([...asked, ...loaded.asked], [], 'Postgres is not asked');
});

const MANY = Array.from({ length: 60 }, (_, i) => `+9198111${String(i).padStart(5, '0')}`);
const big = group(
  'big',
  'sequential',
  MANY.map((n, i) => member(n, { priority: i })),
);
const BIG = snapshotOf([big], [dialFlow('big', { dialGroup: 'big' }, { dialGroup: 'big' })]);

t.test('Connect with more than 50 numbers offered: the first 50 in order are answered, and the trace says it was cut', async (t) => {
  const { answerDial } = service(async (req) => req.candidates, { current: BIG });
  const result = await answerDial({ endpoint: 'connect', flowSlug: 'big', call: call(), at: AT, elapsedMs });
  t.same(JSON.parse(result.answer.body).destination.numbers, MANY.slice(0, 50));
  t.match(result, {
    outcome: 'answered',
    reason: null,
    decision: { decidedBy: 'otherwise', numbers: MANY.slice(0, 50), dial: { strategy: 'sequential', cut: 'first 50 of 60' } },
  });
  const few = await service(async (req) => req.candidates.slice(0, 50), { current: BIG }).answerDial({
    endpoint: 'connect',
    flowSlug: 'big',
    call: call(),
    at: AT,
    elapsedMs,
  });
  t.notOk('cut' in (few.decision?.dial ?? {}), 'exactly 50: nothing cut');
});

t.test('Dial Whom has no such cap: all 60 numbers, as Exotel states no limit for it', async (t) => {
  const { answerDial } = service(async (req) => req.candidates, { current: BIG });
  const result = await answerDial({ endpoint: 'dial-whom', flowSlug: 'big', call: call(), at: AT, elapsedMs });
  t.equal(result.answer.body, MANY.join(','));
  t.match(result, { outcome: 'answered', decision: { numbers: MANY } });
  t.notOk('cut' in (result.decision?.dial ?? {}));
});

t.test('dial state failing with an onError group of more than 50: its first 50 are answered, and the reason says so', async (t) => {
  const { answerDial } = service(
    async () => {
      throw new Error('connection refused');
    },
    { current: BIG },
  );
  const result = await answerDial({ endpoint: 'connect', flowSlug: 'big', call: call(), at: AT, elapsedMs });
  t.same(JSON.parse(result.answer.body).destination.numbers, MANY.slice(0, 50));
  t.match(result, {
    outcome: 'on-error',
    reason: 'dial state unavailable: connection refused; onError answered the first 50 of 60 numbers',
    decision: { decidedBy: 'onError', numbers: MANY.slice(0, 50) },
  });
});

t.test('a Connect answer invalid for another reason than Postgres says that reason, not "dial state unavailable"', async (t) => {
  // settings the admin API would refuse (ringing at most 60 s), as a snapshot from elsewhere might hold
  const odd = group('sales', 'sequential', [member(A), member(B)], { connect: { ...DEFAULT_CONNECT, maxRingingDuration: 999 } });
  const { answerDial } = service(async (req) => req.candidates, { current: snapshotOf([odd], [dialFlow('agents', { dialGroup: 'sales' }, { numbers: [C] })]) });
  const result = await answerDial({ endpoint: 'connect', flowSlug: 'agents', call: call(), at: AT, elapsedMs });
  t.match(result, { outcome: 'on-error', reason: /^connect answer invalid at \/max_ringing_duration: /, decision: { decidedBy: 'onError', numbers: [C] } });
  t.same(JSON.parse(result.answer.body).destination.numbers, [C], "onError's numbers, with the default settings");

  // onError rings the same group: nothing valid to answer; the reason says both, and no number is claimed
  const same = service(async (req) => req.candidates, { current: snapshotOf([odd], [dialFlow('agents', { dialGroup: 'sales' }, { dialGroup: 'sales' })]) });
  const none = await same.answerDial({ endpoint: 'connect', flowSlug: 'agents', call: call(), at: AT, elapsedMs });
  t.same(JSON.parse(none.answer.body).destination.numbers, []);
  t.match(none, {
    reason: /^connect answer invalid at \/max_ringing_duration: .*; onError not answered either: connect answer invalid at \/max_ringing_duration: /,
    decision: { numbers: [] },
  });
});
