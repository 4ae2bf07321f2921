import t from 'tap';
import { isOpen, scheduleStatus } from '../../src/routing/schedule.js';
import type { ScheduleRules, ScheduleStatus, Weekday, WeeklyWindow } from '../../src/schemas/schedule.js';

/** The assertions the helpers use; satisfied by the root `t` and by every subtest. */
type Test = Pick<typeof t, 'strictSame' | 'equal' | 'ok'>;

const KOLKATA = 'Asia/Kolkata';
const LONDON = 'Europe/London';
const NEW_YORK = 'America/New_York';
const ALL_DAYS: Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const WORK_DAYS: Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri'];

function rules(weekly: WeeklyWindow[], exceptions: ScheduleRules['exceptions'] = [], timezone: string = KOLKATA): ScheduleRules {
  return { timezone, weekly, exceptions };
}

function every(days: Weekday[], open: string, close: string): WeeklyWindow[] {
  return days.map((day) => ({ day, open, close }));
}

const open = (reason: string, nextChangeAt: string | null): ScheduleStatus => ({ open: true, reason, nextChangeAt });
const closed = (reason: string, nextChangeAt: string | null): ScheduleStatus => ({ open: false, reason, nextChangeAt });

/** Asserts the full status at `iso` and that isOpen agrees with it. */
function check(t: Test, r: ScheduleRules, iso: string, expected: ScheduleStatus, what?: string): void {
  const label = what === undefined ? iso : `${what} (${iso})`;
  t.strictSame(scheduleStatus(r, new Date(iso)), expected, label);
  t.equal(isOpen(r, new Date(iso)), expected.open, `isOpen agrees: ${label}`);
}

// 2026-01-05 is a Monday. Kolkata is UTC+05:30 all year.

t.test('plain weekday window mon 09:00-18:00', async (t) => {
  const r = rules([{ day: 'mon', open: '09:00', close: '18:00' }]);
  const reason = 'weekly window mon 09:00-18:00';
  check(t, r, '2026-01-04T23:00:00+05:30', closed('outside weekly windows', '2026-01-05T09:00:00+05:30'), 'Sunday night before: closed, opens Monday 09:00');
  check(t, r, '2026-01-05T08:59:59+05:30', closed('outside weekly windows', '2026-01-05T09:00:00+05:30'), 'one second before open: closed');
  check(t, r, '2026-01-05T09:00:00+05:30', open(reason, '2026-01-05T18:00:00+05:30'), 'exactly at open: open');
  check(t, r, '2026-01-05T12:34:56.789+05:30', open(reason, '2026-01-05T18:00:00+05:30'), 'inside with seconds and ms: open');
  check(t, r, '2026-01-05T17:59:59.999+05:30', open(reason, '2026-01-05T18:00:00+05:30'), 'last millisecond before close: open');
  check(t, r, '2026-01-05T18:00:00+05:30', closed('outside weekly windows', '2026-01-12T09:00:00+05:30'), 'exactly at close: closed, next Monday');
  check(t, r, '2026-01-05T23:59:00+05:30', closed('outside weekly windows', '2026-01-12T09:00:00+05:30'), 'after close: closed');
  check(t, r, '2026-01-07T12:00:00+05:30', closed('outside weekly windows', '2026-01-12T09:00:00+05:30'), 'another weekday: closed');
});

t.test('the same window on every working day; weekend is closed', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'));
  check(t, r, '2026-01-09T17:00:00+05:30', open('weekly window fri 09:00-18:00', '2026-01-09T18:00:00+05:30'), 'Friday afternoon: open');
  check(t, r, '2026-01-09T18:00:00+05:30', closed('outside weekly windows', '2026-01-12T09:00:00+05:30'), 'Friday close: next change is Monday open');
  check(t, r, '2026-01-10T12:00:00+05:30', closed('outside weekly windows', '2026-01-12T09:00:00+05:30'), 'Saturday: closed');
});

t.test('weekly windows need not be listed in day or time order', async (t) => {
  const r = rules([
    { day: 'wed', open: '14:00', close: '18:00' },
    { day: 'mon', open: '09:00', close: '10:00' },
    { day: 'wed', open: '09:00', close: '12:00' },
  ]);
  check(t, r, '2026-01-07T08:00:00+05:30', closed('outside weekly windows', '2026-01-07T09:00:00+05:30'), 'Wednesday morning: earliest window opens first');
  check(
    t,
    r,
    '2026-01-07T12:00:00+05:30',
    closed('outside weekly windows', '2026-01-07T14:00:00+05:30'),
    'Wednesday lunch: next is the later-listed-earlier window',
  );
  check(t, r, '2026-01-07T18:00:00+05:30', closed('outside weekly windows', '2026-01-12T09:00:00+05:30'), 'after Wednesday: next is Monday');
});

t.test('several windows in one day: closed in the gap between them', async (t) => {
  const r = rules([
    { day: 'mon', open: '09:00', close: '12:00' },
    { day: 'mon', open: '14:00', close: '18:00' },
  ]);
  check(t, r, '2026-01-05T10:00:00+05:30', open('weekly window mon 09:00-12:00', '2026-01-05T12:00:00+05:30'), 'morning window: open until 12:00');
  check(t, r, '2026-01-05T12:00:00+05:30', closed('outside weekly windows', '2026-01-05T14:00:00+05:30'), 'at first close: closed until 14:00');
  check(t, r, '2026-01-05T13:00:00+05:30', closed('outside weekly windows', '2026-01-05T14:00:00+05:30'), 'in the gap: closed');
  check(t, r, '2026-01-05T14:00:00+05:30', open('weekly window mon 14:00-18:00', '2026-01-05T18:00:00+05:30'), 'second window: open, reason names it');
});

t.test('touching windows are one span: no change at the seam', async (t) => {
  const r = rules([
    { day: 'mon', open: '09:00', close: '13:00' },
    { day: 'mon', open: '13:00', close: '18:00' },
  ]);
  check(t, r, '2026-01-05T08:00:00+05:30', closed('outside weekly windows', '2026-01-05T09:00:00+05:30'), 'before: opens at 09:00');
  check(t, r, '2026-01-05T10:00:00+05:30', open('weekly window mon 09:00-13:00', '2026-01-05T18:00:00+05:30'), 'first half: nextChangeAt skips the 13:00 seam');
  check(t, r, '2026-01-05T12:59:59.999+05:30', open('weekly window mon 09:00-13:00', '2026-01-05T18:00:00+05:30'), 'just before the seam: open');
  check(
    t,
    r,
    '2026-01-05T13:00:00+05:30',
    open('weekly window mon 13:00-18:00', '2026-01-05T18:00:00+05:30'),
    'at the seam: still open, reason is the window that contains it',
  );
});

