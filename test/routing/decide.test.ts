/**
 * decide(): the pure rule evaluation behind every callback. No database: the snapshot lookups are
 * built in memory, and calls go through the real Exotel parameter parser, so every case uses the
 * parameter shapes Exotel actually sends (national numbers, quoted digits, 'outbound dial', ...).
 */
import t from 'tap';
import { collectParams, parseExotelCall, type ExotelCall } from '../../src/exotel/params.js';
import { decide, type Decision } from '../../src/routing/decide.js';
import type { Action, Conditions, Flow, Rule } from '../../src/schemas/flow.js';
import type { ScheduleRules } from '../../src/schemas/schedule.js';
import type { RulesSnapshot, VipMember } from '../../src/routing/snapshot.js';

type Lookups = Pick<RulesSnapshot, 'vipLists' | 'schedules'>;

// 2026-01-05 is a Monday; Kolkata is UTC+05:30 all year. AT = Monday 12:00 IST.
const AT = new Date('2026-01-05T06:30:00Z');
const VIP = '+919812345678';
const OTHER = '+919876543210';
const EXOPHONE = '+918047115777';

/** A callback as Exotel sends it (GET query string), parsed with the default country IN. */
function callOf(query: string): ExotelCall {
  const { params, warnings } = collectParams({ query });
  return parseExotelCall(params, { defaultCountry: 'IN', warnings });
}

/** A query string encoded the way an HTTP client encodes it (`+` → %2B, `"` → %22). */
function qs(params: Record<string, string>): string {
  return new URLSearchParams({ CallSid: 'b6cfaf0d5cbd4a5f8a4e9b7a1d2c3e4f', ...params }).toString();
}

/** An incoming call from the VIP's mobile (national form) to the ExoPhone (national form). */
const BASE = { CallFrom: '09812345678', CallTo: '08047115777', Direction: 'incoming' };
const call = (extra: Record<string, string> = {}, without: string[] = []): ExotelCall => {
  const params: Record<string, string> = { ...BASE, ...extra };
  for (const key of without) delete params[key];
  return callOf(qs(params));
};

const KOLKATA_OFFICE: ScheduleRules = {
  timezone: 'Asia/Kolkata',
  weekly: (['mon', 'tue', 'wed', 'thu', 'fri'] as const).map((day) => ({ day, open: '09:00', close: '18:00' })),
  exceptions: [{ date: '2026-01-26', closed: true }],
};
/** Open only in the small hours of Monday, Kolkata time (a Sunday in UTC). */
const MONDAY_SMALL_HOURS: ScheduleRules = { timezone: 'Asia/Kolkata', weekly: [{ day: 'mon', open: '00:00', close: '06:00' }], exceptions: [] };

function lookups(opts: { vip?: Record<string, Record<string, number | null>>; schedules?: Record<string, ScheduleRules> } = {}): Lookups {
  const vip = opts.vip ?? { gold: { [VIP]: null } };
  const schedules = opts.schedules ?? { support: KOLKATA_OFFICE, night: MONDAY_SMALL_HOURS };
  return {
    vipLists: new Map(
      Object.entries(vip).map(([slug, entries]) => [
        slug,
        new Map<string, VipMember>(Object.entries(entries).map(([number, expiresAt]) => [number, { expiresAt }])),
      ]),
    ),
    schedules: new Map(Object.entries(schedules)),
  };
}
const LOOKUPS = lookups();

const OTHERWISE: Action = { select: 'otherwise' };
const ON_ERROR: Action = { select: 'on-error' };
const MATCHED: Action = { select: 'matched' };

function flowOf(rules: Rule[]): Flow {
  return {
    slug: 'inbound',
    name: 'Main line',
    type: 'switch',
    mode: 'sync',
    rules,
    otherwise: OTHERWISE,
    onError: ON_ERROR,
    createdAt: new Date('2026-01-01T00:00:00Z'),
    updatedAt: new Date('2026-01-01T00:00:00Z'),
  };
}
const rule = (name: string, when: Conditions, then: Action = MATCHED): Rule => ({ name, when, then });

/** One rule with one condition set; the decision says whether it held. */
function single(when: Conditions, c: ExotelCall, at: Date = AT, rules: Lookups = LOOKUPS): Decision {
  return decide(rules, flowOf([rule('only', when)]), c, at);
}

interface ConditionCase {
  name: string;
  when: Conditions;
  call: ExotelCall;
  held: boolean;
  /** What the trace's `why` must say. */
  why: RegExp;
  at?: Date;
  rules?: Lookups;
}

