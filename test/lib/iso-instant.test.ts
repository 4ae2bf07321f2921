import t from 'tap';
import { isoInstant } from '../../src/lib/iso-instant.js';

t.test('an instant is written exactly as Date.prototype.toJSON writes it', async (t) => {
  const edges = [
    0,
    -1,
    1,
    Date.UTC(2024, 1, 29, 23, 59, 59, 999), // a leap day's last millisecond
    Date.UTC(1000, 0, 1), // the first year written by the fast path
    Date.UTC(1000, 0, 1) - 1, // the year before: toJSON itself
    Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999) + 1, // year 10000: +010000-…
    8.64e15, // the last instant a Date holds
    -8.64e15,
  ];
  for (const ms of edges) t.equal(isoInstant(new Date(ms)), new Date(ms).toJSON(), String(ms));
  t.equal(isoInstant(new Date(NaN)), null, 'an invalid date is null, as toJSON says');
  let differ = 0;
  for (let i = 0; i < 100_000; i++) {
    const d = new Date(Math.floor((Math.random() * 2 - 1) * (i % 2 ? 8.64e15 : 4e12)));
    if (isoInstant(d) !== d.toJSON()) differ++;
  }
  t.equal(differ, 0, 'none of 100,000 random instants is written otherwise');
});
