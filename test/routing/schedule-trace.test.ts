/**
 * What a callback's trace says about a schedule (openAt): the same open/closed and reason as the
 * status endpoint (scheduleStatus) at every instant, and the instant on the schedule's own clock.
 */
import t from 'tap';
import { DateTime } from 'luxon';
import { openAt, scheduleStatus } from '../../src/routing/schedule.js';
import type { ScheduleRules } from '../../src/schemas/schedule.js';

const WORK_DAYS = ['mon', 'tue', 'wed', 'thu', 'fri'] as const;
const CASES: Array<[string, ScheduleRules]> = [
  [
    'office hours with a holiday and special hours',
    {
      timezone: 'Asia/Kolkata',
      weekly: [...WORK_DAYS.map((day) => ({ day, open: '09:00', close: '18:00' })), { day: 'sat', open: '22:00', close: '06:00' }],
      exceptions: [
        { date: '2026-12-25', closed: true },
        { date: '2026-12-31', open: '09:00', close: '13:00' },
      ],
    },
  ],
  [
    'London across the end of summer time',
    {
      timezone: 'Europe/London',
      weekly: [
        { day: 'sun', open: '00:30', close: '03:00' },
        { day: 'sat', open: '20:00', close: '02:00' },
      ],
      exceptions: [{ date: '2026-10-26', closed: true }],
    },
  ],
  ['no weekly windows', { timezone: 'America/New_York', weekly: [], exceptions: [{ date: '2026-12-24', open: '10:00', close: '12:00' }] }],
];

t.test('open and reason agree with the status endpoint at every instant swept', async (t) => {
  for (const [what, rules] of CASES) {
    const start = what.startsWith('London') ? Date.parse('2026-10-20T00:00:00Z') : Date.parse('2026-12-20T00:00:00Z');
    let disagreements = 0;
    let checked = 0;
    for (let ms = start; ms < start + 14 * 86_400_000; ms += 17 * 60_000) {
      const at = new Date(ms);
      const status = scheduleStatus(rules, at);
      const got = openAt(rules, at);
      checked++;
      if (got.open !== status.open || got.reason !== status.reason) {
        if (disagreements++ < 3) t.fail(`${what} at ${at.toISOString()}: ${JSON.stringify(got)} vs ${JSON.stringify(status)}`);
      }
      const local = DateTime.fromMillis(ms, { zone: rules.timezone });
      if (got.localTime !== `${local.toFormat('ccc').toLowerCase()} ${local.toFormat('yyyy-MM-dd HH:mm')} ${rules.timezone}`) {
        if (disagreements++ < 3) t.fail(`${what} at ${at.toISOString()}: local time ${got.localTime}`);
      }
    }
    t.equal(disagreements, 0, `${what}: ${checked} instants`);
  }
});

t.test('a holiday names its exception, at the local time a support lead reads', async (t) => {
  const [, rules] = CASES[0]!;
  t.same(openAt(rules, new Date('2026-12-25T05:30:00Z')), {
    open: false,
    reason: 'exception 2026-12-25: closed',
    localTime: 'fri 2026-12-25 11:00 Asia/Kolkata',
  });
  t.same(openAt(rules, new Date('2026-12-31T08:00:00Z')), {
    open: false,
    reason: 'exception 2026-12-31: outside special hours 09:00-13:00',
    localTime: 'thu 2026-12-31 13:30 Asia/Kolkata',
  });
  t.same(openAt(rules, new Date('2026-12-24T05:30:00Z')), {
    open: true,
    reason: 'weekly window thu 09:00-18:00',
    localTime: 'thu 2026-12-24 11:00 Asia/Kolkata',
  });
});

t.test('the local time follows a change of UTC offset to the second, asked in any order', async (t) => {
  // London leaves summer time at 01:00 UTC on 2026-10-25: 01:59:59 BST, then 01:00:00 GMT.
  const [, rules] = CASES[1]!;
  const local = (iso: string) => openAt(rules, new Date(iso)).localTime;
  t.equal(local('2026-10-25T00:59:59.999Z'), 'sun 2026-10-25 01:59 Europe/London');
  t.equal(local('2026-10-25T00:59:00.000Z'), 'sun 2026-10-25 01:59 Europe/London');
  t.equal(local('2026-10-25T01:00:00.000Z'), 'sun 2026-10-25 01:00 Europe/London');
  t.equal(local('2026-10-25T01:00:59.999Z'), 'sun 2026-10-25 01:00 Europe/London');
  t.equal(local('2026-10-25T00:59:30.000Z'), 'sun 2026-10-25 01:59 Europe/London');
  t.equal(local('2026-10-25T01:30:00.000Z'), 'sun 2026-10-25 01:30 Europe/London');
});
