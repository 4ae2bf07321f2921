/**
 * What one Dial Whom / Connect request asks Postgres (src/routing/dial/request.ts): the attempt's
 * identity, the tried numbers, the sticky window, a completed connection, the busy cut-off; and
 * the numbers offered without Postgres.
 */
import t from 'tap';
import { attemptKey, connection, dialRequest, fallbackNumbers, stickyWindow, triedInRequest } from '../../../src/routing/dial/request.js';
import { busyExpiredAt } from '../../../src/routing/agents.js';
import { A, AT, B, C, CALLER, D, call, group, member, seeded, snapshotOf } from './fixtures.js';

const DAY = 86_400_000;
const key = { callSid: 'CA1', endpoint: 'dial-whom', flowSlug: 'agents' };
const opts = { busyTtlMs: 3_600_000, random: seeded(1) };

t.test("tried numbers: DialWhomNumber and every leg's number, once each, sorted", async (t) => {
  t.same(triedInRequest(call()), []);
  const c = call({ DialWhomNumber: '09811100003', 'Legs[0][Number]': '09811100001', 'Legs[1][Number]': '09811100003', 'Legs[2][Number]': 'not a number' });
  t.same(triedInRequest(c), [A, C]);
});

t.test('an attempt is what was tried and how the last dial ended', async (t) => {
  t.equal(attemptKey([], call()), '|', 'the first request');
  t.equal(attemptKey([A, C], call({ DialCallStatus: 'no-answer' })), `${A},${C}|no-answer`);
  t.equal(attemptKey([A], call({ DialCallStatus: 'No Answer' })), `${A}|no-answer`, 'the status as the parser normalises it');
});

t.test('sticky window: for sticky groups with a known caller, lookbackDays back', async (t) => {
  const sticky = group('s', 'sequential', [], { sticky: { enabled: true, lookbackDays: 7 } });
  t.same(stickyWindow(sticky, call(), AT), { caller: CALLER, since: new Date(AT.getTime() - 7 * DAY) });
  t.equal(stickyWindow(sticky, call({ CallFrom: 'anonymous' }), AT), null, 'no caller number');
  t.equal(stickyWindow({ ...sticky, sticky: { enabled: false, lookbackDays: 7 } }, call(), AT), null, 'disabled');
  t.equal(stickyWindow(group('s', 'sequential', []), call(), AT), null, 'not sticky');
  t.equal(stickyWindow(null, call(), AT), null, 'a list of numbers');
});

t.test('a completed dial connects the caller to the number dialed', async (t) => {
  t.same(connection(call({ DialCallStatus: 'completed', DialWhomNumber: '09811100002' })), { caller: CALLER, agent: B });
  t.equal(connection(call({ DialCallStatus: 'no-answer', DialWhomNumber: '09811100002' })), null, 'not answered');
  t.equal(connection(call({ DialCallStatus: 'completed' })), null, 'no agent number');
  t.equal(connection(call({ DialCallStatus: 'completed', DialWhomNumber: '09811100002', CallFrom: '' })), null, 'no caller number');
});

t.test('busy cut-off: an agent reported busy longer ago than the TTL, or than the longest call a group allows, counts as free', async (t) => {
  const sales = group('sales', 'sequential', [member(A)]);
  t.same(busyExpiredAt(null, AT, 3_600_000), new Date(AT.getTime() - 3_600_000), 'no snapshot: the TTL');
  t.same(busyExpiredAt(snapshotOf([sales]).dialGroups, AT, 3_600_000), new Date(AT.getTime() - 3_600_000), "Exotel's defaults (30 + 900 s): the TTL");
  const long = group('long', 'sequential', [member(B)], { connect: { ...sales.connect, maxRingingDuration: 45, maxConversationDuration: 4500 } });
  t.same(
    busyExpiredAt(snapshotOf([sales, long]).dialGroups, AT, 3_600_000),
    new Date(AT.getTime() - (45 + 4500 + 60) * 1000),
    'a group that allows 75-minute calls: its longest call and a minute',
  );
  t.same(busyExpiredAt(snapshotOf([sales]).dialGroups, AT, 600_000), new Date(AT.getTime() - (30 + 900 + 60) * 1000), 'a TTL shorter than a call');
});

t.test("a request for a dial group: the members on duty, the strategy's plan of every member, the round-robin group", async (t) => {
  const sales = group('sales', 'round_robin', [member(A), member(B, { schedule: 'weekend' }), member(C, { priority: 1 })], {
    sticky: { enabled: true, lookbackDays: 30 },
  });
  const snapshot = snapshotOf([sales, group('seq', 'sequential', [member(D)])]);
  const c = call({ DialWhomNumber: '09811100001', DialCallStatus: 'busy' });
  const { request, group: g } = dialRequest(snapshot, { dialGroup: 'sales' }, key, c, AT, opts);
  t.equal(g, sales);
  t.same(request, {
    key,
    attemptKey: `${A}|busy`,
    tried: [A],
    candidates: [A, C],
    plan: { base: [A, B, C], arrange: 'rotate' },
    rrGroup: 'sales',
    sticky: { caller: CALLER, since: new Date(AT.getTime() - 30 * DAY) },
    connected: null,
    at: AT,
    busyExpired: new Date(AT.getTime() - 3_600_000),
    extra: {
      tiers: null,
      reported: { agent: A, status: 'busy', group: 'sales', pacing: { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 300 } },
      tierGroups: ['sales'],
    },
  });
  t.equal(dialRequest(snapshot, { dialGroup: 'seq' }, key, call(), AT, opts).request.rrGroup, null, 'no rotation, no round-robin group');
  t.throws(() => dialRequest(snapshot, { dialGroup: 'gone' }, key, call(), AT, opts), /dial-group 'gone' is not loaded/);
});

t.test('a request for a list of numbers: offered as listed', async (t) => {
  const { request, group: g } = dialRequest(snapshotOf([]), { numbers: [C, A] }, key, call(), AT, opts);
  t.equal(g, null);
  t.same([request.candidates, request.plan, request.rrGroup, request.sticky], [[C, A], { base: [C, A], arrange: 'as_is' }, null, null]);
  t.throws(() => dialRequest(snapshotOf([]), { branch: 'A' }, key, call(), AT, opts), /needs dialGroup, dialGroups or numbers/);
});

t.test("without Postgres: the action's numbers in plain order, minus those the request says were tried", async (t) => {
  const sales = group('sales', 'round_robin', [member(A), member(B, { active: false }), member(C)]);
  const snapshot = snapshotOf([sales]);
  const c = call({ DialWhomNumber: '09811100001' });
  t.same(fallbackNumbers(snapshot, { dialGroup: 'sales' }, c, AT), { numbers: [C], group: sales });
  t.same(fallbackNumbers(snapshot, { dialGroup: 'gone' }, c, AT), { numbers: [], group: null });
  t.same(fallbackNumbers(snapshot, { numbers: [A, D] }, c, AT), { numbers: [D], group: null });
  t.same(fallbackNumbers(snapshot, { branch: 'B' }, c, AT), { numbers: [], group: null });
});