t.test('overlapping windows are a union; reason is the earliest-starting containing window', async (t) => {
  const r = rules([
    { day: 'mon', open: '12:00', close: '18:00' },
    { day: 'mon', open: '09:00', close: '14:00' },
    { day: 'mon', open: '10:00', close: '11:00' },
  ]);
  check(
    t,
    r,
    '2026-01-05T10:30:00+05:30',
    open('weekly window mon 09:00-14:00', '2026-01-05T18:00:00+05:30'),
    'inside three windows: open until the union ends',
  );
  check(t, r, '2026-01-05T13:00:00+05:30', open('weekly window mon 09:00-14:00', '2026-01-05T18:00:00+05:30'), 'overlap of two: earliest start explains it');
  check(t, r, '2026-01-05T15:00:00+05:30', open('weekly window mon 12:00-18:00', '2026-01-05T18:00:00+05:30'), 'only the later window: that one');
  check(t, r, '2026-01-05T18:00:00+05:30', closed('outside weekly windows', '2026-01-12T09:00:00+05:30'), 'after the union: closed');
});

t.test('duplicate identical windows behave like one', async (t) => {
  const r = rules([
    { day: 'mon', open: '09:00', close: '18:00' },
    { day: 'mon', open: '09:00', close: '18:00' },
  ]);
  check(t, r, '2026-01-05T09:00:00+05:30', open('weekly window mon 09:00-18:00', '2026-01-05T18:00:00+05:30'));
  check(t, r, '2026-01-05T18:00:00+05:30', closed('outside weekly windows', '2026-01-12T09:00:00+05:30'));
});

t.test('midnight span mon 22:00-02:00 is open into Tuesday', async (t) => {
  const r = rules([{ day: 'mon', open: '22:00', close: '02:00' }]);
  const reason = 'weekly window mon 22:00-02:00';
  check(t, r, '2026-01-05T21:59:00+05:30', closed('outside weekly windows', '2026-01-05T22:00:00+05:30'), 'Monday before 22:00: closed');
  check(t, r, '2026-01-05T22:00:00+05:30', open(reason, '2026-01-06T02:00:00+05:30'), 'Monday 22:00: open until Tuesday 02:00');
  check(t, r, '2026-01-05T23:59:59.999+05:30', open(reason, '2026-01-06T02:00:00+05:30'), 'just before midnight: open');
  check(t, r, '2026-01-06T00:00:00+05:30', open(reason, '2026-01-06T02:00:00+05:30'), 'Tuesday midnight: still open, no change at midnight');
  check(t, r, '2026-01-06T01:00:00+05:30', open(reason, '2026-01-06T02:00:00+05:30'), 'Tuesday 01:00: open, reason is the Monday window');
  check(t, r, '2026-01-06T02:00:00+05:30', closed('outside weekly windows', '2026-01-12T22:00:00+05:30'), 'Tuesday 02:00: closed');
  check(t, r, '2026-01-06T22:30:00+05:30', closed('outside weekly windows', '2026-01-12T22:00:00+05:30'), 'Tuesday night: the span belongs to Monday only');
});

t.test('Sunday night span runs into Monday across the week wrap', async (t) => {
  const r = rules([
    { day: 'sun', open: '20:00', close: '04:00' },
    { day: 'mon', open: '09:00', close: '18:00' },
  ]);
  check(t, r, '2026-01-03T23:00:00+05:30', closed('outside weekly windows', '2026-01-04T20:00:00+05:30'), 'Saturday night: opens Sunday 20:00');
  check(t, r, '2026-01-04T20:00:00+05:30', open('weekly window sun 20:00-04:00', '2026-01-05T04:00:00+05:30'), 'Sunday 20:00: open until Monday 04:00');
  check(t, r, '2026-01-05T03:00:00+05:30', open('weekly window sun 20:00-04:00', '2026-01-05T04:00:00+05:30'), 'Monday 03:00: open from Sunday');
  check(t, r, '2026-01-05T04:00:00+05:30', closed('outside weekly windows', '2026-01-05T09:00:00+05:30'), 'Monday 04:00: closed until Monday window');
  check(t, r, '2026-01-05T18:00:00+05:30', closed('outside weekly windows', '2026-01-11T20:00:00+05:30'), 'Monday evening: next is Sunday 20:00');
});

t.test('a midnight span touching the next day window is one span', async (t) => {
  const r = rules([
    { day: 'mon', open: '22:00', close: '02:00' },
    { day: 'tue', open: '02:00', close: '05:00' },
    { day: 'wed', open: '18:00', close: '24:00' },
    { day: 'thu', open: '00:00', close: '06:00' },
  ]);
  check(
    t,
    r,
    '2026-01-05T23:00:00+05:30',
    open('weekly window mon 22:00-02:00', '2026-01-06T05:00:00+05:30'),
    'Monday night: open until Tuesday 05:00, no change at 02:00',
  );
  check(t, r, '2026-01-06T02:00:00+05:30', open('weekly window tue 02:00-05:00', '2026-01-06T05:00:00+05:30'), 'Tuesday 02:00: open by the Tuesday window');
  check(t, r, '2026-01-07T20:00:00+05:30', open('weekly window wed 18:00-24:00', '2026-01-08T06:00:00+05:30'), '24:00 touching 00:00: no change at midnight');
  check(
    t,
    r,
    '2026-01-08T00:00:00+05:30',
    open('weekly window thu 00:00-06:00', '2026-01-08T06:00:00+05:30'),
    'Thursday midnight: open by the Thursday window',
  );
});

t.test('overlapping midnight span and next-day window: reason is the earlier start', async (t) => {
  const r = rules([
    { day: 'tue', open: '00:00', close: '08:00' },
    { day: 'mon', open: '22:00', close: '06:00' },
  ]);
  check(t, r, '2026-01-06T01:00:00+05:30', open('weekly window mon 22:00-06:00', '2026-01-06T08:00:00+05:30'));
  check(t, r, '2026-01-06T07:00:00+05:30', open('weekly window tue 00:00-08:00', '2026-01-06T08:00:00+05:30'));
});

t.test('close 24:00 is the end of the day', async (t) => {
  const r = rules([{ day: 'fri', open: '18:00', close: '24:00' }]);
  const reason = 'weekly window fri 18:00-24:00';
  check(t, r, '2026-01-09T18:00:00+05:30', open(reason, '2026-01-10T00:00:00+05:30'), 'Friday 18:00: open until midnight');
  check(t, r, '2026-01-09T23:59:59.999+05:30', open(reason, '2026-01-10T00:00:00+05:30'), 'last instant of Friday: open');
  check(t, r, '2026-01-10T00:00:00+05:30', closed('outside weekly windows', '2026-01-16T18:00:00+05:30'), 'Saturday 00:00: closed');
});

