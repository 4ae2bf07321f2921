/**
 * Agents as people in the pure part of dialing (issue 26): away agents are no candidates, tiers,
 * the attempt a re-fetch reports with its group's pacing, whose pacing a dial event applies, and
 * the trace of an answer. No database.
 */
import t from 'tap';
import { dialRequest, fallbackNumbers } from '../../../src/routing/dial/request.js';
import { eventPacing, agentEvent } from '../../../src/routing/dial/event.js';
import { dialTrace } from '../../../src/routing/dial/answer.js';
import type { RulesSnapshot, StoredDialGroup } from '../../../src/routing/snapshot.js';
import { DEFAULT_CONNECT } from '../../../src/exotel/connect.js';
import { A, AT, B, C, CALLER, D, call, group, member, seeded, snapshotOf } from './fixtures.js';

const key = { callSid: 'CA1', endpoint: 'dial-whom', flowSlug: 'agents' };
const opts = { busyTtlMs: 3_600_000, random: seeded(1) };
const away = (until: Date | null = null) => ({ status: 'away' as const, reason: 'lunch', until, setBy: 'api-key:x', setAt: AT });

const sales = group('sales', 'sequential', [member(A, { priority: 1 }), member(B, { priority: 2 }), member(C, { priority: 3 })], {
  wrapUpSeconds: 30,
  maxMissedOffers: 2,
  missedPauseSeconds: 600,
});
const support = group('support', 'round_robin', [member(C), member(D, { schedule: 'weekend' })], {
  wrapUpSeconds: 90,
  maxMissedOffers: 4,
  missedPauseSeconds: 60,
});
const withAway = (s: RulesSnapshot, entries: Array<[string, ReturnType<typeof away>]>): RulesSnapshot => ({ ...s, availability: new Map(entries) });

t.test('an away agent is no candidate, with the reason; an away whose until has passed is back', async (t) => {
  const snapshot = withAway(snapshotOf([sales]), [
    [B, away()],
    [C, away(new Date(AT.getTime() - 1))],
  ]);
  const { request, skipped } = dialRequest(snapshot, { dialGroup: 'sales' }, key, call(), AT, opts);
  t.same(request.candidates, [A, C]);
  t.same(request.plan.base, [A, B, C], 'but in the order fixed now, so that the call offers them once back');
  t.same(skipped, [{ number: B, group: 'sales', why: 'away' }]);
  t.same(request.extra, { tiers: null, reported: null, tierGroups: ['sales'] }, 'one group: no tiers, its group named');
  t.same(fallbackNumbers(snapshot, { dialGroup: 'sales' }, call(), AT).numbers, [A, C], 'nor offered without Postgres');
});

t.test('tiers: each group planned on its own, in order; a number in two tiers belongs to the first', async (t) => {
  const snapshot = withAway(snapshotOf([sales, support]), [[A, away()]]);
  const { request, skipped, groups } = dialRequest(snapshot, { dialGroups: ['sales', 'support'] }, key, call(), AT, opts);
  t.same(
    groups.map((g) => g.slug),
    ['sales', 'support'],
  );
  t.same(request.candidates, [B, C], 'D is off shift (weekend), A away, C counted once');
  t.same(request.plan, { base: [A, B, C, D], arrange: 'as_is' }, 'the order holds them all, each number once');
  t.same(
    request.extra?.tiers,
    [
      { group: 'sales', end: 3, arrange: 'as_is', rrGroup: null, stickySince: null },
      { group: 'support', end: 4, arrange: 'rotate', rrGroup: 'support', stickySince: null },
    ],
    'support rotates on its own position',
  );
  t.equal(request.rrGroup, null);
  t.same(skipped, [
    { number: A, group: 'sales', why: 'away' },
    { number: D, group: 'support', why: 'off shift' },
  ]);
  t.same(fallbackNumbers(snapshot, { dialGroups: ['sales', 'support'] }, call(), AT).numbers, [B, C]);
  t.throws(() => dialRequest(snapshot, { dialGroups: ['sales', 'gone'] }, key, call(), AT, opts), /dial-group 'gone' is not loaded/);
});