/** Each case is its own test: the single condition holds or not, the rule follows, the trace explains. */
function conditionCases(group: string, cases: ConditionCase[]): void {
  t.test(group, async (t) => {
    for (const c of cases) {
      t.test(c.name, async (t) => {
        const d = single(c.when, c.call, c.at, c.rules);
        t.equal(d.error, null, 'no error');
        t.equal(d.decidedBy, c.held ? 'rule' : 'otherwise', c.held ? 'the rule decides' : 'otherwise decides');
        t.strictSame(d.action, c.held ? MATCHED : OTHERWISE);
        t.equal(d.matchedRule, c.held ? 'only' : null);
        const trace = d.trace[0];
        t.equal(trace?.result, c.held ? 'matched' : 'not matched');
        t.equal(trace?.conditions.length, 1, 'the trace lists the one condition');
        t.equal(trace?.conditions[0]?.held, c.held, 'the trace says whether it held');
        t.match(trace?.conditions[0]?.why, c.why, 'the trace says why');
      });
    }
  });
}

// --- Rule order -----------------------------------------------------------------------------------

t.test('rule order', async (t) => {
  const flow = flowOf([
    rule('vip', { callerIn: 'gold' }, { select: 'vip' }),
    rule('everyone', {}, { select: 'everyone' }),
    rule('office hours', { openBy: 'support' }, { select: 'office' }),
  ]);

  t.test('the first matching rule wins even though later rules would match too; later rules are not evaluated', async (t) => {
    const d = decide(LOOKUPS, flow, call(), AT);
    t.equal(d.decidedBy, 'rule');
    t.equal(d.matchedRule, 'vip');
    t.strictSame(d.action, { select: 'vip' });
    t.equal(d.error, null);
    t.strictSame(
      d.trace.map((r) => [r.index, r.name, r.result]),
      [
        [0, 'vip', 'matched'],
        [1, 'everyone', 'not evaluated'],
        [2, 'office hours', 'not evaluated'],
      ],
    );
    t.strictSame(d.trace[1]?.conditions, [], 'a rule not evaluated lists no conditions');
    t.strictSame(d.trace[2]?.conditions, []);
  });

  t.test('a rule that does not match passes the call on to the next rule', async (t) => {
    const d = decide(LOOKUPS, flow, call({ CallFrom: '09876543210' }), AT);
    t.equal(d.matchedRule, 'everyone');
    t.strictSame(d.action, { select: 'everyone' });
    t.strictSame(
      d.trace.map((r) => r.result),
      ['not matched', 'matched', 'not evaluated'],
    );
  });

  t.test('when no rule matches, otherwise decides and every rule was evaluated', async (t) => {
    const none = flowOf([rule('vip', { callerIn: 'gold' }), rule('press 1', { digits: { equals: '1' } })]);
    const d = decide(LOOKUPS, none, call({ CallFrom: '09876543210', digits: '"2"' }), AT);
    t.strictSame(d, {
      action: OTHERWISE,
      decidedBy: 'otherwise',
      matchedRule: null,
      error: null,
      trace: [
        { index: 0, name: 'vip', result: 'not matched', conditions: [{ condition: 'callerIn gold', held: false, why: `${OTHER} is not in gold` }] },
        { index: 1, name: 'press 1', result: 'not matched', conditions: [{ condition: 'digits', held: false, why: "digits '2' ≠ '1'" }] },
      ],
    });
  });

  t.test('a flow without rules answers otherwise with an empty trace', async (t) => {
    const d = decide(LOOKUPS, flowOf([]), call(), AT);
    t.strictSame(d, { action: OTHERWISE, decidedBy: 'otherwise', matchedRule: null, error: null, trace: [] });
  });

  t.test('a rule with an empty `when` always matches, with no conditions in its trace', async (t) => {
    const d = decide(LOOKUPS, flowOf([rule('catch-all', {})]), callOf(''), AT);
    t.equal(d.decidedBy, 'rule');
    t.equal(d.matchedRule, 'catch-all');
    t.strictSame(d.trace, [{ index: 0, name: 'catch-all', result: 'matched', conditions: [] }]);
  });
});

// --- Each condition alone -------------------------------------------------------------------------