t.test('open == close is a 24-hour window from open', async (t) => {
  const r = rules([
    { day: 'wed', open: '00:00', close: '00:00' },
    { day: 'fri', open: '09:00', close: '09:00' },
  ]);
  check(t, r, '2026-01-06T23:59:00+05:30', closed('outside weekly windows', '2026-01-07T00:00:00+05:30'), 'Tuesday night: opens Wednesday 00:00');
  check(t, r, '2026-01-07T00:00:00+05:30', open('weekly window wed 00:00-00:00', '2026-01-08T00:00:00+05:30'), '00:00-00:00 is all of Wednesday');
  check(t, r, '2026-01-07T23:59:59+05:30', open('weekly window wed 00:00-00:00', '2026-01-08T00:00:00+05:30'), 'end of Wednesday: open');
  check(t, r, '2026-01-08T00:00:00+05:30', closed('outside weekly windows', '2026-01-09T09:00:00+05:30'), 'Thursday 00:00: closed');
  check(t, r, '2026-01-10T08:59:00+05:30', open('weekly window fri 09:00-09:00', '2026-01-10T09:00:00+05:30'), '09:00-09:00 Friday runs to Saturday 09:00');
  check(t, r, '2026-01-10T09:00:00+05:30', closed('outside weekly windows', '2026-01-14T00:00:00+05:30'), 'Saturday 09:00: closed');
});

t.test('always open: every day 00:00-00:00 or 00:00-24:00, nextChangeAt null', async (t) => {
  const a = rules(every(ALL_DAYS, '00:00', '00:00'));
  check(t, a, '2026-01-05T10:00:00+05:30', open('weekly window mon 00:00-00:00', null), '00:00-00:00 every day: open, never changes');
  check(t, a, '2026-01-05T00:00:00+05:30', open('weekly window mon 00:00-00:00', null), 'at a day seam: the new day window explains it');
  const b = rules(every(ALL_DAYS, '00:00', '24:00'));
  check(t, b, '2026-01-11T23:59:59+05:30', open('weekly window sun 00:00-24:00', null), '00:00-24:00 every day: open, never changes');
  const c = rules(every(ALL_DAYS, '00:00', '24:00'), [], LONDON);
  check(t, c, '2026-03-29T01:00:00Z', open('weekly window sun 00:00-24:00', null), 'always open across a DST change: no fake change');
  check(t, c, '2026-10-25T01:30:00Z', open('weekly window sun 00:00-24:00', null), 'always open in the repeated hour: no fake change');
});

t.test('empty schedule: closed, reason no weekly windows, nextChangeAt null', async (t) => {
  const r = rules([]);
  check(t, r, '2026-01-05T10:00:00+05:30', closed('no weekly windows', null));
  check(t, rules([], [], LONDON), '2026-03-29T01:30:00Z', closed('no weekly windows', null), 'in London at a DST change');
});

t.test('exception closed: holiday on a normal weekday', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'), [{ date: '2026-12-25', closed: true, note: 'Christmas' }]);
  check(t, r, '2026-12-24T17:00:00+05:30', open('weekly window thu 09:00-18:00', '2026-12-24T18:00:00+05:30'), 'day before: normal hours');
  check(
    t,
    r,
    '2026-12-24T19:00:00+05:30',
    closed('outside weekly windows', '2026-12-28T09:00:00+05:30'),
    'evening before: nextChangeAt jumps over the holiday and weekend',
  );
  check(
    t,
    r,
    '2026-12-25T10:00:00+05:30',
    closed('exception 2026-12-25: closed', '2026-12-28T09:00:00+05:30'),
    'holiday during normal hours: closed by the exception',
  );
  check(t, r, '2026-12-25T00:00:00+05:30', closed('exception 2026-12-25: closed', '2026-12-28T09:00:00+05:30'), 'holiday midnight: closed');
  check(t, r, '2027-01-01T10:00:00+05:30', open('weekly window fri 09:00-18:00', '2027-01-01T18:00:00+05:30'), 'a week later: normal again');
});

t.test('exception dates are local calendar dates in the schedule timezone', async (t) => {
  const r = rules(every(ALL_DAYS, '00:00', '24:00'), [{ date: '2026-12-25', closed: true }]);
  // 18:30Z on the 24th is midnight of the 25th in Kolkata.
  check(
    t,
    r,
    '2026-12-24T18:29:59Z',
    open('weekly window thu 00:00-24:00', '2026-12-25T00:00:00+05:30'),
    'last second of the 24th local: open, closes at local midnight',
  );
  check(
    t,
    r,
    '2026-12-24T18:30:00Z',
    closed('exception 2026-12-25: closed', '2026-12-26T00:00:00+05:30'),
    'local midnight of the 25th (still the 24th in UTC): closed',
  );
  check(t, r, '2026-12-25T18:29:00Z', closed('exception 2026-12-25: closed', '2026-12-26T00:00:00+05:30'), 'late on the 25th local: closed');
  check(t, r, '2026-12-25T18:30:00Z', open('weekly window sat 00:00-24:00', null), 'the 26th local: open for good');
});

t.test('several holidays in a row are jumped over', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'), [
    { date: '2026-12-31', closed: true },
    { date: '2027-01-01', closed: true },
    { date: '2027-01-04', closed: true },
  ]);
  check(t, r, '2026-12-30T18:00:00+05:30', closed('outside weekly windows', '2027-01-05T09:00:00+05:30'));
});

t.test('exception special hours replace the weekly windows on that date', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'), [{ date: '2026-12-31', open: '09:00', close: '13:00', note: 'New Year' }]);
  const special = 'exception 2026-12-31: special hours 09:00-13:00';
  const outside = 'exception 2026-12-31: outside special hours 09:00-13:00';
  check(t, r, '2026-12-30T17:00:00+05:30', open('weekly window wed 09:00-18:00', '2026-12-30T18:00:00+05:30'), 'day before: normal hours');
  check(t, r, '2026-12-31T08:00:00+05:30', closed(outside, '2026-12-31T09:00:00+05:30'), 'before special opening: closed, reason names the special hours');
  check(t, r, '2026-12-31T09:00:00+05:30', open(special, '2026-12-31T13:00:00+05:30'), 'at special opening: open');
  check(t, r, '2026-12-31T12:59:00+05:30', open(special, '2026-12-31T13:00:00+05:30'), 'inside special hours: open');
  check(
    t,
    r,
    '2026-12-31T13:00:00+05:30',
    closed(outside, '2027-01-01T09:00:00+05:30'),
    'at special close: closed although the weekly window would still be open',
  );
  check(t, r, '2026-12-31T15:00:00+05:30', closed(outside, '2027-01-01T09:00:00+05:30'), 'afternoon: closed; next is the normal Friday opening');
});

t.test('explicit closed:false special hours open a day that has no weekly windows', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'), [{ date: '2026-12-27', closed: false, open: '10:00', close: '14:00' }]);
  check(t, r, '2026-12-26T12:00:00+05:30', closed('outside weekly windows', '2026-12-27T10:00:00+05:30'), 'Saturday: next is the special Sunday opening');
  check(t, r, '2026-12-27T11:00:00+05:30', open('exception 2026-12-27: special hours 10:00-14:00', '2026-12-27T14:00:00+05:30'), 'Sunday special hours: open');
  check(
    t,
    r,
    '2026-12-27T14:00:00+05:30',
    closed('exception 2026-12-27: outside special hours 10:00-14:00', '2026-12-28T09:00:00+05:30'),
    'after special hours: closed until Monday',
  );
});

