import t from 'tap';
import { buildSecondInstance, buildTestApp } from '../../helper.js';
import { BOOTSTRAP_KEY_ID } from '../../../src/store/api-keys.js';

// 2026-01-07 is a Wednesday; Asia/Kolkata is UTC+05:30 all year.
const WEEKDAYS_9_TO_6 = ['mon', 'tue', 'wed', 'thu', 'fri'].map((day) => ({ day, open: '09:00', close: '18:00' }));

t.test('admin schedules', async (t) => {
  const { admin, db } = await buildTestApp(t);
  const status = (slug: string, at?: string) =>
    admin({ method: 'GET', url: `/admin/schedules/${slug}/status${at === undefined ? '' : `?at=${encodeURIComponent(at)}`}` });
  const create = (payload: object) => admin({ method: 'POST', url: '/admin/schedules', payload });

  t.test('create without a timezone answers 201 with Asia/Kolkata and empty rules', async (t) => {
    const res = await create({ slug: 'bare', name: 'Bare' });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.match(body, { slug: 'bare', name: 'Bare', timezone: 'Asia/Kolkata' });
    t.strictSame([body.weekly, body.exceptions], [[], []]);
    t.ok(Date.parse(body.createdAt) && Date.parse(body.updatedAt), 'createdAt and updatedAt are ISO instants');
    t.equal((await db.prisma.schedule.findUniqueOrThrow({ where: { slug: 'bare' } })).timezone, 'Asia/Kolkata', 'stored, not only answered');
  });

  t.test('weekly windows and exceptions round-trip; exceptions come back in date order', async (t) => {
    const weekly = [...WEEKDAYS_9_TO_6, { day: 'sat', open: '22:00', close: '02:00' }, { day: 'sun', open: '10:00', close: '24:00' }];
    const exceptions = [
      { date: '2026-12-31', open: '09:00', close: '13:00', note: 'new year eve' },
      { date: '2026-12-25', closed: true, note: 'Christmas' },
      { date: '2026-08-15', closed: false, open: '10:00', close: '12:00' },
    ];
    const res = await create({ slug: 'support', name: 'Support desk', timezone: 'Asia/Kolkata', weekly, exceptions });
    t.equal(res.statusCode, 201);
    const byDate = [exceptions[2], exceptions[1], exceptions[0]];
    t.strictSame(res.json().weekly, weekly);
    t.strictSame(res.json().exceptions, byDate);
    const got = await admin({ method: 'GET', url: '/admin/schedules/support' });
    t.equal(got.statusCode, 200);
    t.match(got.json(), { slug: 'support', name: 'Support desk', timezone: 'Asia/Kolkata' });
    t.strictSame(got.json().weekly, weekly);
    t.strictSame(got.json().exceptions, byDate);
  });

  t.test('list answers every schedule by slug', async (t) => {
    const res = await admin({ method: 'GET', url: '/admin/schedules' });
    t.equal(res.statusCode, 200);
    t.same(
      res.json().map((s: { slug: string }) => s.slug),
      ['bare', 'support'],
    );
  });

  t.test('a second schedule with the same slug is 409', async (t) => {
    const res = await create({ slug: 'support', name: 'Again' });
    t.equal(res.statusCode, 409);
    t.match(res.json(), { statusCode: 409, error: 'Conflict' });
    t.equal((await admin({ method: 'GET', url: '/admin/schedules/support' })).json().name, 'Support desk', 'the first is unchanged');
  });

  t.test('an unknown timezone is 400 naming body/timezone', async (t) => {
    for (const timezone of ['Mars/Olympus', 'India', 'UTC+5:30', '']) {
      const res = await create({ slug: 'tz', name: 'x', timezone });
      t.equal(res.statusCode, 400, timezone);
      t.match(res.json(), { error: 'Bad Request', message: /^body\/timezone: / }, timezone);
    }
    t.equal(await db.prisma.schedule.count({ where: { slug: 'tz' } }), 0);
  });

  t.test('a zone abbreviation (IST, BST, CST, …) is no IANA name: 400 naming the field, not the zone ICU reads it as (BST is Asia/Dhaka)', async (t) => {
    // Intl (and so luxon) takes old Java's three-letter ids: a London office's BST would be
    // Bangladesh, a Shanghai one's CST Chicago, an Irish IST India, a Newfoundland NST Auckland.
    for (const timezone of ['IST', 'BST', 'CST', 'PST', 'AST', 'NST', 'ECT', 'ist', 'SystemV/EST5EDT']) {
      const res = await create({ slug: 'abbr', name: 'x', timezone });
      t.equal(res.statusCode, 400, timezone);
      t.match(res.json(), { error: 'Bad Request', message: /^body\/timezone: must be an IANA timezone name/ }, timezone);
    }
    t.equal(await db.prisma.schedule.count({ where: { slug: 'abbr' } }), 0);
    const patch = await admin({ method: 'PATCH', url: '/admin/schedules/bare', payload: { timezone: 'BST' } });
    t.equal(patch.statusCode, 400, 'PATCH too');
    t.match(patch.json().message, /^body\/timezone: /);
    const agents = await admin({ method: 'GET', url: '/admin/agents?timezone=IST' });
    t.equal(agents.statusCode, 400, "and the agents' today");
    t.match(agents.json().message, /^querystring\/timezone: /);
    // IANA's own short names and links stay valid
    for (const [i, timezone] of ['UTC', 'EST', 'CET', 'GB', 'Asia/Calcutta', 'US/Eastern'].entries()) {
      const res = await create({ slug: `iana-${i}`, name: 'x', timezone });
      t.equal(res.statusCode, 201, timezone);
      t.equal((await admin({ method: 'DELETE', url: `/admin/schedules/iana-${i}` })).statusCode, 204);
    }
  });

  t.test('a time that is not HH:MM 00:00–23:59 is 400 naming its path', async (t) => {
    const cases: Array<[object, string]> = [
      [{ weekly: [{ day: 'mon', open: '25:00', close: '18:00' }] }, 'body/weekly/0/open'],
      [
        {
          weekly: [
            { day: 'mon', open: '09:00', close: '18:00' },
            { day: 'tue', open: '9:00', close: '18:00' },
          ],
        },
        'body/weekly/1/open',
      ],
      [{ weekly: [{ day: 'mon', open: '09:00', close: '18:60' }] }, 'body/weekly/0/close'],
      [{ weekly: [{ day: 'mon', open: '24:00', close: '18:00' }] }, 'body/weekly/0/open'],
      [{ weekly: [{ day: 'mon', open: '09:00', close: '24:01' }] }, 'body/weekly/0/close'],
    ];
    for (const [rules, path] of cases) {
      const res = await create({ slug: 'times', name: 'x', ...rules });
      t.equal(res.statusCode, 400, path);
      t.match(res.json().message, new RegExp(`^${path}: must be: Local time of day, HH:MM`), path);
    }
    // An exception is one of two shapes (closed / special hours); the message names the exception, though
    // not always the field (see the report: the formatter picks the first of equally deep anyOf errors).
    const special = await create({ slug: 'times', name: 'x', exceptions: [{ date: '2026-12-31', open: '9', close: '13:00' }] });
    t.equal(special.statusCode, 400);
    t.match(special.json().message, /^body\/exceptions\/0\//);
    t.equal(await db.prisma.schedule.count({ where: { slug: 'times' } }), 0);
  });

  t.test('a window may close at 24:00', async (t) => {
    const res = await create({ slug: 'late', name: 'Late', weekly: [{ day: 'fri', open: '18:00', close: '24:00' }] });
    t.equal(res.statusCode, 201);
    t.strictSame(res.json().weekly, [{ day: 'fri', open: '18:00', close: '24:00' }]);
  });

  t.test('a day that is not mon…sun is 400 naming body/weekly/0/day', async (t) => {
    for (const day of ['monday', 'Mon', '1']) {
      const res = await create({ slug: 'days', name: 'x', weekly: [{ day, open: '09:00', close: '18:00' }] });
      t.equal(res.statusCode, 400, day);
      t.match(res.json().message, /^body\/weekly\/0\/day: /, day);
    }
  });

  t.test('one exception per date: a duplicate is 400 naming body/exceptions/1/date', async (t) => {
    const res = await create({
      slug: 'dupes',
      name: 'x',
      exceptions: [
        { date: '2026-12-25', closed: true },
        { date: '2026-12-25', open: '10:00', close: '12:00' },
      ],
    });
    t.equal(res.statusCode, 400);
    t.match(res.json().message, 'body/exceptions/1/date: 2026-12-25 appears twice');
    t.equal(await db.prisma.schedule.count({ where: { slug: 'dupes' } }), 0);
  });

  t.test('a bad exception date, or special hours without times, is 400 naming the field', async (t) => {
    const date = await create({ slug: 'exc', name: 'x', exceptions: [{ date: '2026-02-30', closed: true }] });
    t.equal(date.statusCode, 400);
    t.match(date.json().message, /^body\/exceptions\/0\/date: /);
    const hours = await create({ slug: 'exc', name: 'x', exceptions: [{ date: '2026-12-31', open: '09:00' }] });
    t.equal(hours.statusCode, 400);
    t.match(hours.json().message, /^body\/exceptions\/0\/(close|closed): /);
  });

  t.test('special hours missing a time are 400 naming that time, not `closed` (the other shape of an exception)', async (t) => {
    const cases: Array<[object, RegExp]> = [
      [{ date: '2026-12-31', open: '09:00' }, /^body\/exceptions\/0\/close: is required/],
      [{ date: '2026-12-31', close: '13:00' }, /^body\/exceptions\/0\/open: is required/],
      [{ date: '2026-12-31', closed: false, open: '09:00' }, /^body\/exceptions\/0\/close: is required/],
    ];
    for (const [exception, message] of cases) {
      const res = await create({ slug: 'exc', name: 'x', exceptions: [exception] });
      t.equal(res.statusCode, 400, JSON.stringify(exception));
      t.match(res.json().message, message, JSON.stringify(exception));
    }
    const patched = await admin({
      method: 'PATCH',
      url: '/admin/schedules/support',
      payload: {
        exceptions: [
          { date: '2026-12-25', closed: true },
          { date: '2026-12-31', open: '09:00' },
        ],
      },
    });
    t.equal(patched.statusCode, 400);
    t.match(patched.json().message, /^body\/exceptions\/1\/close: is required/);
  });

  t.test('unknown fields, at the top or inside a window or exception, are 400 naming them', async (t) => {
    const cases: Array<[object, string]> = [
      [{ colour: 'red' }, 'body/colour: unknown field'],
      [{ weekly: [{ day: 'mon', open: '09:00', close: '18:00', lunch: '13:00' }] }, 'body/weekly/0/lunch: unknown field'],
      [{ exceptions: [{ date: '2026-12-25', closed: true, reason: 'x' }] }, 'body/exceptions/0/reason: unknown field'],
    ];
    for (const [extra, message] of cases) {
      const res = await create({ slug: 'extra', name: 'x', ...extra });
      t.equal(res.statusCode, 400, message);
      t.match(res.json().message, message);
    }
    const missing = await create({ slug: 'extra' });
    t.equal(missing.statusCode, 400);
    t.match(missing.json().message, 'body/name: is required');
    const slug = await create({ slug: 'Support Desk', name: 'x' });
    t.equal(slug.statusCode, 400);
    t.match(slug.json().message, /^body\/slug: /);
  });

  t.test('a malformed JSON body is 400', async (t) => {
    const res = await admin({ method: 'POST', url: '/admin/schedules', payload: '{"slug":', headers: { 'content-type': 'application/json' } });
    t.equal(res.statusCode, 400);
    t.match(res.json(), { statusCode: 400, error: 'Bad Request' });
  });

  t.test('PATCH changes only the fields given', async (t) => {
    t.equal(
      (
        await create({
          slug: 'london',
          name: 'London',
          timezone: 'Europe/London',
          weekly: [{ day: 'mon', open: '08:00', close: '16:00' }],
          exceptions: [{ date: '2026-12-25', closed: true }],
        })
      ).statusCode,
      201,
    );
    const renamed = await admin({ method: 'PATCH', url: '/admin/schedules/london', payload: { name: 'London office' } });
    t.equal(renamed.statusCode, 200);
    t.match(renamed.json(), {
      name: 'London office',
      timezone: 'Europe/London',
      weekly: [{ day: 'mon', open: '08:00', close: '16:00' }],
      exceptions: [{ date: '2026-12-25', closed: true }],
    });
    const hours = await admin({ method: 'PATCH', url: '/admin/schedules/london', payload: { weekly: [{ day: 'tue', open: '10:00', close: '12:00' }] } });
    t.equal(hours.statusCode, 200);
    t.strictSame(hours.json().weekly, [{ day: 'tue', open: '10:00', close: '12:00' }], 'a given array replaces the whole array');
    t.match(hours.json(), { name: 'London office', timezone: 'Europe/London', exceptions: [{ date: '2026-12-25', closed: true }] });
    const stored = await admin({ method: 'GET', url: '/admin/schedules/london' });
    t.match(stored.json(), { name: 'London office', timezone: 'Europe/London', exceptions: [{ date: '2026-12-25', closed: true }] });
    const bad = await admin({ method: 'PATCH', url: '/admin/schedules/london', payload: { timezone: 'Mars/Olympus' } });
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /^body\/timezone: /);
    const dupes = await admin({
      method: 'PATCH',
      url: '/admin/schedules/london',
      payload: {
        exceptions: [
          { date: '2026-01-01', closed: true },
          { date: '2026-01-01', closed: true },
        ],
      },
    });
    t.equal(dupes.statusCode, 400);
    t.match(dupes.json().message, 'body/exceptions/1/date');
    const slug = await admin({ method: 'PATCH', url: '/admin/schedules/london', payload: { slug: 'paris' } });
    t.equal(slug.statusCode, 400);
    t.match(slug.json().message, 'body/slug: unknown field');
  });

  t.test('PUT replaces the schedule: fields left out go back to their defaults', async (t) => {
    const res = await admin({
      method: 'PUT',
      url: '/admin/schedules/london',
      payload: { name: 'Replaced', weekly: [{ day: 'wed', open: '09:00', close: '17:00' }] },
    });
    t.equal(res.statusCode, 200);
    t.match(res.json(), { slug: 'london', name: 'Replaced', timezone: 'Asia/Kolkata' });
    t.strictSame(res.json().weekly, [{ day: 'wed', open: '09:00', close: '17:00' }]);
    t.strictSame(res.json().exceptions, [], 'exceptions left out become []');
    const stored = await admin({ method: 'GET', url: '/admin/schedules/london' });
    t.match(stored.json(), { name: 'Replaced', timezone: 'Asia/Kolkata', exceptions: [] });
    const noName = await admin({ method: 'PUT', url: '/admin/schedules/london', payload: { weekly: [] } });
    t.equal(noName.statusCode, 400);
    t.match(noName.json().message, 'body/name: is required');
  });

  t.test('an unknown slug is 404 on get, put, patch, delete and status', async (t) => {
    const calls = [
      { method: 'GET', url: '/admin/schedules/nope' },
      { method: 'PUT', url: '/admin/schedules/nope', payload: { name: 'x' } },
      { method: 'PATCH', url: '/admin/schedules/nope', payload: { name: 'x' } },
      { method: 'DELETE', url: '/admin/schedules/nope' },
      { method: 'GET', url: '/admin/schedules/nope/status' },
    ];
    for (const call of calls) {
      const res = await admin(call);
      t.equal(res.statusCode, 404, `${call.method} ${call.url}`);
      t.match(res.json(), { statusCode: 404, error: 'Not Found', message: /'nope' does not exist/ }, `${call.method} ${call.url}`);
    }
    t.equal(await db.prisma.schedule.count({ where: { slug: 'nope' } }), 0);
  });

  t.test('status of a Mon–Fri 09:00–18:00 Kolkata schedule: open, closed, and when that changes', async (t) => {
    t.equal((await create({ slug: 'office', name: 'Office', weekly: WEEKDAYS_9_TO_6 })).statusCode, 201);
    const wedMorning = await status('office', '2026-01-07T10:00:00+05:30');
    t.equal(wedMorning.statusCode, 200);
    t.strictSame(wedMorning.json(), { open: true, reason: 'weekly window wed 09:00-18:00', nextChangeAt: '2026-01-07T18:00:00+05:30' });
    const wedEvening = await status('office', '2026-01-07T20:00:00+05:30');
    t.strictSame(wedEvening.json(), { open: false, reason: 'outside weekly windows', nextChangeAt: '2026-01-08T09:00:00+05:30' });
    const friEvening = await status('office', '2026-01-09T18:00:00+05:30');
    t.strictSame(
      friEvening.json(),
      { open: false, reason: 'outside weekly windows', nextChangeAt: '2026-01-12T09:00:00+05:30' },
      'closes at 18:00 sharp; reopens Monday',
    );
  });

  t.test('the same instant written in UTC or +05:30 gets the same answer', async (t) => {
    for (const [utc, local] of [
      ['2026-01-07T04:30:00Z', '2026-01-07T10:00:00+05:30'],
      ['2026-01-07T14:30:00.000Z', '2026-01-07T20:00:00+05:30'],
    ]) {
      const a = await status('office', utc);
      const b = await status('office', local);
      t.equal(a.statusCode, 200);
      t.strictSame(a.json(), b.json(), `${utc} = ${local}`);
    }
    t.equal((await status('office', '2026-01-07T03:29:00Z')).json().open, false, '08:59 in Kolkata is 03:29 UTC: not yet open');
  });

  t.test('a holiday added by PATCH closes the schedule that day, and the reason names the exception', async (t) => {
    t.equal((await status('office', '2026-01-07T10:00:00+05:30')).json().open, true, 'open before the holiday is added');
    const res = await admin({
      method: 'PATCH',
      url: '/admin/schedules/office',
      payload: { exceptions: [{ date: '2026-01-07', closed: true, note: 'holiday' }] },
    });
    t.equal(res.statusCode, 200);
    t.strictSame(res.json().weekly, WEEKDAYS_9_TO_6, 'the weekly windows are untouched');
    const after = await status('office', '2026-01-07T10:00:00+05:30');
    t.equal(after.statusCode, 200);
    t.strictSame(after.json(), { open: false, reason: 'exception 2026-01-07: closed', nextChangeAt: '2026-01-08T09:00:00+05:30' });
    t.strictSame(
      (await status('office', '2026-01-08T10:00:00+05:30')).json(),
      { open: true, reason: 'weekly window thu 09:00-18:00', nextChangeAt: '2026-01-08T18:00:00+05:30' },
      'the next day is a normal day',
    );
    t.equal((await status('office', '2026-01-06T17:00:00+05:30')).json().nextChangeAt, '2026-01-06T18:00:00+05:30', 'the day before closes as usual');
    t.equal((await status('office', '2026-01-06T19:00:00+05:30')).json().nextChangeAt, '2026-01-08T09:00:00+05:30', 'and skips the holiday');
  });

  t.test('status `at` must be an ISO instant with an offset: otherwise 400 naming querystring/at', async (t) => {
    for (const at of ['yesterday', '2026-01-07T10:00:00', '2026-01-07', '']) {
      const res = await status('office', at);
      t.equal(res.statusCode, 400, JSON.stringify(at));
      t.match(res.json(), { error: 'Bad Request', message: /^querystring\/at: / }, JSON.stringify(at));
    }
    const extra = await admin({ method: 'GET', url: '/admin/schedules/office/status?when=now' });
    t.equal(extra.statusCode, 400);
    t.match(extra.json().message, 'querystring/when: unknown field');
  });

  t.test('status at the end of the year 9999: 200 with nextChangeAt null, not a 500 for a flip in the year 10000', async (t) => {
    const res = await status('office', '9999-12-31T23:59:59Z'); // a Friday; it reopens on Monday 10000-01-03
    t.equal(res.statusCode, 200);
    t.strictSame(res.json(), { open: false, reason: 'outside weekly windows', nextChangeAt: null });
    t.strictSame((await status('office', '9999-12-30T10:00:00+05:30')).json(), {
      open: true,
      reason: 'weekly window thu 09:00-18:00',
      nextChangeAt: '9999-12-30T18:00:00+05:30',
    });
  });

  t.test('status `at` with its + not encoded (read as a space) is a 400 that says to write + as %2B', async (t) => {
    const res = await admin({ method: 'GET', url: '/admin/schedules/office/status?at=2026-01-07T10:00:00+05:30' });
    t.equal(res.statusCode, 400);
    t.match(res.json().message, /^querystring\/at: must be an ISO 8601 instant with its offset.*write \+ as %2B/);
    t.equal((await status('office', '2026-01-07T10:00:00+05:30')).statusCode, 200, 'encoded, it is taken');
  });

  t.test('status without `at` answers for now', async (t) => {
    t.equal(
      (
        await create({
          slug: 'always',
          name: 'Always',
          weekly: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((day) => ({ day, open: '00:00', close: '24:00' })),
        })
      ).statusCode,
      201,
    );
    const open = await status('always');
    t.equal(open.statusCode, 200);
    t.match(open.json(), { open: true, reason: /^weekly window /, nextChangeAt: null });
    const closed = await status('bare');
    t.equal(closed.statusCode, 200);
    t.strictSame(closed.json(), { open: false, reason: 'no weekly windows', nextChangeAt: null });
  });

  t.test('a schedule a flow refers to (closedBy or openBy) cannot be deleted: 409 naming the flows', async (t) => {
    const flow = (slug: string, when: object) =>
      db.prisma.flow.create({
        data: {
          slug,
          name: 'x',
          type: 'passthru',
          rules: [
            { name: 'vip', when: { callerIn: 'gold' }, then: { branch: 'A' } },
            { name: 'hours', when, then: { branch: 'B' } },
          ],
          otherwise: { branch: 'A' },
          onError: { branch: 'A' },
        },
      });
    await flow('inbound', { closedBy: 'support' });
    await flow('night', { openBy: 'late' });
    await flow('sales', { openBy: 'support' });
    const support = await admin({ method: 'DELETE', url: '/admin/schedules/support' });
    t.equal(support.statusCode, 409);
    t.match(support.json(), { error: 'Conflict', message: /flows 'inbound', 'sales'/ });
    const late = await admin({ method: 'DELETE', url: '/admin/schedules/late' });
    t.equal(late.statusCode, 409);
    t.match(late.json().message, /flow 'night'/);
    t.equal((await admin({ method: 'GET', url: '/admin/schedules/support' })).statusCode, 200, 'still there');
    t.equal((await admin({ method: 'GET', url: '/admin/schedules/late' })).statusCode, 200, 'still there');
  });

  t.test('delete of an unused schedule answers 204; then it is 404', async (t) => {
    const res = await admin({ method: 'DELETE', url: '/admin/schedules/bare' });
    t.equal(res.statusCode, 204);
    t.equal(res.body, '');
    t.equal((await admin({ method: 'GET', url: '/admin/schedules/bare' })).statusCode, 404);
    t.equal((await admin({ method: 'DELETE', url: '/admin/schedules/bare' })).statusCode, 404);
    t.equal(await db.prisma.schedule.count({ where: { slug: 'bare' } }), 0);
  });

  t.test('every write leaves an audit entry with the acting key, before and after', async (t) => {
    const trail = async (slug: string) =>
      (await admin({ method: 'GET', url: `/admin/audit?entity=schedule&entityId=${slug}` })).json().items as Array<{
        action: string;
        apiKeyId: string | null;
        before: unknown;
        after: unknown;
      }>;
    const london = await trail('london');
    t.same(
      london.map((a) => a.action),
      ['replace', 'update', 'update', 'create'],
      'newest first; rejected writes leave nothing',
    );
    t.ok(london.every((a) => a.apiKeyId === BOOTSTRAP_KEY_ID));
    t.match(london[3], { before: null, after: { slug: 'london', name: 'London', timezone: 'Europe/London' } });
    t.match(london[2], { before: { name: 'London' }, after: { name: 'London office' } });
    t.match(london[0], { before: { name: 'London office', timezone: 'Europe/London' }, after: { name: 'Replaced', timezone: 'Asia/Kolkata', exceptions: [] } });
    const office = await trail('office');
    t.same(
      office.map((a) => a.action),
      ['update', 'create'],
    );
    t.match(office[0], { before: { exceptions: [] }, after: { exceptions: [{ date: '2026-01-07', closed: true, note: 'holiday' }] } });
    const bare = await trail('bare');
    t.same(
      bare.map((a) => a.action),
      ['delete', 'create'],
    );
    t.match(bare[0], { before: { slug: 'bare', name: 'Bare' }, after: null });
    t.same(
      (await trail('support')).map((a) => a.action),
      ['create'],
      'a refused delete leaves nothing',
    );
  });
});