conditionCases('callerIn', [
  {
    name: 'caller in national form 0XXXXXXXXXX matches the E.164 entry',
    when: { callerIn: 'gold' },
    call: call({ CallFrom: '09812345678' }),
    held: true,
    why: /^\+919812345678 is in gold$/,
  },
  {
    name: 'caller as 91XXXXXXXXXX (no plus) matches the E.164 entry',
    when: { callerIn: 'gold' },
    call: call({ CallFrom: '919812345678' }),
    held: true,
    why: /\+919812345678 is in gold/,
  },
  {
    name: 'caller as +91XXXXXXXXXX (plus %-encoded) matches the E.164 entry',
    when: { callerIn: 'gold' },
    call: call({ CallFrom: '+919812345678' }),
    held: true,
    why: /\+919812345678 is in gold/,
  },
  {
    name: 'caller as +91XXXXXXXXXX with the plus sent unencoded (arrives as a space) matches',
    when: { callerIn: 'gold' },
    call: callOf('CallSid=abc&CallFrom=+919812345678'),
    held: true,
    why: /\+919812345678 is in gold/,
  },
  {
    name: 'caller as 10 bare digits matches the E.164 entry',
    when: { callerIn: 'gold' },
    call: call({ CallFrom: '9812345678' }),
    held: true,
    why: /\+919812345678 is in gold/,
  },
  {
    name: 'a caller not on the list does not hold, and the trace names number and list',
    when: { callerIn: 'gold' },
    call: call({ CallFrom: '09876543210' }),
    held: false,
    why: /^\+919876543210 is not in gold$/,
  },
  {
    name: 'From is the caller when CallFrom is not sent',
    when: { callerIn: 'gold' },
    call: call({ From: '09812345678' }, ['CallFrom']),
    held: true,
    why: /\+919812345678 is in gold/,
  },
  {
    name: 'caller missing (no CallFrom, no From) does not hold',
    when: { callerIn: 'gold' },
    call: call({}, ['CallFrom']),
    held: false,
    why: /caller number unknown \(not sent\)/,
  },
  {
    name: 'a caller number that is not a phone number does not hold; the trace shows what was sent',
    when: { callerIn: 'gold' },
    call: call({ CallFrom: 'anonymous' }),
    held: false,
    why: /caller number unknown \(anonymous\)/,
  },
]);

conditionCases('callerNotIn', [
  {
    name: 'a caller on the list does not hold',
    when: { callerNotIn: 'gold' },
    call: call({ CallFrom: '919812345678' }),
    held: false,
    why: /\+919812345678 is in gold/,
  },
  {
    name: 'a caller not on the list holds',
    when: { callerNotIn: 'gold' },
    call: call({ CallFrom: '09876543210' }),
    held: true,
    why: /\+919876543210 is not in gold/,
  },
  {
    name: 'an unknown caller (CallFrom not sent) holds: nobody unknown is on a list',
    when: { callerNotIn: 'gold' },
    call: call({}, ['CallFrom']),
    held: true,
    why: /caller number unknown/,
  },
  {
    name: 'a caller number that does not parse holds',
    when: { callerNotIn: 'gold' },
    call: call({ CallFrom: '12' }),
    held: true,
    why: /caller number unknown \(12\)/,
  },
]);

t.test('VIP entry expiry', async (t) => {
  const cases: Array<{ name: string; expiresAt: number | null; live: boolean }> = [
    { name: 'an entry that expired before the call no longer counts', expiresAt: AT.getTime() - 1, live: false },
    { name: 'an entry expiring exactly at the instant of the call no longer counts', expiresAt: AT.getTime(), live: false },
    { name: 'an entry expiring after the call still counts', expiresAt: AT.getTime() + 1, live: true },
    { name: 'an entry without expiry always counts', expiresAt: null, live: true },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const rules = lookups({ vip: { gold: { [VIP]: c.expiresAt } } });
      const held = single({ callerIn: 'gold' }, call(), AT, rules);
      t.equal(held.decidedBy, c.live ? 'rule' : 'otherwise', 'callerIn');
      t.equal(held.trace[0]?.conditions[0]?.held, c.live);
      const notIn = single({ callerNotIn: 'gold' }, call(), AT, rules);
      t.equal(notIn.decidedBy, c.live ? 'otherwise' : 'rule', 'callerNotIn is the opposite');
      if (!c.live) {
        t.equal(
          held.trace[0]?.conditions[0]?.why,
          `${VIP}'s entry in gold expired at ${new Date(c.expiresAt!).toISOString()}`,
          'the trace says when it expired',
        );
      }
    });
  }
});