t.test('special hours work without any weekly windows', async (t) => {
  const r = rules([], [{ date: '2026-12-31', open: '09:00', close: '13:00' }]);
  check(t, r, '2026-12-30T10:00:00+05:30', closed('no weekly windows', '2026-12-31T09:00:00+05:30'), 'the day before: closed, opens for the special hours');
  check(t, r, '2026-12-31T10:00:00+05:30', open('exception 2026-12-31: special hours 09:00-13:00', '2026-12-31T13:00:00+05:30'), 'special hours: open');
  check(t, r, '2026-12-31T13:00:00+05:30', closed('exception 2026-12-31: outside special hours 09:00-13:00', null), 'after them: closed for good');
});

t.test('a closed exception on the date a previous night span spills into cuts it at midnight', async (t) => {
  const r = rules(every(ALL_DAYS, '22:00', '02:00'), [{ date: '2026-01-06', closed: true }]);
  check(t, r, '2026-01-05T22:00:00+05:30', open('weekly window mon 22:00-02:00', '2026-01-06T00:00:00+05:30'), 'Monday 22:00: open only until midnight');
  check(t, r, '2026-01-05T23:59:59.999+05:30', open('weekly window mon 22:00-02:00', '2026-01-06T00:00:00+05:30'), 'last instant before the holiday: open');
  check(
    t,
    r,
    '2026-01-06T00:00:00+05:30',
    closed('exception 2026-01-06: closed', '2026-01-07T22:00:00+05:30'),
    'holiday midnight: closed, the spill from Monday is cut',
  );
});

t.test('a closed date drops its own midnight span but not the span spilling out of the previous day into the next one', async (t) => {
  const r = rules(every(ALL_DAYS, '22:00', '02:00'), [{ date: '2026-01-06', closed: true }]);
  // Tuesday is closed: Monday's span ends at Tuesday 00:00, Tuesday's own 22:00-02:00 does not happen,
  // so Wednesday 00:00-02:00 is closed as well and the next opening is Wednesday 22:00.
  check(t, r, '2026-01-06T23:00:00+05:30', closed('exception 2026-01-06: closed', '2026-01-07T22:00:00+05:30'), 'Tuesday night: closed');
  check(
    t,
    r,
    '2026-01-07T01:00:00+05:30',
    closed('outside weekly windows', '2026-01-07T22:00:00+05:30'),
    'Wednesday 01:00: nothing spills from the closed Tuesday',
  );
  check(t, r, '2026-01-07T22:00:00+05:30', open('weekly window wed 22:00-02:00', '2026-01-08T02:00:00+05:30'), 'Wednesday night: back to normal');
});

t.test('special hours on the spill-over date replace the previous night span', async (t) => {
  const r = rules([{ day: 'mon', open: '22:00', close: '02:00' }], [{ date: '2026-01-06', open: '01:00', close: '03:00' }]);
  check(t, r, '2026-01-05T23:00:00+05:30', open('weekly window mon 22:00-02:00', '2026-01-06T00:00:00+05:30'), 'Monday night: open until midnight only');
  check(
    t,
    r,
    '2026-01-06T00:30:00+05:30',
    closed('exception 2026-01-06: outside special hours 01:00-03:00', '2026-01-06T01:00:00+05:30'),
    'Tuesday 00:30: the spill is cut, closed',
  );
  check(
    t,
    r,
    '2026-01-06T01:30:00+05:30',
    open('exception 2026-01-06: special hours 01:00-03:00', '2026-01-06T03:00:00+05:30'),
    'Tuesday 01:30: open by the special hours',
  );
  check(
    t,
    r,
    '2026-01-06T02:30:00+05:30',
    open('exception 2026-01-06: special hours 01:00-03:00', '2026-01-06T03:00:00+05:30'),
    'Tuesday 02:30: open past the weekly 02:00',
  );
  check(
    t,
    r,
    '2026-01-06T03:00:00+05:30',
    closed('exception 2026-01-06: outside special hours 01:00-03:00', '2026-01-12T22:00:00+05:30'),
    'Tuesday 03:00: closed',
  );
});

t.test('special hours from midnight join the previous night span without a change at midnight', async (t) => {
  const r = rules([{ day: 'mon', open: '22:00', close: '02:00' }], [{ date: '2026-01-06', open: '00:00', close: '03:00' }]);
  check(t, r, '2026-01-05T23:00:00+05:30', open('weekly window mon 22:00-02:00', '2026-01-06T03:00:00+05:30'));
  check(t, r, '2026-01-06T01:00:00+05:30', open('exception 2026-01-06: special hours 00:00-03:00', '2026-01-06T03:00:00+05:30'));
});

t.test('special hours spanning midnight spill into the next date', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'), [{ date: '2026-12-31', open: '20:00', close: '02:00' }]);
  const special = 'exception 2026-12-31: special hours 20:00-02:00';
  check(t, r, '2026-12-31T19:00:00+05:30', closed('exception 2026-12-31: outside special hours 20:00-02:00', '2026-12-31T20:00:00+05:30'), 'before: closed');
  check(t, r, '2026-12-31T23:00:00+05:30', open(special, '2027-01-01T02:00:00+05:30'), 'New Year eve: open until 02:00');
  check(t, r, '2027-01-01T01:00:00+05:30', open(special, '2027-01-01T02:00:00+05:30'), 'after midnight: still open by the exception');
  check(t, r, '2027-01-01T02:00:00+05:30', closed('outside weekly windows', '2027-01-01T09:00:00+05:30'), '02:00: closed until the normal Friday opening');
});

t.test('special hours spanning midnight into a date with its own exception stop at midnight', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'), [
    { date: '2026-12-31', open: '20:00', close: '02:00' },
    { date: '2027-01-01', closed: true },
  ]);
  check(t, r, '2026-12-31T23:00:00+05:30', open('exception 2026-12-31: special hours 20:00-02:00', '2027-01-01T00:00:00+05:30'), 'open only until midnight');
  check(
    t,
    r,
    '2027-01-01T01:00:00+05:30',
    closed('exception 2027-01-01: closed', '2027-01-04T09:00:00+05:30'),
    'the next date is governed by its own exception',
  );
});

t.test('special hours on consecutive dates chain across midnight', async (t) => {
  const r = rules(
    [],
    [
      { date: '2026-12-31', open: '20:00', close: '24:00' },
      { date: '2027-01-01', open: '00:00', close: '04:00' },
    ],
  );
  check(t, r, '2026-12-31T21:00:00+05:30', open('exception 2026-12-31: special hours 20:00-24:00', '2027-01-01T04:00:00+05:30'));
});

t.test('when two exceptions name the same date the first one wins', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'), [
    { date: '2026-12-31', open: '09:00', close: '13:00' },
    { date: '2026-12-31', closed: true },
  ]);
  check(t, r, '2026-12-31T10:00:00+05:30', open('exception 2026-12-31: special hours 09:00-13:00', '2026-12-31T13:00:00+05:30'));
});

