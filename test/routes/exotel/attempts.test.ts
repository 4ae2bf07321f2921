import t from 'tap';
import { AttemptCounter } from '../../../src/routes/exotel/attempts.js';

t.test('counts 1, 2, 3 per key, each key on its own', async (t) => {
  const attempts = new AttemptCounter(100);
  t.same([attempts.next('passthru|f|a'), attempts.next('passthru|f|a'), attempts.next('passthru|f|a')], [1, 2, 3]);
  t.equal(attempts.next('passthru|g|a'), 1, 'another flow');
  t.equal(attempts.next('switch|f|a'), 1, 'another endpoint');
  t.equal(attempts.next('passthru|f|b'), 1, 'another call');
  t.equal(attempts.next('passthru|f|a'), 4);
});

t.test('a key is remembered for at least max / 2 newer keys, and keeps counting across generations', async (t) => {
  const attempts = new AttemptCounter(10);
  for (let round = 1; round <= 20; round++) {
    t.equal(attempts.next('busy-call'), round, `callback ${round} of the call`);
    for (let i = 0; i < 5; i++) attempts.next(`other-${round}-${i}`);
  }
});

t.test('bounded: never more than max keys held, the oldest forgotten', async (t) => {
  const attempts = new AttemptCounter(1000);
  attempts.next('first');
  let largest = 0;
  for (let i = 0; i < 10_000; i++) {
    attempts.next(`call-${i}`);
    largest = Math.max(largest, attempts.size);
  }
  t.ok(largest <= 1000, `at most ${largest} keys held`);
  t.ok(largest >= 500, 'the generations do fill up');
  t.equal(attempts.next('first'), 1, 'a key 10,000 keys old starts over');
});