conditionCases('openBy / closedBy at schedule edges (Kolkata schedule, instants given in UTC)', [
  {
    name: 'openBy holds exactly at opening (09:00 IST = 03:30Z)',
    when: { openBy: 'support' },
    call: call(),
    at: new Date('2026-01-05T03:30:00Z'),
    held: true,
    why: /^support is open at mon 2026-01-05 09:00 Asia\/Kolkata: weekly window mon 09:00-18:00$/,
  },
  {
    name: 'openBy does not hold a millisecond before opening',
    when: { openBy: 'support' },
    call: call(),
    at: new Date('2026-01-05T03:29:59.999Z'),
    held: false,
    why: /^support is closed at mon 2026-01-05 08:59 Asia\/Kolkata: outside weekly windows$/,
  },
  {
    name: 'openBy holds a millisecond before closing',
    when: { openBy: 'support' },
    call: call(),
    at: new Date('2026-01-05T12:29:59.999Z'),
    held: true,
    why: /support is open/,
  },
  {
    name: 'openBy does not hold exactly at closing (18:00 IST = 12:30Z)',
    when: { openBy: 'support' },
    call: call(),
    at: new Date('2026-01-05T12:30:00Z'),
    held: false,
    why: /support is closed/,
  },
  {
    name: 'closedBy does not hold exactly at opening',
    when: { closedBy: 'support' },
    call: call(),
    at: new Date('2026-01-05T03:30:00Z'),
    held: false,
    why: /support is open/,
  },
  {
    name: 'closedBy holds a millisecond before opening',
    when: { closedBy: 'support' },
    call: call(),
    at: new Date('2026-01-05T03:29:59.999Z'),
    held: true,
    why: /support is closed/,
  },
  {
    name: 'closedBy holds exactly at closing',
    when: { closedBy: 'support' },
    call: call(),
    at: new Date('2026-01-05T12:30:00Z'),
    held: true,
    why: /support is closed/,
  },
  {
    name: 'closedBy holds on a dated holiday that is a weekday',
    when: { closedBy: 'support' },
    call: call(),
    at: new Date('2026-01-26T06:30:00Z'),
    held: true,
    why: /^support is closed at mon 2026-01-26 12:00 Asia\/Kolkata: exception 2026-01-26: closed$/,
  },
  {
    name: 'the schedule is read in its own zone: Sunday 23:00 UTC is Monday 04:30 IST, inside mon 00:00-06:00',
    when: { openBy: 'night' },
    call: call(),
    at: new Date('2026-01-04T23:00:00Z'),
    held: true,
    why: /night is open/,
  },
  {
    name: 'Monday 03:00 UTC is 08:30 IST, after the mon 00:00-06:00 window',
    when: { openBy: 'night' },
    call: call(),
    at: new Date('2026-01-05T03:00:00Z'),
    held: false,
    why: /night is closed/,
  },
]);

conditionCases('digits', [
  {
    name: 'equals holds for quoted digits "42" as Exotel sends them',
    when: { digits: { equals: '42' } },
    call: call({ digits: '"42"' }),
    held: true,
    why: /digits '42' = '42'/,
  },
  { name: 'equals holds for digits sent without quotes', when: { digits: { equals: '42' } }, call: call({ digits: '42' }), held: true, why: /'42' = '42'/ },
  { name: 'equals does not hold for other digits', when: { digits: { equals: '4' } }, call: call({ digits: '"42"' }), held: false, why: /digits '42' ≠ '4'/ },
  {
    name: 'equals compares text, so leading zeros count ("007" ≠ "7")',
    when: { digits: { equals: '7' } },
    call: call({ digits: '"007"' }),
    held: false,
    why: /'007' ≠ '7'/,
  },
  {
    name: 'in holds when the digits are one of the values',
    when: { digits: { in: ['1', '42'] } },
    call: call({ digits: '"42"' }),
    held: true,
    why: /^digits '42' is one of the 2 listed$/,
  },
  {
    name: 'in does not hold when the digits are none of the values',
    when: { digits: { in: ['1', '2'] } },
    call: call({ digits: '"42"' }),
    held: false,
    why: /^digits '42' is none of the 2 listed$/,
  },
  {
    name: 'in with one value names it (not "one of 1")',
    when: { digits: { in: ['42'] } },
    call: call({ digits: '"42"' }),
    held: true,
    why: /^digits '42' is '42'$/,
  },
  {
    name: 'in with one value that does not hold names it',
    when: { digits: { in: ['1'] } },
    call: call({ digits: '"42"' }),
    held: false,
    why: /^digits '42' is not '1'$/,
  },
  {
    name: 'prefix holds when the digits start with it',
    when: { digits: { prefix: '4' } },
    call: call({ digits: '"42"' }),
    held: true,
    why: /digits '42' starts with '4'/,
  },
  {
    name: 'prefix does not hold otherwise',
    when: { digits: { prefix: '2' } },
    call: call({ digits: '"42"' }),
    held: false,
    why: /digits '42' does not start with '2'/,
  },
  { name: 'equals does not hold when digits are not sent', when: { digits: { equals: '42' } }, call: call(), held: false, why: /no digits sent/ },
  { name: 'in does not hold when digits are not sent', when: { digits: { in: ['42'] } }, call: call(), held: false, why: /no digits sent/ },
  { name: 'prefix does not hold when digits are not sent', when: { digits: { prefix: '4' } }, call: call(), held: false, why: /no digits sent/ },
  {
    name: 'empty quoted digits "" (nothing pressed) do not equal a digit',
    when: { digits: { equals: '1' } },
    call: call({ digits: '""' }),
    held: false,
    why: /digits '' ≠ '1'/,
  },
]);