t.test('Asia/Kolkata: instants are read at +05:30 and nextChangeAt carries +05:30', async (t) => {
  const r = rules([{ day: 'mon', open: '09:00', close: '18:00' }]);
  check(t, r, '2026-01-05T03:29:59Z', closed('outside weekly windows', '2026-01-05T09:00:00+05:30'), '03:29:59Z is 08:59:59 IST');
  check(t, r, '2026-01-05T03:30:00Z', open('weekly window mon 09:00-18:00', '2026-01-05T18:00:00+05:30'), '03:30Z is 09:00 IST');
  check(t, r, '2026-01-04T20:00:00Z', closed('outside weekly windows', '2026-01-05T09:00:00+05:30'), 'Sunday in UTC but 01:30 Monday in IST');
});

t.test('the same instant written with different offsets gives identical results', async (t) => {
  const cases: Array<{ r: ScheduleRules; spellings: string[] }> = [
    {
      r: rules([{ day: 'mon', open: '09:00', close: '18:00' }]),
      spellings: [
        '2026-01-05T09:30:00+05:30',
        '2026-01-05T04:00:00Z',
        '2026-01-04T23:00:00-05:00',
        '2026-01-05T13:00:00+09:00',
        '2026-01-05T04:00:00.000+00:00',
      ],
    },
    {
      r: rules([{ day: 'mon', open: '09:00', close: '18:00' }]),
      spellings: ['2026-01-05T18:00:00+05:30', '2026-01-05T12:30:00Z', '2026-01-05T07:30:00-05:00', '2026-01-06T01:30:00+13:00'],
    },
    {
      r: rules([{ day: 'sun', open: '01:00', close: '03:00' }], [], LONDON),
      spellings: ['2026-10-25T01:30:00+00:00', '2026-10-25T01:30:00Z', '2026-10-25T02:30:00+01:00', '2026-10-24T21:30:00-04:00', '2026-10-25T07:00:00+05:30'],
    },
  ];
  for (const { r, spellings } of cases) {
    const first = scheduleStatus(r, new Date(spellings[0] ?? ''));
    for (const s of spellings.slice(1)) {
      t.strictSame(scheduleStatus(r, new Date(s)), first, `${s} same as ${spellings[0]}`);
      t.equal(isOpen(r, new Date(s)), first.open, `isOpen ${s} same as ${spellings[0]}`);
    }
  }
});

t.test('Europe/London spring forward (2026-03-29 01:00 GMT -> 02:00 BST)', async (t) => {
  const r = rules([{ day: 'sun', open: '01:00', close: '03:00' }], [], LONDON);
  const reason = 'weekly window sun 01:00-03:00';
  // 01:00 local does not exist; it moves forward to 02:00 BST (01:00Z). 03:00 BST is 02:00Z: one real hour.
  check(t, r, '2026-03-29T00:59:00Z', closed('outside weekly windows', '2026-03-29T02:00:00+01:00'), '00:59 GMT: closed, opens at 02:00 BST');
  check(t, r, '2026-03-29T01:00:00Z', open(reason, '2026-03-29T03:00:00+01:00'), '02:00 BST: open');
  check(t, r, '2026-03-29T01:59:00Z', open(reason, '2026-03-29T03:00:00+01:00'), '02:59 BST: open');
  check(
    t,
    r,
    '2026-03-29T02:00:00Z',
    closed('outside weekly windows', '2026-04-05T01:00:00+01:00'),
    '03:00 BST: closed after one real hour; next week opens 01:00 BST',
  );
  // A week later the same window is two real hours long.
  check(t, r, '2026-04-05T00:00:00Z', open(reason, '2026-04-05T03:00:00+01:00'), 'next Sunday 01:00 BST (00:00Z): open');
  check(t, r, '2026-04-05T01:59:00Z', open(reason, '2026-04-05T03:00:00+01:00'), 'next Sunday 02:59 BST: open');
});

t.test('Europe/London: a window opening inside the spring-forward gap opens when luxon moves it forward', async (t) => {
  const r = rules([{ day: 'sun', open: '01:30', close: '04:00' }], [], LONDON);
  // 01:30 local does not exist on 2026-03-29; read with the GMT offset it is 01:30Z = 02:30 BST.
  check(t, r, '2026-03-29T00:00:00Z', closed('outside weekly windows', '2026-03-29T02:30:00+01:00'), 'before: opens at 02:30 BST');
  check(t, r, '2026-03-29T01:15:00Z', closed('outside weekly windows', '2026-03-29T02:30:00+01:00'), '02:15 BST: not yet open');
  check(t, r, '2026-03-29T01:30:00Z', open('weekly window sun 01:30-04:00', '2026-03-29T04:00:00+01:00'), '02:30 BST: open');
});

t.test('Europe/London: nextChangeAt across the spring change carries the new offset', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '17:00'), [], LONDON);
  const s = scheduleStatus(r, new Date('2026-03-27T17:00:00Z'));
  t.strictSame(s, closed('outside weekly windows', '2026-03-30T09:00:00+01:00'), 'Friday 17:00 GMT: Monday 09:00 BST');
  t.equal(new Date(s.nextChangeAt ?? '').toISOString(), '2026-03-30T08:00:00.000Z', 'which is 08:00Z');
  check(t, r, '2026-03-27T16:59:00Z', open('weekly window fri 09:00-17:00', '2026-03-27T17:00:00+00:00'), 'Friday before the change: +00:00');
  check(t, r, '2026-03-30T08:00:00Z', open('weekly window mon 09:00-17:00', '2026-03-30T17:00:00+01:00'), 'Monday 09:00 BST is 08:00Z: open');
  check(t, r, '2026-03-30T07:59:00Z', closed('outside weekly windows', '2026-03-30T09:00:00+01:00'), '08:59 BST: closed');
});

t.test('Europe/London fall back (2026-10-25 02:00 BST -> 01:00 GMT)', async (t) => {
  const r = rules([{ day: 'sun', open: '01:00', close: '03:00' }], [], LONDON);
  const reason = 'weekly window sun 01:00-03:00';
  // 01:00 is ambiguous: the earlier instant (01:00 BST = 00:00Z) opens it; 03:00 GMT = 03:00Z closes: three real hours.
  check(t, r, '2026-10-24T23:59:00Z', closed('outside weekly windows', '2026-10-25T01:00:00+01:00'), '00:59 BST: closed, opens at the first 01:00');
  check(t, r, '2026-10-25T00:00:00Z', open(reason, '2026-10-25T03:00:00+00:00'), 'first 01:00 (BST): open, closes 03:00 GMT');
  check(t, r, '2026-10-25T01:30:00Z', open(reason, '2026-10-25T03:00:00+00:00'), 'second 01:30 (GMT): open');
  check(t, r, '2026-10-25T02:59:00Z', open(reason, '2026-10-25T03:00:00+00:00'), '02:59 GMT: open');
  check(t, r, '2026-10-25T03:00:00Z', closed('outside weekly windows', '2026-11-01T01:00:00+00:00'), '03:00 GMT: closed');
});

