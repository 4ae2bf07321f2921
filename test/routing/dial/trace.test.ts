/** The policy half of a dial decision's trace (src/routing/dial/trace.ts): strategy and sticky. */
import t from 'tap';
import { dialPolicy } from '../../../src/routing/dial/trace.js';
import { A, call, group, member } from './fixtures.js';

t.test("a group's strategy, and what sticky does for this caller", async (t) => {
  const sales = group('sales', 'round_robin', [member(A)], { sticky: { enabled: true, lookbackDays: 30 } });
  t.same(dialPolicy(sales, call()), { strategy: 'round_robin', sticky: 'last 30 days' });
  const daily = group('daily', 'sequential', [member(A)], { sticky: { enabled: true, lookbackDays: 1 } });
  t.equal(dialPolicy(daily, call()).sticky, 'last 1 day', 'one day, not "1 days"');
  t.equal(dialPolicy(sales, call({ CallFrom: 'anonymous' })).sticky, 'off: caller unknown');
  t.same(dialPolicy(group('seq', 'sequential', [member(A)]), call()), { strategy: 'sequential', sticky: null });
  t.same(dialPolicy(null, call()), { strategy: 'numbers', sticky: null });
});