t.test("tiers: each tier carries its own group's sticky window; the request's sticky holds the caller and the widest", async (t) => {
  const DAY = 86_400_000;
  const tiered = (salesSticky: StoredDialGroup['sticky'], supportSticky: StoredDialGroup['sticky'], c = call()) =>
    dialRequest(
      snapshotOf([
        { ...sales, sticky: salesSticky },
        { ...support, sticky: supportSticky },
      ]),
      { dialGroups: ['sales', 'support'] },
      key,
      c,
      AT,
      opts,
    ).request;
  const offOn = tiered(null, { enabled: true, lookbackDays: 30 });
  t.same(
    offOn.extra?.tiers?.map((tier) => tier.stickySince),
    [null, new Date(AT.getTime() - 30 * DAY)],
    'sales not sticky, support 30 days',
  );
  t.same(offOn.sticky, { caller: CALLER, since: new Date(AT.getTime() - 30 * DAY) }, 'the caller, though the first tier is not sticky');
  const onOff = tiered({ enabled: true, lookbackDays: 7 }, { enabled: false, lookbackDays: 90 });
  t.same(
    onOff.extra?.tiers?.map((tier) => tier.stickySince),
    [new Date(AT.getTime() - 7 * DAY), null],
    "support's sticky off: no window, not sales' either",
  );
  const both = tiered({ enabled: true, lookbackDays: 7 }, { enabled: true, lookbackDays: 60 });
  t.same(
    both.extra?.tiers?.map((tier) => tier.stickySince),
    [new Date(AT.getTime() - 7 * DAY), new Date(AT.getTime() - 60 * DAY)],
    'each its own lookbackDays',
  );
  t.same(both.sticky?.since, new Date(AT.getTime() - 60 * DAY), 'the widest window');
  const anonymous = tiered({ enabled: true, lookbackDays: 7 }, { enabled: true, lookbackDays: 60 }, call({ CallFrom: 'anonymous' }));
  t.same([anonymous.sticky, anonymous.extra?.tiers?.map((tier) => tier.stickySince)], [null, [null, null]], 'caller unknown: no tier is sticky');
  const single = dialRequest(snapshotOf([{ ...sales, sticky: { enabled: true, lookbackDays: 7 } }]), { dialGroup: 'sales' }, key, call(), AT, opts).request;
  t.same([single.sticky, single.extra?.tiers], [{ caller: CALLER, since: new Date(AT.getTime() - 7 * DAY) }, null], 'one group: as before');
});

t.test('a number in two tiers is in the first whose membership is on duty (it may be away), else in the first that lists it', async (t) => {
  const night = group('night', 'sequential', [member(A), member(C, { schedule: 'weekend' })]);
  const day = group('day', 'round_robin', [member(B), member(C)]);
  const { request } = dialRequest(snapshotOf([night, day]), { dialGroups: ['night', 'day'] }, key, call(), AT, opts);
  t.same(request.candidates, [A, B, C]);
  t.same(request.plan.base, [A, B, C], 'C is off shift in night, on duty in day: offered as day');
  t.same(
    request.extra?.tiers?.map((tier) => tier.end),
    [1, 3],
  );
  const away2 = withAway(snapshotOf([night, day]), [[C, away()]]);
  const held = dialRequest(away2, { dialGroups: ['night', 'day'] }, key, call(), AT, opts).request;
  t.same(held.candidates, [A, B]);
  t.same(held.plan.base, [A, B, C], 'C away: in day, where its membership is on duty');
  const offShift = withAway(snapshotOf([night, group('day', 'round_robin', [member(B), member(C, { active: false })])]), [[C, away()]]);
  const nowhere = dialRequest(offShift, { dialGroups: ['night', 'day'] }, key, call(), AT, opts).request;
  t.same(nowhere.candidates, [A, B]);
  t.same(nowhere.plan.base, [A, C, B], 'on duty in neither: in night, the first that lists it');
  t.same(
    nowhere.extra?.tiers?.map((tier) => tier.end),
    [2, 3],
  );
});

t.test('the attempt a re-fetch reports, with the pacing of the tier the agent is in', async (t) => {
  const reported = (query: Record<string, string>, snapshot = snapshotOf([sales, support])) =>
    dialRequest(snapshot, { dialGroups: ['sales', 'support'] }, key, call(query), AT, opts).request.extra?.reported;
  t.same(reported({ DialWhomNumber: '09811100003', DialCallStatus: 'no-answer' }), {
    agent: C,
    status: 'no-answer',
    group: 'sales',
    pacing: { wrapUpSeconds: 30, maxMissedOffers: 2, missedPauseSeconds: 600 },
  });
  t.same(reported({ DialWhomNumber: '09811100004', DialCallStatus: 'completed' }), {
    agent: D,
    status: 'completed',
    group: 'support',
    pacing: { wrapUpSeconds: 90, maxMissedOffers: 4, missedPauseSeconds: 60 },
  });
  const offInSales = group('sales', 'sequential', [member(A), member(C, { active: false })], {
    wrapUpSeconds: 30,
    maxMissedOffers: 2,
    missedPauseSeconds: 600,
  });
  t.match(
    reported({ DialWhomNumber: '09811100003', DialCallStatus: 'completed' }, snapshotOf([offInSales, support])),
    { group: 'support', pacing: { wrapUpSeconds: 90 } },
    'C switched off in sales is offered as support: support paces it',
  );
  t.match(reported({ DialWhomNumber: '09899999999', DialCallStatus: 'busy' }), { group: null, pacing: { maxMissedOffers: 0 } }, 'no group: no pacing');
  t.equal(reported({ DialWhomNumber: '09811100001', DialCallStatus: 'canceled' }), null, 'the caller hung up: nothing about the agent');
  t.equal(reported({ DialCallStatus: 'no-answer' }), null, 'no agent named');
  t.equal(reported({ DialWhomNumber: '09811100001' }), null, 'the first request reports nothing');
  const single = dialRequest(snapshotOf([sales]), { dialGroup: 'sales' }, key, call({ DialWhomNumber: '09811100002', DialCallStatus: 'busy' }), AT, opts);
  t.match(single.request.extra?.reported, { group: 'sales', pacing: { maxMissedOffers: 2 } }, 'one group');
  const listed = (snapshot: ReturnType<typeof snapshotOf>, number: string) =>
    dialRequest(snapshot, { numbers: [number] }, key, call({ DialWhomNumber: number, DialCallStatus: 'busy' }), AT, opts).request.extra?.reported?.group ??
    null;
  t.equal(listed(snapshotOf([sales]), A), 'sales', "a list of numbers: the agent's only group, as its dial events name it");
  t.equal(listed(snapshotOf([sales, support]), C), null, 'a list of numbers, an agent in two groups: none');
});