t.test('Europe/London fall back: an ambiguous closing time closes at its first occurrence', async (t) => {
  const r = rules([{ day: 'sun', open: '00:00', close: '01:30' }], [], LONDON);
  check(t, r, '2026-10-24T23:00:00Z', open('weekly window sun 00:00-01:30', '2026-10-25T01:30:00+01:00'), '00:00 BST: open until the first 01:30');
  check(t, r, '2026-10-25T00:29:00Z', open('weekly window sun 00:00-01:30', '2026-10-25T01:30:00+01:00'), '01:29 BST: open');
  check(t, r, '2026-10-25T00:30:00Z', closed('outside weekly windows', '2026-11-01T00:00:00+00:00'), 'first 01:30 (BST): closed');
  check(t, r, '2026-10-25T01:00:00Z', closed('outside weekly windows', '2026-11-01T00:00:00+00:00'), 'second 01:00 (GMT): still closed');
});

t.test('Europe/London fall back: a midnight span across the repeated hour is longer in real time', async (t) => {
  const r = rules([{ day: 'sat', open: '22:00', close: '02:00' }], [], LONDON);
  check(t, r, '2026-10-24T21:00:00Z', open('weekly window sat 22:00-02:00', '2026-10-25T02:00:00+00:00'), 'Saturday 22:00 BST: open until 02:00 GMT');
  check(t, r, '2026-10-25T01:59:00Z', open('weekly window sat 22:00-02:00', '2026-10-25T02:00:00+00:00'), '01:59 GMT: open');
  check(t, r, '2026-10-25T02:00:00Z', closed('outside weekly windows', '2026-10-31T22:00:00+00:00'), '02:00 GMT: closed');
  const w = rules(every(WORK_DAYS, '09:00', '17:00'), [], LONDON);
  check(t, w, '2026-10-23T16:00:00Z', closed('outside weekly windows', '2026-10-26T09:00:00+00:00'), 'Friday 17:00 BST: next is Monday 09:00 GMT (+00:00)');
});

t.test('America/New_York spring forward (2026-03-08 02:00 EST -> 03:00 EDT)', async (t) => {
  const w = rules(every(WORK_DAYS, '09:00', '17:00'), [], NEW_YORK);
  check(t, w, '2026-03-06T22:00:00Z', closed('outside weekly windows', '2026-03-09T09:00:00-04:00'), 'Friday 17:00 EST: Monday 09:00 EDT');
  check(t, w, '2026-03-09T13:00:00Z', open('weekly window mon 09:00-17:00', '2026-03-09T17:00:00-04:00'), 'Monday 09:00 EDT (13:00Z): open');
  check(t, w, '2026-03-09T12:59:00Z', closed('outside weekly windows', '2026-03-09T09:00:00-04:00'), 'Monday 08:59 EDT: closed');
  const night = rules([{ day: 'sat', open: '22:00', close: '04:00' }], [], NEW_YORK);
  check(t, night, '2026-03-08T03:00:00Z', open('weekly window sat 22:00-04:00', '2026-03-08T04:00:00-04:00'), 'Saturday 22:00 EST: open until 04:00 EDT');
  check(t, night, '2026-03-08T07:59:00Z', open('weekly window sat 22:00-04:00', '2026-03-08T04:00:00-04:00'), '03:59 EDT: open (only five real hours in all)');
  check(t, night, '2026-03-08T08:00:00Z', closed('outside weekly windows', '2026-03-14T22:00:00-04:00'), '04:00 EDT: closed');
});

t.test('America/New_York: gap times move forward; a window whose open moves past its close is empty that day', async (t) => {
  const r = rules([{ day: 'sun', open: '02:15', close: '02:45' }], [], NEW_YORK);
  // Both ends move forward by the gap: 02:15 -> 03:15 EDT (07:15Z), 02:45 -> 03:45 EDT (07:45Z).
  check(t, r, '2026-03-08T07:30:00Z', open('weekly window sun 02:15-02:45', '2026-03-08T03:45:00-04:00'), 'both ends in the gap move forward together');
  const s = rules([{ day: 'sun', open: '02:30', close: '03:00' }], [], NEW_YORK);
  // 02:30 -> 03:30 EDT, 03:00 EDT exists: the end is before the start, so nothing opens.
  check(t, s, '2026-03-08T06:30:00Z', closed('outside weekly windows', '2026-03-15T02:30:00-04:00'), 'open moved past close: closed all day, next Sunday');
  check(t, s, '2026-03-08T07:45:00Z', closed('outside weekly windows', '2026-03-15T02:30:00-04:00'), '03:45 EDT: closed');
});

t.test('America/New_York fall back (2026-11-01 02:00 EDT -> 01:00 EST)', async (t) => {
  const r = rules([{ day: 'sun', open: '01:00', close: '01:30' }], [], NEW_YORK);
  check(t, r, '2026-11-01T05:00:00Z', open('weekly window sun 01:00-01:30', '2026-11-01T01:30:00-04:00'), 'first 01:00 (EDT): open');
  check(t, r, '2026-11-01T05:30:00Z', closed('outside weekly windows', '2026-11-08T01:00:00-05:00'), 'first 01:30 (EDT): closed');
  check(t, r, '2026-11-01T06:15:00Z', closed('outside weekly windows', '2026-11-08T01:00:00-05:00'), 'second 01:15 (EST): the window does not repeat');
  const day = rules([{ day: 'sun', open: '00:00', close: '24:00' }], [], NEW_YORK);
  check(t, day, '2026-11-02T04:30:00Z', open('weekly window sun 00:00-24:00', '2026-11-02T00:00:00-05:00'), 'a 25-hour Sunday: 23:30 EST still open');
  check(t, day, '2026-11-01T04:00:00Z', open('weekly window sun 00:00-24:00', '2026-11-02T00:00:00-05:00'), 'Sunday 00:00 EDT: open');
});

t.test('exceptions and DST together: closed holiday on the London spring-forward Sunday', async (t) => {
  const r = rules(every(ALL_DAYS, '00:00', '24:00'), [{ date: '2026-03-29', closed: true }], LONDON);
  check(t, r, '2026-03-28T23:59:00Z', open('weekly window sat 00:00-24:00', '2026-03-29T00:00:00+00:00'), 'Saturday 23:59 GMT: closes at midnight');
  check(
    t,
    r,
    '2026-03-29T12:00:00Z',
    closed('exception 2026-03-29: closed', '2026-03-30T00:00:00+01:00'),
    'the 23-hour Sunday: closed, reopens Monday 00:00 BST',
  );
});

t.test('nextChangeAt horizon is 366 days', async (t) => {
  const at = '2026-01-01T00:00:00+05:30';
  check(
    t,
    rules([], [{ date: '2027-01-01', open: '09:00', close: '10:00' }]),
    at,
    closed('no weekly windows', '2027-01-01T09:00:00+05:30'),
    'an opening 365 days 9 hours ahead is found',
  );
  check(
    t,
    rules([], [{ date: '2027-01-02', open: '09:00', close: '10:00' }]),
    at,
    closed('no weekly windows', null),
    'an opening 366 days 9 hours ahead is beyond the horizon',
  );
  check(
    t,
    rules([], [{ date: '2027-01-01', open: '23:00', close: '01:00' }]),
    '2027-01-01T23:30:00+05:30',
    open('exception 2027-01-01: special hours 23:00-01:00', '2027-01-02T01:00:00+05:30'),
    'close after the year boundary is still found',
  );
  const always = every(ALL_DAYS, '00:00', '00:00');
  check(
    t,
    rules(always, [{ date: '2026-10-28', closed: true }]),
    at,
    open('weekly window thu 00:00-00:00', '2026-10-28T00:00:00+05:30'),
    'always open with a holiday 300 days away: closes at it',
  );
  check(
    t,
    rules(always, [{ date: '2027-02-05', closed: true }]),
    at,
    open('weekly window thu 00:00-00:00', null),
    'always open with a holiday 400 days away: null',
  );
});

