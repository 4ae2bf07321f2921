/** The policy half of a dial decision's trace (src/routing/dial/trace.ts): strategy, how it orders, sticky. */
import t from 'tap';
import { dialPolicy } from '../../../src/routing/dial/trace.js';
import { A, CALLER, call, group, member } from './fixtures.js';

t.test("a group's strategy and order, and what sticky does for this caller", async (t) => {
  const sales = group('sales', 'round_robin', [member(A)], { sticky: { enabled: true, lookbackDays: 30 } });
  t.same(dialPolicy(sales, call()), {
    strategy: 'round_robin',
    order: "members by priority, starting at the group's round-robin position, which moves once per call",
    sticky: `on: ${CALLER}'s last connected agent within 30 days, if any, goes first`,
  });
  t.equal(dialPolicy(sales, call({ CallFrom: 'anonymous' })).sticky, 'on, but the caller number is unknown: not applied');
  t.same(dialPolicy(group('seq', 'sequential', [member(A)]), call()), { strategy: 'sequential', order: 'members by priority', sticky: null });
  t.same(dialPolicy(null, call()), { strategy: 'numbers', order: "the flow's numbers, as listed", sticky: null });
});