t.test("a dial event: the group it names applies; else the strictest of the agent's groups; none for a stranger", async (t) => {
  const snapshot = snapshotOf([sales, support]);
  t.same(eventPacing(snapshot, C, 'support'), {
    member: true,
    group: 'support',
    ringSeconds: 35,
    earlySeconds: null,
    pacing: { wrapUpSeconds: 90, maxMissedOffers: 4, missedPauseSeconds: 60 },
  });
  t.same(
    eventPacing(snapshot, C, null),
    { member: true, group: null, ringSeconds: 35, earlySeconds: null, pacing: { wrapUpSeconds: 90, maxMissedOffers: 2, missedPauseSeconds: 600 } },
    'C in both: longest wrap-up and pause, fewest misses',
  );
  t.same(
    eventPacing(snapshot, A, 'support'),
    { member: true, group: 'sales', ringSeconds: 35, earlySeconds: null, pacing: { wrapUpSeconds: 30, maxMissedOffers: 2, missedPauseSeconds: 600 } },
    'a group the agent is not in is not believed',
  );
  t.match(eventPacing(snapshot, '+919899999999', 'sales'), { member: false, group: null, ringSeconds: null, pacing: { maxMissedOffers: 0 } });
  const ringAll = group('ring', 'parallel', [member(A), member(B)], { connect: { ...DEFAULT_CONNECT, maxRingingDuration: 40 } });
  t.match(
    eventPacing(snapshotOf([ringAll, support]), A, 'ring'),
    { group: 'ring', ringSeconds: 45, earlySeconds: 35 },
    'a parallel group: legs shorter than its ringing were cut short',
  );
  t.match(
    eventPacing(snapshotOf([ringAll, sales]), A, null),
    { group: null, earlySeconds: null },
    'no group named (a list of numbers rings one by one): not a parallel ring',
  );
  t.match(
    eventPacing(snapshotOf([group('ring', 'parallel', [member(B)]), sales]), A, 'ring'),
    { group: 'sales', earlySeconds: 25 },
    "the ring's group named: parallel, for an agent of another group too",
  );
  t.match(
    eventPacing(snapshotOf([ringAll, sales]), B, 'sales'),
    { group: 'sales', earlySeconds: null },
    "a group that is not parallel named: one at a time, whatever the agent's group",
  );
  const oneAtATime = group('ring', 'parallel', [member(A)], { connect: { ...DEFAULT_CONNECT, maxParallelAttempts: 1 } });
  t.match(eventPacing(snapshotOf([oneAtATime]), A, 'ring'), { earlySeconds: null }, 'maxParallelAttempts 1: one at a time');
  t.same(agentEvent({ status: 'free', eventType: 'Terminal' }), { busy: false, dialed: false, answered: false, ended: true });
  t.same(agentEvent({ status: 'busy', eventType: 'Answered' }), { busy: true, dialed: false, answered: true, ended: false });
});

t.test("the trace: the tier offered, the snapshot's reasons and Postgres' beside them", async (t) => {
  const { groups, groupOf } = dialRequest(snapshotOf([sales, support]), { dialGroups: ['sales', 'support'] }, key, call(), AT, opts);
  const trace = dialTrace(groups, groupOf, [{ number: A, group: 'sales', why: 'away' }], { numbers: [D], tier: 1, skipped: { [B]: 'busy', [C]: 'wrap-up' } });
  t.same(trace, {
    tier: 'support',
    tierIndex: 1,
    skipped: [
      { number: A, group: 'sales', why: 'away' },
      { number: B, group: 'sales', why: 'busy' },
      { number: C, group: 'sales', why: 'wrap-up' },
    ],
  });
  const offInSales = group('sales', 'sequential', [member(A), member(C, { active: false })]);
  const two = dialRequest(snapshotOf([offInSales, support]), { dialGroups: ['sales', 'support'] }, key, call(), AT, opts);
  t.same(
    dialTrace(two.groups, two.groupOf, two.skipped, { numbers: [D], tier: 1, skipped: { [C]: 'wrap-up' } }).skipped.filter((s) => s.number === C),
    [
      { number: C, group: 'sales', why: 'inactive' },
      { number: C, group: 'support', why: 'wrap-up' },
    ],
    "C switched off in sales, wrapping up after a call: the reason Postgres gives is support's",
  );
  t.same(
    dialTrace([], () => null, [], { numbers: [A], repeat: true }),
    { tier: null, tierIndex: null, skipped: [], repeat: true },
    'a repeated poll',
  );
});