t.test('two instances: concurrent PATCHes of one schedule, each of another field, both last; each audits what the other left', async (t) => {
  const first = await buildTestApp(t);
  const second = await buildSecondInstance(t, first);
  const weekly = [{ day: 'mon', open: '09:00', close: '18:00' }];
  const exceptions = [{ date: '2026-12-25', closed: true }];
  for (let i = 0; i < 15; i++) {
    const slug = `race-${i}`;
    t.equal((await first.admin({ method: 'POST', url: '/admin/schedules', payload: { slug, name: 'Race' } })).statusCode, 201);
    const answers = await Promise.all([
      first.admin({ method: 'PATCH', url: `/admin/schedules/${slug}`, payload: { weekly } }),
      second.admin({ method: 'PATCH', url: `/admin/schedules/${slug}`, payload: { exceptions } }),
    ]);
    t.same(
      answers.map((a) => a.statusCode),
      [200, 200],
    );
    t.match((await first.admin({ method: 'GET', url: `/admin/schedules/${slug}` })).json(), { weekly, exceptions }, `round ${i}: neither PATCH is lost`);
    const [later, earlier] = (await first.admin({ method: 'GET', url: `/admin/audit?entity=schedule&entityId=${slug}` })).json().items;
    t.same(later.before, earlier.after, `round ${i}: the later PATCH audits as before what the earlier one left`);
  }
});

