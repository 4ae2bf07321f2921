/** What a dial decision's trace says (src/routing/dial/trace.ts): strategy, who was skipped and why, sticky, who was offered. */
import t from 'tap';
import { dialTrace } from '../../../src/routing/dial/trace.js';
import { A, AT, B, C, CALLER, D, call, group, member, snapshotOf } from './fixtures.js';

t.test("a group: inactive, off shift (with the shift's reason), tried, and busy members are named with why", async (t) => {
  const sales = group(
    'sales',
    'round_robin',
    [
      member(A),
      member(B, { active: false }),
      member(C, { schedule: 'weekend' }),
      member(D, { schedule: 'day' }),
      member('+919811100005'),
      member('+919811100006', { schedule: 'gone' }),
    ],
    { sticky: { enabled: true, lookbackDays: 30 } },
  );
  const trace = dialTrace(snapshotOf([sales]), { dialGroup: 'sales' }, call({ DialWhomNumber: '09811100001', DialCallStatus: 'no-answer' }), AT, [D]);
  t.same(trace, {
    group: 'sales',
    strategy: 'round_robin',
    order: "members by priority, starting at the group's round-robin position, which moves once per call",
    sticky: `on: ${CALLER}'s last connected agent within 30 days, if any, goes first`,
    skipped: [
      { number: A, why: 'tried in this call (DialWhomNumber or Legs)' },
      { number: B, why: 'inactive (switched off in the group)' },
      { number: C, why: 'off shift: weekend is closed at mon 2026-01-05 12:00 Asia/Kolkata: outside weekly windows' },
      { number: '+919811100005', why: "busy (a dial event reported the agent on a call), or not in the order fixed at the call's first request" },
      { number: '+919811100006', why: "off shift: schedule 'gone' is not loaded" },
    ],
    offered: [D],
  });
});

t.test('sticky off, an unknown caller, a list of numbers, and the fallback without dial state', async (t) => {
  const snapshot = snapshotOf([
    group('seq', 'sequential', [member(A), member(B)]),
    group('st', 'weighted', [member(A)], { sticky: { enabled: true, lookbackDays: 7 } }),
  ]);
  t.match(dialTrace(snapshot, { dialGroup: 'seq' }, call(), AT, [A, B]), { strategy: 'sequential', order: 'members by priority', sticky: null, skipped: [] });
  t.match(dialTrace(snapshot, { dialGroup: 'st' }, call({ CallFrom: 'anonymous' }), AT, [A]), { sticky: 'on, but the caller number is unknown: not applied' });
  t.same(dialTrace(snapshot, { numbers: [C, A] }, call({ DialWhomNumber: '09811100003' }), AT, [A]), {
    group: null,
    strategy: 'numbers',
    order: "the flow's numbers, as listed",
    sticky: null,
    skipped: [{ number: C, why: 'tried in this call (DialWhomNumber or Legs)' }],
    offered: [A],
  });
  t.match(dialTrace(snapshot, { dialGroup: 'seq' }, call(), AT, [A], { fallback: true }), {
    order: 'members by priority; without dial state: plain priority order, busy agents not known',
    skipped: [{ number: B, why: 'not offered' }],
  });
});