t.test('the years 0001 to 0099, which status `at` takes, are read as themselves, not as 1901 to 1999', async (t) => {
  // 0050-06-01 is a Wednesday (proleptic Gregorian); Date.UTC(50, …) is in 1950, when it was a Thursday
  const r = rules(every(ALL_DAYS, '09:00', '18:00'), [{ date: '0050-06-02', closed: true }], 'UTC');
  check(t, r, '0050-06-01T10:00:00Z', open('weekly window wed 09:00-18:00', '0050-06-01T18:00:00Z'), 'inside the window: open');
  check(t, r, '0050-06-01T18:00:00Z', closed('outside weekly windows', '0050-06-03T09:00:00Z'), 'the holiday next day is skipped');
  check(t, r, '0050-06-02T10:00:00Z', closed('exception 0050-06-02: closed', '0050-06-03T09:00:00Z'), 'the exception of that date decides');
  check(t, r, '0001-01-01T00:00:00Z', closed('outside weekly windows', '0001-01-01T09:00:00Z'), 'the first instant the API takes');
});

t.test('invalid input is rejected', async (t) => {
  t.throws(() => scheduleStatus(rules([], [], 'Mars/Olympus'), new Date()), RangeError, 'unknown timezone in scheduleStatus');
  t.throws(() => isOpen(rules([], [], 'Mars/Olympus'), new Date()), RangeError, 'unknown timezone in isOpen');
  t.throws(() => scheduleStatus(rules([]), new Date('nope')), RangeError, 'invalid Date in scheduleStatus');
  t.throws(() => isOpen(rules([]), new Date(Number.NaN)), RangeError, 'invalid Date in isOpen');
});

t.test('scheduleStatus does not mutate the rules', async (t) => {
  const r = rules(every(WORK_DAYS, '09:00', '18:00'), [{ date: '2026-12-25', closed: true }]);
  const copy = structuredClone(r);
  scheduleStatus(r, new Date('2026-12-24T12:00:00+05:30'));
  isOpen(r, new Date('2026-12-24T12:00:00+05:30'));
  t.strictSame(r, copy);
});

/**
 * Sweeps instants every 17 minutes and checks:
 * - isOpen agrees with scheduleStatus().open;
 * - nextChangeAt is strictly after `at`, the state flips exactly there (state just before it is unchanged);
 * - no sample between `at` and nextChangeAt has a different state, and a flip between samples is reported.
 */
function sweep(t: Test, r: ScheduleRules, fromIso: string, days: number): void {
  const step = 17 * 60_000;
  const from = new Date(fromIso).getTime();
  const until = from + days * 86_400_000;
  const problems: string[] = [];
  let samples = 0;
  let flips = 0;
  let prev: { ms: number; status: ScheduleStatus } | undefined;
  for (let ms = from; ms <= until; ms += step) {
    samples++;
    const at = new Date(ms);
    const status = scheduleStatus(r, at);
    const iso = at.toISOString();
    if (isOpen(r, at) !== status.open) problems.push(`${iso}: isOpen disagrees`);
    if (status.nextChangeAt !== null) {
      const change = new Date(status.nextChangeAt).getTime();
      if (!(change > ms)) problems.push(`${iso}: nextChangeAt ${status.nextChangeAt} not after at`);
      if (isOpen(r, new Date(change)) === status.open) problems.push(`${iso}: no flip at ${status.nextChangeAt}`);
      if (isOpen(r, new Date(change - 1)) !== status.open) problems.push(`${iso}: flip before ${status.nextChangeAt}`);
      if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/.test(status.nextChangeAt)) problems.push(`${iso}: bad format ${status.nextChangeAt}`);
    }
    if (prev !== undefined) {
      const prevChange = prev.status.nextChangeAt === null ? Infinity : new Date(prev.status.nextChangeAt).getTime();
      if (prevChange > ms && status.open !== prev.status.open) problems.push(`${iso}: flipped without nextChangeAt from ${new Date(prev.ms).toISOString()}`);
      if (prevChange > ms && status.nextChangeAt !== prev.status.nextChangeAt)
        problems.push(`${iso}: nextChangeAt moved from ${prev.status.nextChangeAt} to ${status.nextChangeAt}`);
      if (status.open !== prev.status.open) flips++;
    }
    prev = { ms, status };
  }
  t.strictSame(problems, [], `${samples} samples consistent`);
  t.ok(flips > 10, `the sweep saw state changes (${flips})`);
}

t.test('sweep: isOpen agrees with scheduleStatus and nextChangeAt is exact (London, spring forward, exceptions)', async (t) => {
  const r = rules(
    [
      ...every(WORK_DAYS, '09:00', '13:00'),
      ...every(WORK_DAYS, '13:00', '17:30'),
      { day: 'fri', open: '22:00', close: '02:00' },
      { day: 'sat', open: '01:00', close: '03:00' },
      { day: 'sun', open: '01:00', close: '03:00' },
      { day: 'sun', open: '23:00', close: '23:00' },
    ],
    [
      { date: '2026-03-25', closed: true },
      { date: '2026-03-26', open: '20:00', close: '02:00' },
      { date: '2026-04-03', closed: true },
      { date: '2026-04-04', open: '00:00', close: '24:00' },
    ],
    LONDON,
  );
  sweep(t, r, '2026-03-22T00:00:00Z', 14);
});

t.test('sweep: London fall back with exceptions', async (t) => {
  const r = rules(
    [
      ...every(WORK_DAYS, '08:00', '18:00'),
      { day: 'sat', open: '22:00', close: '01:30' },
      { day: 'sun', open: '01:00', close: '03:00' },
      { day: 'sun', open: '12:00', close: '12:00' },
    ],
    [
      { date: '2026-10-21', open: '12:00', close: '12:00' },
      { date: '2026-10-28', closed: true },
    ],
    LONDON,
  );
  sweep(t, r, '2026-10-18T00:00:00Z', 14);
});

t.test('sweep: America/New_York across both DST changes', async (t) => {
  const r = rules(
    [...every(WORK_DAYS, '09:00', '17:00'), { day: 'sat', open: '22:00', close: '04:00' }, { day: 'sun', open: '01:30', close: '02:30' }],
    [{ date: '2026-11-03', open: '06:00', close: '03:00' }],
    NEW_YORK,
  );
  sweep(t, r, '2026-03-01T00:00:00Z', 14);
  sweep(t, r, '2026-10-26T00:00:00Z', 14);
});