t.test('a PUT or PATCH of the schedule as GET shows it changes nothing: same updatedAt, no audit entry; a real change still does', async (t) => {
  const { admin } = await buildTestApp(t);
  const created = await admin({
    method: 'POST',
    url: '/admin/schedules',
    payload: {
      slug: 'support',
      name: 'Support',
      timezone: 'Europe/London',
      weekly: WEEKDAYS_9_TO_6,
      exceptions: [
        { date: '2026-12-31', open: '09:00', close: '13:00', note: 'short day' },
        { date: '2026-12-25', closed: true },
      ],
    },
  });
  t.equal(created.statusCode, 201, created.body);
  const trail = async () => (await admin({ method: 'GET', url: '/admin/audit?entity=schedule&entityId=support' })).json().items.length;
  const stored = (await admin({ method: 'GET', url: '/admin/schedules/support' })).json();
  const { slug: _slug, createdAt: _c, updatedAt: _u, override: _o, ...body } = stored;
  const entries = await trail();
  for (const [method, payload] of [
    ['PUT', body],
    ['PUT', body],
    ['PATCH', { exceptions: stored.exceptions }],
  ] as const) {
    const res = await admin({ method, url: '/admin/schedules/support', payload });
    t.equal(res.statusCode, 200, res.body);
    t.same(res.json(), stored, `${method}: answered the schedule as it is, updatedAt included`);
  }
  t.equal(await trail(), entries, 'no audit entry for a write that changed nothing');
  const changed = await admin({ method: 'PATCH', url: '/admin/schedules/support', payload: { name: 'Support desk' } });
  t.equal(changed.json().name, 'Support desk');
  t.equal(await trail(), entries + 1, 'a real change is audited');
});