conditionCases('callerPrefix', [
  {
    name: 'a national caller number is compared in E.164 and holds for its prefix',
    when: { callerPrefix: ['+9198'] },
    call: call({ CallFrom: '09812345678' }),
    held: true,
    why: /^\+919812345678 starts with \+9198$/,
  },
  {
    name: 'any one of several prefixes is enough',
    when: { callerPrefix: ['+9180', '+91981'] },
    call: call({ CallFrom: '919812345678' }),
    held: true,
    why: /starts with \+91981/,
  },
  {
    name: 'no prefix matching does not hold',
    when: { callerPrefix: ['+9180', '+1'] },
    call: call({ CallFrom: '09812345678' }),
    held: false,
    why: /^\+919812345678 has none of the prefixes$/,
  },
  {
    name: 'a national number is not read as its digits (+98 is Iran, not 098…)',
    when: { callerPrefix: ['+98'] },
    call: call({ CallFrom: '09812345678' }),
    held: false,
    why: /none of the prefixes/,
  },
  { name: 'caller missing does not hold', when: { callerPrefix: ['+91'] }, call: call({}, ['CallFrom']), held: false, why: /caller number unknown/ },
]);

conditionCases('calledNumber (the ExoPhone)', [
  {
    name: 'an ExoPhone sent in national form matches its E.164 form in the rule',
    when: { calledNumber: [EXOPHONE] },
    call: call({ CallTo: '08047115777' }),
    held: true,
    why: /^\+918047115777 is listed$/,
  },
  {
    name: 'an ExoPhone sent as +91… matches',
    when: { calledNumber: ['+919999999999', EXOPHONE] },
    call: call({ CallTo: '+918047115777' }),
    held: true,
    why: /is listed/,
  },
  {
    name: 'another ExoPhone does not hold',
    when: { calledNumber: ['+918047115778'] },
    call: call({ CallTo: '08047115777' }),
    held: false,
    why: /^\+918047115777 is not listed$/,
  },
  {
    name: 'To is the called number when CallTo is not sent',
    when: { calledNumber: [EXOPHONE] },
    call: call({ To: '08047115777' }, ['CallTo']),
    held: true,
    why: /is listed/,
  },
  { name: 'called number missing does not hold', when: { calledNumber: [EXOPHONE] }, call: call({}, ['CallTo']), held: false, why: /called number unknown/ },
]);

conditionCases('direction', [
  {
    name: "'incoming' holds for an incoming call",
    when: { direction: 'incoming' },
    call: call({ Direction: 'incoming' }),
    held: true,
    why: /direction is incoming/,
  },
  {
    name: 'case does not matter on either side',
    when: { direction: 'Incoming' },
    call: call({ Direction: 'INCOMING' }),
    held: true,
    why: /direction is incoming/,
  },
  {
    name: "rule 'outbound dial' holds for Exotel's 'outbound-dial'",
    when: { direction: 'outbound dial' },
    call: call({ Direction: 'outbound-dial' }),
    held: true,
    why: /direction is outbound-dial/,
  },
  {
    name: "rule 'outbound-dial' holds for Exotel's 'outbound dial'",
    when: { direction: 'outbound-dial' },
    call: call({ Direction: 'outbound dial' }),
    held: true,
    why: /direction is outbound-dial/,
  },
  {
    name: "rule 'Outbound Dial' holds for 'outbound dial' sent with + for the space",
    when: { direction: 'Outbound Dial' },
    call: callOf('CallSid=abc&Direction=outbound+dial'),
    held: true,
    why: /outbound-dial/,
  },
  {
    name: 'surrounding spaces in the rule do not stop it from matching',
    when: { direction: ' incoming ' },
    call: call({ Direction: 'incoming' }),
    held: true,
    why: /direction is incoming/,
  },
  {
    name: 'another direction does not hold',
    when: { direction: 'incoming' },
    call: call({ Direction: 'outbound-dial' }),
    held: false,
    why: /direction is outbound-dial/,
  },
  { name: 'direction missing does not hold', when: { direction: 'incoming' }, call: call({}, ['Direction']), held: false, why: /direction is not sent/ },
]);