t.test('sweep: Asia/Kolkata with holidays and midnight spans', async (t) => {
  const r = rules(
    [...every(WORK_DAYS, '09:30', '18:30'), ...every(['fri', 'sat'], '21:00', '03:00')],
    [
      { date: '2026-12-25', closed: true },
      { date: '2026-12-26', open: '10:00', close: '14:00' },
      { date: '2026-12-31', open: '18:00', close: '06:00' },
    ],
  );
  sweep(t, r, '2026-12-20T00:00:00+05:30', 14);
});

t.test('isOpen on one rules object, asked in random order across DST and exceptions, agrees with scheduleStatus', async (t) => {
  const r = rules(
    [...every(WORK_DAYS, '09:00', '18:00'), { day: 'sat', open: '22:00', close: '02:00' }, { day: 'sun', open: '01:30', close: '03:00' }],
    [
      { date: '2026-03-30', closed: true },
      { date: '2026-10-24', open: '10:00', close: '01:00' },
    ],
    'Europe/London',
  );
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const from = new Date('2026-03-20T00:00:00Z').getTime();
  const problems: string[] = [];
  for (let i = 0; i < 3000; i++) {
    // Mostly near each other (as live callbacks are), sometimes months away.
    const ms = from + Math.floor((random() < 0.9 ? random() * 20 : random() * 240) * 86_400_000);
    if (isOpen(r, new Date(ms)) !== scheduleStatus(r, new Date(ms)).open) problems.push(new Date(ms).toISOString());
  }
  t.same(problems, [], '3000 instants, none disagrees');
});

t.test('an override decides alone until its until, then the windows and exceptions do again', async (t) => {
  const weekdays = rules(every(WORK_DAYS, '09:00', '18:00'), [{ date: '2026-01-06', closed: true }]);
  const setAt = new Date('2026-01-05T00:00:00Z');
  // closed for an emergency on Monday 10:00–14:00 (inside the window)
  const emergency = { ...weekdays, override: { open: false, reason: 'flooding', until: new Date('2026-01-05T14:00:00+05:30'), setAt } };
  check(
    t,
    emergency,
    '2026-01-05T11:00:00+05:30',
    closed('override: flooding until 2026-01-05T14:00:00+05:30', '2026-01-05T14:00:00+05:30'),
    'closed by the override; it flips back open at until, inside the window',
  );
  check(t, emergency, '2026-01-05T14:00:00+05:30', open('weekly window mon 09:00-18:00', '2026-01-05T18:00:00+05:30'), 'until is exclusive');
  // open on Tuesday's holiday, until Tuesday 16:00: after that the exception (closed) decides until Wednesday 09:00
  const holidayShift = { ...weekdays, override: { open: true, reason: 'year-end rush', until: '2026-01-06T16:00:00+05:30', setAt } };
  check(t, holidayShift, '2026-01-06T12:00:00+05:30', open('override: year-end rush until 2026-01-06T16:00:00+05:30', '2026-01-06T16:00:00+05:30'));
  // an override that agrees with the windows at its end: the next change is the windows' own
  const lateClose = { ...weekdays, override: { open: false, reason: 'stocktake', until: new Date('2026-01-05T20:00:00+05:30'), setAt } };
  check(
    t,
    lateClose,
    '2026-01-05T12:00:00+05:30',
    closed('override: stocktake until 2026-01-05T20:00:00+05:30', '2026-01-07T09:00:00+05:30'),
    'closed at until anyway (18:00 has passed, Tuesday is a holiday): next change Wednesday 09:00',
  );
  const indefinite = { ...weekdays, override: { open: false, reason: 'system outage', until: null, setAt } };
  check(t, indefinite, '2026-03-02T10:00:00+05:30', closed('override: system outage until it is deleted', null), 'no until: until deleted, no next change');
  check(t, { ...weekdays, override: null }, '2026-01-05T11:00:00+05:30', open('weekly window mon 09:00-18:00', '2026-01-05T18:00:00+05:30'), 'none');
});

t.test('seen from before it was set, an override does not decide; the next change is at the latest when it begins', async (t) => {
  const weekdays = rules(every(WORK_DAYS, '09:00', '18:00'), []);
  const setAt = new Date('2026-01-05T00:00:00Z'); // Monday 05:30 in Kolkata
  const emergency = { ...weekdays, override: { open: false, reason: 'flooding', until: new Date('2026-01-05T14:00:00+05:30'), setAt } };
  check(t, emergency, '2026-01-02T11:00:00+05:30', open('weekly window fri 09:00-18:00', '2026-01-02T18:00:00+05:30'), 'last Friday: the windows');
  check(
    t,
    emergency,
    '2026-01-05T04:00:00+05:30',
    closed('outside weekly windows', '2026-01-05T14:00:00+05:30'),
    'closed before it too: the next change is when the override ends inside the window',
  );
  const opened = { ...weekdays, override: { open: true, reason: 'early start', until: new Date('2026-01-05T09:00:00+05:30'), setAt } };
  check(t, opened, '2026-01-05T04:00:00+05:30', closed('outside weekly windows', '2026-01-05T05:30:00+05:30'), 'opens when it is set');
  check(
    t,
    opened,
    '2026-01-05T05:30:00+05:30',
    open('override: early start until 2026-01-05T09:00:00+05:30', '2026-01-05T18:00:00+05:30'),
    'setAt is inclusive',
  );
});

t.test("an override's next change is null past the 366-day horizon of at, as the windows' is", async (t) => {
  const setAt = new Date('2026-01-01T00:00:00Z');
  const always = rules(every(ALL_DAYS, '00:00', '00:00'));
  const at = '2026-01-05T10:00:00+05:30';
  const twoYears = { ...always, override: { open: false, reason: 'office moves', until: new Date('2028-01-05T10:00:00+05:30'), setAt } };
  check(t, twoYears, at, closed('override: office moves until 2028-01-05T10:00:00+05:30', null), 'it flips back open at until, two years ahead: null');
  const inAYear = { ...always, override: { open: false, reason: 'office moves', until: new Date('2027-01-05T10:00:00+05:30'), setAt } };
  check(t, inAYear, at, closed('override: office moves until 2027-01-05T10:00:00+05:30', '2027-01-05T10:00:00+05:30'), 'within the horizon: until');
  // closed at until anyway; the exception that opens lies within a year of until, not of at
  const late = {
    ...rules([], [{ date: '2027-02-01', open: '09:00', close: '10:00' }]),
    override: { open: false, reason: 'audit', until: new Date('2026-11-01T00:00:00+05:30'), setAt },
  };
  check(t, late, at, closed('override: audit until 2026-11-01T00:00:00+05:30', null), "the windows' next change after until, beyond a year of at: null");
  check(t, { ...late, override: null }, at, closed('no weekly windows', null), 'as without the override');
  // seen from more than a year before it was set: its start is beyond the horizon too
  const setLater = { ...always, override: { open: false, reason: 'later', until: null, setAt: new Date('2027-03-01T00:00:00Z') } };
  check(t, setLater, at, open('weekly window mon 00:00-00:00', null), 'an override set 14 months after at: null');
});
