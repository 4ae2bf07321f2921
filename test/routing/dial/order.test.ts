/**
 * The order a dial group's members are offered in, as far as it needs no shared state
 * (src/routing/dial/order.ts): who is available now, priority order, and each strategy's plan.
 */
import t from 'tap';
import fc from 'fast-check';
import { availableMembers, byPriority, orderPlan, weightedOrder } from '../../../src/routing/dial/order.js';
import type { Strategy } from '../../../src/schemas/dial-group.js';
import { A, AT, B, C, D, member, seeded, snapshotOf } from './fixtures.js';

const { schedules } = snapshotOf([]);

t.test('available now: active members, and members with a shift only while it is open', async (t) => {
  const members = [
    member(A),
    member(B, { active: false }),
    member(C, { schedule: 'day' }),
    member(D, { schedule: 'weekend' }),
    member('+919811100005', { schedule: 'no-such-schedule' }),
  ];
  t.same(
    availableMembers({ members }, schedules, AT).map((m) => m.number),
    [A, C],
    'inactive, off shift and unknown shifts are left out',
  );
});

t.test('priority order: lower priority first, then by number', async (t) => {
  const members = [member(C, { priority: 1 }), member(B, { priority: 0 }), member(A, { priority: 1 })];
  t.same(
    [...members].sort(byPriority).map((m) => m.number),
    [B, A, C],
  );
});

t.test('priority order of E.164 numbers is the one the locale-aware comparator gave', async (t) => {
  const e164 = fc.stringMatching(/^\+[1-9][0-9]{6,14}$/);
  fc.assert(
    fc.property(fc.array(fc.record({ number: e164, priority: fc.integer({ min: 0, max: 3 }) }), { maxLength: 20 }), (ms) => {
      const before = [...ms].sort((a, b) => a.priority - b.priority || a.number.localeCompare(b.number));
      return JSON.stringify([...ms].sort(byPriority)) === JSON.stringify(before);
    }),
    { seed: 20261205, numRuns: 500 },
  );
  t.pass('the same order');
});

t.test("each strategy's plan", async (t) => {
  const members = [member(C, { priority: 2 }), member(A), member(B, { priority: 1, weight: 5 })];
  const plan = (strategy: Strategy, seed = 1) => orderPlan({ strategy }, members, seeded(seed));
  t.same(plan('sequential'), { base: [A, B, C], arrange: 'as_is' });
  t.same(plan('parallel'), { base: [A, B, C], arrange: 'as_is' });
  t.same(plan('round_robin'), { base: [A, B, C], arrange: 'rotate' }, "Postgres starts it at the group's position");
  t.same(plan('least_recent'), { base: [A, B, C], arrange: 'least_recent' }, 'Postgres puts the longest idle first');
  for (const strategy of ['random', 'weighted'] as const) {
    const drawn = plan(strategy, 7);
    t.equal(drawn.arrange, 'as_is', `${strategy}: drawn here`);
    t.same([...drawn.base].sort(), [A, B, C], `${strategy}: every member once`);
    t.same(plan(strategy, 7), drawn, `${strategy}: the same draw from the same random source`);
  }
});

t.test('weighted order: first picks follow the weights', async (t) => {
  const members = [member(A, { weight: 1 }), member(B, { weight: 3 })];
  const random = seeded(42);
  let bFirst = 0;
  for (let i = 0; i < 4000; i++) if (weightedOrder(members, random)[0]!.number === B) bFirst++;
  t.ok(bFirst > 2800 && bFirst < 3200, `B (weight 3 of 4) first ${bFirst} times in 4000`);
  t.same(weightedOrder([], random), []);
});