conditionCases('customField', [
  {
    name: 'equals holds for the same value',
    when: { customField: { equals: 'order-123' } },
    call: call({ CustomField: 'order-123' }),
    held: true,
    why: /CustomField 'order-123' = 'order-123'/,
  },
  {
    name: 'equals does not hold for another value',
    when: { customField: { equals: 'order-124' } },
    call: call({ CustomField: 'order-123' }),
    held: false,
    why: /≠ 'order-124'/,
  },
  {
    name: 'equals compares exactly (case matters)',
    when: { customField: { equals: 'ORDER-123' } },
    call: call({ CustomField: 'order-123' }),
    held: false,
    why: /≠/,
  },
  {
    name: 'in holds when the value is listed',
    when: { customField: { in: ['campaign-a', 'order-123'] } },
    call: call({ CustomField: 'order-123' }),
    held: true,
    why: /^CustomField 'order-123' is one of the 2 listed$/,
  },
  {
    name: 'in does not hold when the value is not listed',
    when: { customField: { in: ['campaign-a'] } },
    call: call({ CustomField: 'order-123' }),
    held: false,
    why: /^CustomField 'order-123' is not 'campaign-a'$/,
  },
  {
    name: 'in does not hold when the value is none of several',
    when: { customField: { in: ['campaign-a', 'campaign-b', 'campaign-c'] } },
    call: call({ CustomField: 'order-123' }),
    held: false,
    why: /^CustomField 'order-123' is none of the 3 listed$/,
  },
  { name: 'missing CustomField does not hold', when: { customField: { equals: 'order-123' } }, call: call(), held: false, why: /no CustomField sent/ },
]);

conditionCases('dialCallStatus', [
  {
    name: "['busy','no-answer'] holds for 'no-answer'",
    when: { dialCallStatus: ['busy', 'no-answer'] },
    call: call({ DialCallStatus: 'no-answer' }),
    held: true,
    why: /DialCallStatus is no-answer/,
  },
  {
    name: "['busy','no-answer'] holds for 'no answer' (the spelling in the Dial Whom docs)",
    when: { dialCallStatus: ['busy', 'no-answer'] },
    call: call({ DialCallStatus: 'no answer' }),
    held: true,
    why: /DialCallStatus is no-answer/,
  },
  {
    name: "['busy','no-answer'] holds for 'No Answer'",
    when: { dialCallStatus: ['busy', 'no-answer'] },
    call: call({ DialCallStatus: 'No Answer' }),
    held: true,
    why: /no-answer/,
  },
  {
    name: "['busy','no-answer'] holds for 'busy'",
    when: { dialCallStatus: ['busy', 'no-answer'] },
    call: call({ DialCallStatus: 'busy' }),
    held: true,
    why: /DialCallStatus is busy/,
  },
  {
    name: "a rule written 'No Answer' holds for 'no-answer'",
    when: { dialCallStatus: ['No Answer'] },
    call: call({ DialCallStatus: 'no-answer' }),
    held: true,
    why: /no-answer/,
  },
  {
    name: 'surrounding spaces in a rule status do not stop it from matching',
    when: { dialCallStatus: [' busy '] },
    call: call({ DialCallStatus: 'busy' }),
    held: true,
    why: /DialCallStatus is busy/,
  },
  {
    name: "['busy','no-answer'] does not hold for 'completed'",
    when: { dialCallStatus: ['busy', 'no-answer'] },
    call: call({ DialCallStatus: 'completed' }),
    held: false,
    why: /DialCallStatus is completed/,
  },
  { name: 'missing DialCallStatus does not hold', when: { dialCallStatus: ['busy'] }, call: call(), held: false, why: /DialCallStatus is not sent/ },
]);

