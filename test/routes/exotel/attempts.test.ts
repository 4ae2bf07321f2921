import t from 'tap';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
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

t.test('keys leave no objects on the heap: 100,000 calls counted, the heap no larger', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const attempts = new AttemptCounter(100_000);
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 100_000; i++) attempts.next(`passthru|inbound|${i.toString(16).padStart(32, '0')}`);
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  t.ok(grown < 2 ** 20, `heap grew ${(grown / 2 ** 20).toFixed(2)} MB (two Maps of key strings: ~24 MB)`);
  t.equal(attempts.next(`passthru|inbound|${(99_999).toString(16).padStart(32, '0')}`), 2, 'and the last call is still counted');
});

t.test('many keys: each counted on its own (no two of 200,000 share a count)', async (t) => {
  const attempts = new AttemptCounter(400_000);
  let firsts = 0;
  for (let i = 0; i < 200_000; i++) if (attempts.next(`dial-whom|agents|${i}`) === 1) firsts++;
  t.equal(firsts, 200_000);
  let seconds = 0;
  for (let i = 0; i < 200_000; i++) if (attempts.next(`dial-whom|agents|${i}`) === 2) seconds++;
  t.equal(seconds, 200_000);
});