// --- Several conditions ---------------------------------------------------------------------------

t.test('several conditions in one rule', async (t) => {
  const when: Conditions = { callerIn: 'gold', openBy: 'support', digits: { equals: '1' }, direction: 'incoming' };

  t.test('the rule matches when every condition holds', async (t) => {
    const d = single(when, call({ digits: '"1"' }));
    t.equal(d.decidedBy, 'rule');
    t.strictSame(
      d.trace[0]?.conditions.map((c) => [c.condition, c.held]),
      [
        ['callerIn gold', true],
        ['openBy support', true],
        ['digits', true],
        ['direction incoming', true],
      ],
    );
  });

  t.test('one condition not holding is enough to skip the rule; the trace lists every condition with held and why', async (t) => {
    const d = single(when, call({ digits: '"2"' }));
    t.equal(d.decidedBy, 'otherwise');
    t.strictSame(d.trace[0], {
      index: 0,
      name: 'only',
      result: 'not matched',
      conditions: [
        { condition: 'callerIn gold', held: true, why: `${VIP} is in gold` },
        { condition: 'openBy support', held: true, why: 'support is open at mon 2026-01-05 12:00 Asia/Kolkata: weekly window mon 09:00-18:00' },
        { condition: 'digits', held: false, why: "digits '2' ≠ '1'" },
        { condition: 'direction incoming', held: true, why: 'direction is incoming' },
      ],
    });
  });

  t.test('conditions after a failed one are still evaluated and traced', async (t) => {
    const d = single(when, call({ CallFrom: '09876543210', digits: '"1"' }), new Date('2026-01-05T20:00:00Z'));
    t.strictSame(
      d.trace[0]?.conditions.map((c) => c.held),
      [false, false, true, true],
    );
  });

  t.test('every kind of condition at once', async (t) => {
    const all: Conditions = {
      callerIn: 'gold',
      callerNotIn: 'blocked',
      openBy: 'support',
      closedBy: 'night',
      digits: { prefix: '4' },
      callerPrefix: ['+9198'],
      calledNumber: [EXOPHONE],
      direction: 'incoming',
      customField: { equals: 'x' },
      dialCallStatus: ['busy'],
    };
    const rules = lookups({ vip: { gold: { [VIP]: null }, blocked: { [OTHER]: null } } });
    const c = call({ digits: '"42"', CustomField: 'x', DialCallStatus: 'busy' });
    const d = single(all, c, AT, rules);
    t.equal(d.decidedBy, 'rule');
    t.strictSame(
      d.trace[0]?.conditions.map((x) => [x.condition, x.held]),
      [
        ['callerIn gold', true],
        ['callerNotIn blocked', true],
        ['openBy support', true],
        ['closedBy night', true],
        ['digits', true],
        ['callerPrefix', true],
        ['calledNumber', true],
        ['direction incoming', true],
        ['customField', true],
        ['dialCallStatus', true],
      ],
    );
    const miss = single(all, call({ digits: '"42"', CustomField: 'x', DialCallStatus: 'failed' }), AT, rules);
    t.equal(miss.decidedBy, 'otherwise', 'the last one failing is enough');
  });
});

// --- Missing references ---------------------------------------------------------------------------

t.test('a rule referring to something missing from the snapshot answers onError', async (t) => {
  const cases: Array<{ name: string; when: Conditions; call: ExotelCall; slug: RegExp }> = [
    { name: 'callerIn a VIP list that is not loaded', when: { callerIn: 'silver' }, call: call(), slug: /vip-list 'silver'/ },
    {
      name: 'callerNotIn a VIP list that is not loaded, even for an unknown caller',
      when: { callerNotIn: 'silver' },
      call: call({}, ['CallFrom']),
      slug: /vip-list 'silver'/,
    },
    { name: 'openBy a schedule that is not loaded', when: { openBy: 'weekend' }, call: call(), slug: /schedule 'weekend'/ },
    { name: 'closedBy a schedule that is not loaded', when: { closedBy: 'weekend' }, call: call(), slug: /schedule 'weekend'/ },
    {
      name: 'a missing schedule, even when another condition of the rule fails',
      when: { digits: { equals: '9' }, openBy: 'weekend' },
      call: call(),
      slug: /schedule 'weekend'/,
    },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const d = single(c.when, c.call);
      t.equal(d.decidedBy, 'onError');
      t.strictSame(d.action, ON_ERROR, "the flow's onError action");
      t.equal(d.matchedRule, null);
      t.match(d.error, c.slug, 'the error names the missing slug');
    });
  }

  t.test('the rules evaluated before the broken one stay in the trace', async (t) => {
    const flow = flowOf([rule('vip', { callerIn: 'gold' }), rule('broken', { openBy: 'weekend' }), rule('after', {})]);
    const d = decide(LOOKUPS, flow, call({ CallFrom: '09876543210' }), AT);
    t.equal(d.decidedBy, 'onError');
    t.strictSame(d.action, ON_ERROR);
    t.match(d.error, /schedule 'weekend'/);
    t.equal(d.trace[0]?.result, 'not matched');
    t.notOk(
      d.trace.some((r) => r.result === 'matched'),
      'no later rule is matched after the error',
    );
  });

  t.test('a broken rule after the matching one is never evaluated, so it causes no error', async (t) => {
    const flow = flowOf([rule('vip', { callerIn: 'gold' }), rule('broken', { openBy: 'weekend' })]);
    const d = decide(LOOKUPS, flow, call(), AT);
    t.equal(d.decidedBy, 'rule');
    t.equal(d.error, null);
    t.equal(d.trace[1]?.result, 'not evaluated');
  });

  t.test('a schedule that cannot be evaluated (bad timezone in the snapshot) answers onError and says why', async (t) => {
    const rules = lookups({ schedules: { support: { ...KOLKATA_OFFICE, timezone: 'Mars/Olympus_Mons' } } });
    const d = single({ openBy: 'support' }, call(), AT, rules);
    t.equal(d.decidedBy, 'onError');
    t.strictSame(d.action, ON_ERROR);
    t.match(d.error, /timezone/);
  });
});

// --- Purity ---------------------------------------------------------------------------------------

t.test('decide neither mutates its inputs nor depends on anything but them', async (t) => {
  const deepFreeze = <T>(value: T): T => {
    if (value && typeof value === 'object' && !(value instanceof Map) && !Object.isFrozen(value)) {
      for (const v of Object.values(value)) deepFreeze(v);
      Object.freeze(value);
    }
    return value;
  };
  const flow = deepFreeze(flowOf([rule('everything', { callerIn: 'gold', openBy: 'support', digits: { in: ['1', '2'] }, dialCallStatus: ['no answer'] })]));
  const c = deepFreeze(call({ digits: '"2"', DialCallStatus: 'no-answer' }));
  const first = decide(LOOKUPS, flow, c, AT);
  t.equal(first.decidedBy, 'rule', 'frozen inputs decide normally (a write to them would throw and show as onError)');
  t.equal(first.error, null);
  t.strictSame(decide(LOOKUPS, flow, c, AT), first, 'the same inputs give the same decision');
  t.equal(decide(LOOKUPS, flow, c, new Date('2026-01-05T20:00:00Z')).decidedBy, 'otherwise', 'only `at`, not the wall clock, decides the schedule');
});

conditionCases('openBy / closedBy under a schedule override: the override decides, and the trace says so', [
  {
    name: 'closedBy holds inside office hours while an emergency close lasts',
    when: { closedBy: 'support' },
    call: call(),
    held: true,
    rules: lookups({
      schedules: { support: { ...KOLKATA_OFFICE, override: { open: false, reason: 'fire drill', until: new Date('2026-01-05T08:30:00Z'), setAt: AT } } },
    }),
    why: /^support is closed at mon 2026-01-05 12:00 Asia\/Kolkata: override: fire drill until 2026-01-05T14:00:00\+05:30$/,
  },
  {
    name: 'openBy holds on a holiday the override opens, until deleted',
    when: { openBy: 'support' },
    call: call(),
    at: new Date('2026-01-26T06:30:00Z'),
    held: true,
    rules: lookups({ schedules: { support: { ...KOLKATA_OFFICE, override: { open: true, reason: 'recall campaign', until: null, setAt: AT } } } }),
    why: /^support is open at mon 2026-01-26 12:00 Asia\/Kolkata: override: recall campaign until it is deleted$/,
  },
  {
    name: 'an override whose until has passed no longer decides, nor shows in the trace',
    when: { closedBy: 'support' },
    call: call(),
    held: false,
    rules: lookups({
      schedules: { support: { ...KOLKATA_OFFICE, override: { open: false, reason: 'old', until: new Date('2026-01-05T06:00:00Z'), setAt: AT } } },
    }),
    why: /^support is open at mon 2026-01-05 12:00 Asia\/Kolkata: weekly window mon 09:00-18:00$/,
  },
]);
