import t from 'tap';
import { collectParams, DEFAULT_LIMITS, parseExotelCall, type ExotelCall, type ParseLimits } from '../../src/exotel/params.js';

/** A GET callback as Exotel sends it: the query string, parsed with the default country IN. */
function fromQuery(query: string, opts: { secretKeys?: string[]; limits?: ParseLimits } = {}): ExotelCall {
  const { params, warnings } = collectParams({ query }, opts.limits);
  return parseExotelCall(params, { defaultCountry: 'IN', secretKeys: opts.secretKeys, warnings, limits: opts.limits });
}

/** Query string built the way a client encodes it (spaces as `+`, brackets and quotes %-escaped). */
function qs(entries: Array<[string, string]>): string {
  return new URLSearchParams(entries).toString();
}

const phone = (raw: string, e164: string | null) => ({ raw, e164 });

const emptyCall = {
  callSid: null,
  callFrom: null,
  callTo: null,
  from: null,
  to: null,
  direction: null,
  callStatus: null,
  callType: null,
  dialCallStatus: null,
  dialCallDuration: null,
  dialWhomNumber: null,
  outgoingPhoneNumber: null,
  digits: null,
  customField: null,
  recordingUrl: null,
  created: null,
  startTime: null,
  currentTime: null,
  endTime: null,
  status: null,
  eventType: null,
  legs: [],
  raw: {},
  warnings: [],
};

// --- Documented requests (docs/exotel.md) --------------------------------------------------------------

t.test('Passthru after a Connect applet: every documented field, Legs as an ordered array, raw kept verbatim', async (t) => {
  const entries: Array<[string, string]> = [
    ['CallSid', 'b6cfaf0d5cbd4a5f8a4e9b7a1d2c3e4f'],
    ['CallFrom', '09876543210'],
    ['CallTo', '08047115777'],
    ['Direction', 'incoming'],
    ['Created', '2026-11-20 10:00:00'],
    ['DialCallDuration', '35'],
    ['StartTime', '2026-11-20 10:00:01'],
    ['EndTime', '1970-01-01 05:30:00'],
    ['CallType', 'completed'],
    ['DialWhomNumber', '07200498123'],
    ['From', '09876543210'],
    ['To', '08047115777'],
    ['CurrentTime', '2026-11-20 10:01:05'],
    ['DialCallStatus', 'completed'],
    ['Legs[0][CauseCode]', 'NO_ANSWER'],
    ['Legs[0][Cause]', '19'],
    ['Legs[0][Type]', 'single'],
    ['Legs[0][OnCallDuration]', '0'],
    ['Legs[0][Number]', '09880847047'],
    ['Legs[1][CauseCode]', 'NORMAL_CLEARING'],
    ['Legs[1][Cause]', '16'],
    ['Legs[1][Type]', 'single'],
    ['Legs[1][OnCallDuration]', '21'],
    ['Legs[1][Number]', '07200498123'],
    ['RecordingUrl', 'https://s3-ap-southeast-1.amazonaws.com/exotelrecordings/acme/b6cfaf0d.mp3'],
    ['OutgoingPhoneNumber', '08047115777'],
  ];
  const query = qs(entries);
  t.match(query, 'Legs%5B0%5D%5BCauseCode%5D=NO_ANSWER', 'brackets arrive %-escaped');
  const call = fromQuery(query);
  t.same(call, {
    callSid: 'b6cfaf0d5cbd4a5f8a4e9b7a1d2c3e4f',
    callFrom: phone('09876543210', '+919876543210'),
    callTo: phone('08047115777', '+918047115777'),
    from: phone('09876543210', '+919876543210'),
    to: phone('08047115777', '+918047115777'),
    direction: 'incoming',
    callStatus: null,
    callType: 'completed',
    dialCallStatus: 'completed',
    dialCallDuration: 35,
    dialWhomNumber: phone('07200498123', '+917200498123'),
    outgoingPhoneNumber: phone('08047115777', '+918047115777'),
    digits: null,
    customField: null,
    recordingUrl: 'https://s3-ap-southeast-1.amazonaws.com/exotelrecordings/acme/b6cfaf0d.mp3',
    created: new Date('2026-11-20T04:30:00.000Z'),
    startTime: new Date('2026-11-20T04:30:01.000Z'),
    currentTime: new Date('2026-11-20T04:31:05.000Z'),
    endTime: new Date(0),
    status: null,
    eventType: null,
    legs: [
      { index: 0, causeCode: 'NO_ANSWER', cause: 19, type: 'single', onCallDuration: 0, number: phone('09880847047', '+919880847047') },
      { index: 1, causeCode: 'NORMAL_CLEARING', cause: 16, type: 'single', onCallDuration: 21, number: phone('07200498123', '+917200498123') },
    ],
    raw: Object.fromEntries(entries),
    warnings: [],
  });
  t.equal(call.created?.toISOString(), '2026-11-20T04:30:00.000Z');
  t.equal(call.endTime?.getTime(), 0, 'the constant EndTime is the epoch');
  t.equal(Object.getPrototypeOf(call.raw), null, 'raw has no prototype');
  t.same(
    Object.keys(call.raw),
    entries.map(([k]) => k),
    'raw keeps the order and spelling received',
  );
});

t.test('Passthru after an IVR: digits arrive wrapped in double quotes and are unwrapped', async (t) => {
  const call = fromQuery(
    'CallSid=ivr1&CallFrom=09876543210&CallTo=08047115777&Direction=incoming&CallType=call-attempt&digits=%2242%22&CurrentTime=2026-11-20+10%3A00%3A00',
  );
  t.equal(call.digits, '42');
  t.equal(call.raw.digits, '"42"', 'raw keeps the quotes');
  t.equal(call.callType, 'call-attempt');
  t.equal(call.currentTime?.toISOString(), '2026-11-20T04:30:00.000Z', '`+` in a date decodes to the space of the IST format');
  t.same(call.warnings, []);
});

t.test('Passthru for a call initiated via the API: CustomField is read as sent', async (t) => {
  const call = fromQuery(
    qs([
      ['CallSid', 'api1'],
      ['CallFrom', '09876543210'],
      ['CallTo', '08047115777'],
      ['Direction', 'outbound-dial'],
      ['CustomField', 'order=4711;lang=hi'],
    ]),
  );
  t.equal(call.customField, 'order=4711;lang=hi');
  t.equal(call.direction, 'outbound-dial');
});

t.test('Dial Whom first request and re-fetch: DialCallStatus and DialWhomNumber of the unanswered attempt', async (t) => {
  const first = fromQuery('CallSid=dw1&CallFrom=09876543210&CallTo=08047115777&Direction=incoming&CallStatus=in-progress&digits=%221%22&DialCallDuration=0');
  t.match(first, { callSid: 'dw1', callStatus: 'in-progress', digits: '1', dialCallStatus: null, dialWhomNumber: null, dialCallDuration: 0, legs: [] });

  const refetch = fromQuery(
    'CallSid=dw1&CallFrom=09876543210&CallTo=08047115777&Direction=incoming&CallStatus=in-progress&DialCallStatus=no-answer&DialWhomNumber=09880847047&DialCallDuration=30',
  );
  t.equal(refetch.dialCallStatus, 'no-answer');
  t.same(refetch.dialWhomNumber, phone('09880847047', '+919880847047'));
  t.equal(refetch.dialCallDuration, 30);
  t.equal(refetch.digits, null, 'digits only come with the first request');
});

t.test('statuses written with spaces (as in the Dial Whom doc) are normalised to the dashed form', async (t) => {
  const call = fromQuery(
    qs([
      ['CallStatus', 'In Progress'],
      ['DialCallStatus', 'no answer'],
      ['Direction', 'outbound dial'],
      ['CallType', 'Client Hangup'],
    ]),
  );
  t.equal(call.callStatus, 'in-progress');
  t.equal(call.dialCallStatus, 'no-answer');
  t.equal(call.direction, 'outbound-dial');
  t.equal(call.callType, 'client-hangup');
});

t.test('Connect dynamic-URL request: flow_id and other deprecated parameters stay in raw only', async (t) => {
  const call = fromQuery(
    qs([
      ['CallSid', 'cn1'],
      ['CallFrom', '09876543210'],
      ['CallTo', '08047115777'],
      ['Direction', 'outbound-dial'],
      ['Created', '2026-11-20 09:59:58'],
      ['flow_id', '123456'],
      ['tenant_id', '77'],
      ['RecordingAvailableBy', 'x'],
      ['ForwardedFrom', '09000000000'],
      ['ProcessStatus', 'completed'],
    ]),
  );
  t.equal(call.direction, 'outbound-dial');
  t.equal(call.created?.toISOString(), '2026-11-20T04:29:58.000Z');
  t.match(call.raw, { flow_id: '123456', tenant_id: '77', RecordingAvailableBy: 'x', ForwardedFrom: '09000000000', ProcessStatus: 'completed' });
  t.notOk('flowId' in call || 'tenantId' in call || 'forwardedFrom' in call, 'no typed field for deprecated parameters');
  t.same(call.warnings, []);
});

t.test('dial event: Status lowercased, EventType as sent, DialWhomNumber normalised', async (t) => {
  const busy = fromQuery(
    'CallSid=de1&CallFrom=09876543210&From=09876543210&CallTo=08047115777&To=08047115777&Direction=outbound-dial&DialWhomNumber=09880847047&Status=busy&EventType=Dial&Created=2026-11-20+10%3A00%3A00&CurrentTime=2026-11-20+10%3A00%3A02',
  );
  t.match(busy, { status: 'busy', eventType: 'Dial', direction: 'outbound-dial', dialWhomNumber: phone('09880847047', '+919880847047') });
  t.equal(busy.currentTime?.toISOString(), '2026-11-20T04:30:02.000Z');
  const free = fromQuery('CallSid=de1&DialWhomNumber=09880847047&Status=FREE&EventType=Terminal');
  t.match(free, { status: 'free', eventType: 'Terminal' });
});

// --- Missing and odd values --------------------------------------------------------------------------

t.test('an empty request gives every field null, no legs, an empty raw and no warnings', async (t) => {
  t.same(fromQuery(''), emptyCall);
  t.same(parseExotelCall(collectParams({}).params, { defaultCountry: 'IN' }), emptyCall);
  t.same(fromQuery('?'), emptyCall, 'a bare `?` is nothing');
});

t.test('empty values are null fields without warnings', async (t) => {
  const call = fromQuery('CallSid=&CallFrom=&CallTo=&Created=&DialCallDuration=&CustomField=&Status=&Direction=');
  t.match(call, { callSid: null, callFrom: null, callTo: null, created: null, dialCallDuration: null, customField: null, status: null, direction: null });
  t.same(call.warnings, []);
  t.equal(call.raw.CallSid, '', 'raw still records that it was sent');
});

t.test('digits: quotes stripped, empty quotes give an empty string, unquoted and padded values work', async (t) => {
  t.equal(fromQuery('digits=%22%22').digits, '', '"" → empty string (gathered nothing), not null');
  t.equal(fromQuery('digits=').digits, '', 'sent but empty is still sent');
  t.equal(fromQuery('digits=123').digits, '123', 'without quotes');
  t.equal(fromQuery('digits=+%22123%22+').digits, '123', 'whitespace around the quotes');
  t.equal(fromQuery('digits=%22+123+%22').digits, '123', 'whitespace inside the quotes');
  t.equal(fromQuery('digits=%22123').digits, '123', 'a lone leading quote');
  t.equal(fromQuery('digits=%22%23%2A9%22').digits, '#*9', 'keys other than digits survive');
  t.equal(fromQuery('CallSid=x').digits, null, 'not sent → null');
});

t.test('a `+` sent unencoded in CallFrom arrives as a space and still normalises to the same E.164', async (t) => {
  const call = fromQuery('CallFrom=+919876543210&CallTo=+14155552671');
  t.equal(call.raw.CallFrom, ' 919876543210', 'URLSearchParams turns the + into a space');
  t.same(call.callFrom, phone('919876543210', '+919876543210'));
  t.same(call.callTo, phone('14155552671', '+14155552671'), 'read as international, not as the Indian national 14155552671');
  const viaForm = collectParams({ form: 'CallFrom=+919876543210' });
  t.equal(parseExotelCall(viaForm.params, { defaultCountry: 'IN' }).callFrom?.e164, '+919876543210', 'same in a form body');
  t.equal(fromQuery('CallFrom=%2B919876543210').callFrom?.e164, '+919876543210', 'an encoded + is plain E.164');
  t.equal(fromQuery('CallFrom=+09876543210').callFrom?.e164, '+919876543210', 'a leading space before a national number falls back to national');
});

t.test('numbers in national, country-code and E.164 form all normalise; invalid ones keep raw with a warning', async (t) => {
  for (const raw of ['09876543210', '919876543210', '%2B919876543210', '98765+43210', '098765-43210']) {
    const call = fromQuery(`From=${raw}`);
    t.equal(call.from?.e164, '+919876543210', `From=${raw}`);
    t.same(call.warnings, []);
  }
  const bad = fromQuery('CallFrom=12345&DialWhomNumber=abc&Legs[0][Number]=999');
  t.same(bad.callFrom, phone('12345', null));
  t.same(bad.dialWhomNumber, phone('abc', null));
  t.same(bad.legs[0]?.number, phone('999', null));
  t.equal(bad.raw.CallFrom, '12345');
  t.match(bad.warnings, [/CallFrom "12345" is not a valid phone number/, /DialWhomNumber "abc"/, /Legs\[0\]\[Number\] "999"/]);
  const us = parseExotelCall(new Map([['From', '(415) 555-2671']]), { defaultCountry: 'US' });
  t.equal(us.from?.e164, '+14155552671', 'the default country decides national numbers');
});

t.test('CallFrom/CallTo fall back to From/To when missing or empty', async (t) => {
  const call = fromQuery('From=09876543210&To=08047115777&CallTo=');
  t.same(call.callFrom, phone('09876543210', '+919876543210'));
  t.same(call.callTo, phone('08047115777', '+918047115777'));
  const both = fromQuery('CallFrom=09876543210&From=09880847047');
  t.equal(both.callFrom?.e164, '+919876543210', 'CallFrom wins over From');
  t.equal(both.from?.e164, '+919880847047');
});

t.test('dates: IST wall time, ISO 8601 with an offset, and everything else null with a warning', async (t) => {
  t.equal(fromQuery(qs([['Created', '2026-11-20 10:00:00']])).created?.toISOString(), '2026-11-20T04:30:00.000Z');
  t.equal(fromQuery(qs([['CurrentTime', '2024-01-15T10:30:00+05:30']])).currentTime?.toISOString(), '2024-01-15T05:00:00.000Z', 'as in the passthru guide');
  t.equal(fromQuery(qs([['StartTime', '2024-01-15T10:30:00Z']])).startTime?.toISOString(), '2024-01-15T10:30:00.000Z');
  t.equal(fromQuery(qs([['StartTime', '2024-01-15T10:30:00.250-0100']])).startTime?.toISOString(), '2024-01-15T11:30:00.250Z');
  t.equal(fromQuery(qs([['StartTime', '2024-01-15 10:30:00+05:30']])).startTime?.toISOString(), '2024-01-15T05:00:00.000Z', 'space instead of T');
  t.equal(fromQuery(qs([['EndTime', '1970-01-01 05:30:00']])).endTime?.getTime(), 0);
  for (const bad of [
    'garbage',
    '2024-01-15T10:30:00',
    '2026-02-30 10:00:00',
    '2026-1-5 1:2:3',
    '20261120100000',
    '2026-11-20',
    '1700000000',
    '2026-11-20 25:00:00',
  ]) {
    const call = fromQuery(qs([['Created', bad]]));
    t.equal(call.created, null, `Created=${bad}`);
    t.match(call.warnings, [/^Created ".*" is not a date/], `warning for ${bad}`);
  }
});

t.test('whole numbers: digits only, anything else null with a warning', async (t) => {
  t.equal(fromQuery('DialCallDuration=21').dialCallDuration, 21);
  t.equal(fromQuery('DialCallDuration=+21+').dialCallDuration, 21, 'surrounding whitespace is trimmed');
  for (const bad of ['-1', '1.5', '2e3', '0x10', 'abc', '99999999999999999999']) {
    const call = fromQuery(`DialCallDuration=${encodeURIComponent(bad)}&Legs[0][Cause]=${encodeURIComponent(bad)}`);
    t.equal(call.dialCallDuration, null, bad);
    t.equal(call.legs[0]?.cause, null, `Legs cause ${bad}`);
    t.equal(call.warnings.length, 2);
  }
});

// --- Legs ---------------------------------------------------------------------------------------------

t.test('Legs out of order and sparse are ordered by index, keeping their real index', async (t) => {
  const call = fromQuery(
    qs([
      ['Legs[3][Cause]', '17'],
      ['Legs[0][Number]', '09880847047'],
      ['legs[1][causecode]', 'USER_BUSY'],
      ['Legs[3][Type]', 'parallel'],
      ['LEGS[1][CAUSE]', '17'],
    ]),
  );
  t.same(call.legs, [
    { index: 0, causeCode: null, cause: null, type: null, onCallDuration: null, number: phone('09880847047', '+919880847047') },
    { index: 1, causeCode: 'USER_BUSY', cause: 17, type: null, onCallDuration: null, number: null },
    { index: 3, causeCode: null, cause: 17, type: 'parallel', onCallDuration: null, number: null },
  ]);
});

t.test('Legs with an index at or beyond maxLegs are ignored with a warning but kept in raw', async (t) => {
  const call = fromQuery(
    qs([
      ['Legs[0][Cause]', '16'],
      ['Legs[20][Cause]', '16'],
      ['Legs[999][Cause]', '16'],
      ['Legs[1000][Cause]', '16'],
    ]),
  );
  t.same(
    call.legs.map((l) => l.index),
    [0],
  );
  t.match(call.warnings, [/Legs index 20, 999 ignored: at most 20 legs/]);
  t.same(Object.keys(call.raw), ['Legs[0][Cause]', 'Legs[20][Cause]', 'Legs[999][Cause]', 'Legs[1000][Cause]']);
  const small = fromQuery(qs([['Legs[2][Cause]', '16']]), { limits: { ...DEFAULT_LIMITS, maxLegs: 2 } });
  t.same(small.legs, [], 'maxLegs comes from the limits passed to parseExotelCall');
});

t.test('other bracket keys are kept flat in raw and never become legs', async (t) => {
  const keys = [
    'Legs[0][Foo]',
    'Legs[0][Cause][x]',
    'Legs[a][Cause]',
    'Legs[][Cause]',
    'Legs[0]',
    'XLegs[0][Cause]',
    'Legs[0][Cause]x',
    'a[b][c]',
    'Legs.0.Cause',
  ];
  const call = fromQuery(qs(keys.map((k) => [k, '16'])));
  t.same(call.legs, []);
  t.same(Object.keys(call.raw), keys);
  t.same(call.warnings, []);
});

t.test('Legs[01] and Legs[1] are the same leg', async (t) => {
  const call = fromQuery(
    qs([
      ['Legs[1][Cause]', '16'],
      ['Legs[01][Type]', 'single'],
    ]),
  );
  t.same(call.legs, [{ index: 1, causeCode: null, cause: 16, type: 'single', onCallDuration: null, number: null }]);
});

// --- Keys: duplicates, case, secrets ---------------------------------------------------------------

t.test('a repeated key keeps its last value and warns once', async (t) => {
  const call = fromQuery('CallSid=a&CallSid=b&CallSid=c');
  t.equal(call.callSid, 'c');
  t.equal(call.raw.CallSid, 'c');
  t.same(call.warnings, ['repeated key "CallSid": last value kept']);
});

t.test('keys differing only in case are one key: first spelling, last value', async (t) => {
  const call = fromQuery('CallSid=a&callsid=b');
  t.equal(call.callSid, 'b');
  t.same(call.raw, Object.assign(Object.create(null), { CallSid: 'b' }));
  t.match(call.warnings, [/repeated key "callsid"/]);
  const direct = parseExotelCall(
    new Map([
      ['CallSid', 'a'],
      ['CALLSID', 'b'],
    ]),
    { defaultCountry: 'IN' },
  );
  t.equal(direct.callSid, 'b', 'a map built elsewhere is folded the same way');
  t.same(Object.keys(direct.raw), ['CallSid']);
  t.equal(direct.raw.CallSid, 'b');
});

t.test('parameter names are matched case-insensitively (the Dial Whom doc lists them lowercase)', async (t) => {
  const call = fromQuery(
    'callsid=s1&callfrom=09876543210&callto=08047115777&callstatus=ringing&direction=incoming&dialcallstatus=busy&dialwhomnumber=09880847047&Digits=%227%22&customfield=cf&recordingurl=https%3A%2F%2Fr&created=2026-11-20+10%3A00%3A00&STATUS=busy&eventtype=Dial',
  );
  t.match(call, {
    callSid: 's1',
    callFrom: { e164: '+919876543210' },
    callTo: { e164: '+918047115777' },
    callStatus: 'ringing',
    direction: 'incoming',
    dialCallStatus: 'busy',
    dialWhomNumber: { e164: '+919880847047' },
    digits: '7',
    customField: 'cf',
    recordingUrl: 'https://r',
    status: 'busy',
    eventType: 'Dial',
  });
  t.equal(call.created?.toISOString(), '2026-11-20T04:30:00.000Z');
  t.equal(call.raw.callsid, 's1', 'raw keeps the spelling received');
});

t.test('the callback secret is removed from raw whatever its case, and appears nowhere in the result', async (t) => {
  const call = fromQuery('CallSid=s1&token=s3cr3t-value&TOKEN=s3cr3t-value&From=09876543210', { secretKeys: ['Token'] });
  t.notOk('token' in call.raw);
  t.notOk('TOKEN' in call.raw);
  t.same(Object.keys(call.raw), ['CallSid', 'From']);
  t.notMatch(JSON.stringify(call), 's3cr3t', 'not in raw, fields or warnings');
});

t.test('later sources override earlier ones: query < form < JSON', async (t) => {
  const { params, warnings } = collectParams({ query: 'CallSid=q&token=t&A=1', form: 'CallSid=f&B=2', json: { callsid: 'j', C: 3 } });
  t.same(
    [...params],
    [
      ['CallSid', 'j'],
      ['token', 't'],
      ['A', '1'],
      ['B', '2'],
      ['C', '3'],
    ],
  );
  t.match(warnings, [/repeated key "CallSid"/]);
  t.equal(warnings.length, 1);
});

t.test('parse warnings follow the collect warnings, and the passed array is not modified', async (t) => {
  const collected = collectParams({ query: 'CallSid=a&CallSid=b&Created=soon' });
  const before = [...collected.warnings];
  const call = parseExotelCall(collected.params, { defaultCountry: 'IN', warnings: collected.warnings });
  t.same(call.warnings, [
    ...before,
    'Created "soon" is not a date (yyyy-mm-dd hh:mm:ss or "Wed, 31 Jul 2024 16:42:56" in Asia/Kolkata, or ISO 8601 with offset)',
  ]);
  t.same(collected.warnings, before);
});

t.test('text fields are trimmed of whitespace and control characters; raw keeps them', async (t) => {
  const call = fromQuery('CallSid=%00%09abc%0Adef%0D%0A&CustomField=%20x%1F&EventType=%0DDial%00');
  t.equal(call.callSid, 'abc\ndef', 'inner control characters stay');
  t.equal(call.customField, 'x');
  t.equal(call.eventType, 'Dial');
  t.equal(call.raw.CallSid, '\u0000\tabc\ndef\r\n');
});

// --- JSON bodies -------------------------------------------------------------------------------------

t.test('JSON body: top-level scalars taken (numbers and booleans as text), nested values ignored with a warning', async (t) => {
  const { params, warnings } = collectParams({ json: { CallSid: 'j1', DialCallDuration: 12, Flag: true, Nothing: null, Nested: { a: 1 }, List: [1, 2] } });
  t.same(
    [...params],
    [
      ['CallSid', 'j1'],
      ['DialCallDuration', '12'],
      ['Flag', 'true'],
    ],
  );
  t.same(warnings, ['2 nested JSON values ignored: only strings, numbers and booleans are read']);
  t.equal(parseExotelCall(params, { defaultCountry: 'IN' }).dialCallDuration, 12);
  t.same(
    collectParams({ json: { CallSid: 'j1', Nested: { a: 1 } } }).warnings,
    ['1 nested JSON value ignored: only strings, numbers and booleans are read'],
    'one: singular',
  );
});

t.test('JSON body: a Legs array of objects becomes legs and flat Legs[i][Field] raw keys', async (t) => {
  const json = JSON.parse(
    '{"CallSid":"j2","Legs":[{"CauseCode":"NORMAL_CLEARING","Cause":16,"type":"single","OnCallDuration":21,"Number":"07200498123","Extra":"x"},"junk",{"Cause":{"x":1},"Number":"09880847047"}]}',
  ) as unknown;
  const { params, warnings } = collectParams({ json });
  const call = parseExotelCall(params, { defaultCountry: 'IN', warnings });
  t.same(call.legs, [
    { index: 0, causeCode: 'NORMAL_CLEARING', cause: 16, type: 'single', onCallDuration: 21, number: phone('07200498123', '+917200498123') },
    { index: 2, causeCode: null, cause: null, type: null, onCallDuration: null, number: phone('09880847047', '+919880847047') },
  ]);
  t.same(Object.keys(call.raw), [
    'CallSid',
    'Legs[0][CauseCode]',
    'Legs[0][Cause]',
    'Legs[0][Type]',
    'Legs[0][OnCallDuration]',
    'Legs[0][Number]',
    'Legs[2][Number]',
  ]);
  t.same(call.warnings, []);
  const many = collectParams({ json: { Legs: Array.from({ length: 25 }, () => ({ Cause: 16 })) } });
  t.equal(many.params.size, 20, 'at most maxLegs legs are taken from JSON');
  t.match(many.warnings, [/^JSON Legs: 5 legs beyond 20 ignored$/]);
  const one = collectParams({ json: { Legs: Array.from({ length: 21 }, () => ({ Cause: 16 })) } });
  t.match(one.warnings, [/^JSON Legs: 1 leg beyond 20 ignored$/], 'one leg too many: singular');
});

t.test('a JSON body that is not a plain object is ignored with a warning', async (t) => {
  for (const json of [null, [1, 2], 'CallSid=x', 42, new Map([['CallSid', 'x']]), new Date()]) {
    const { params, warnings } = collectParams({ query: 'CallSid=q', json });
    t.same([...params], [['CallSid', 'q']], String(json));
    t.match(warnings, [/^JSON body ignored: not an object/]);
  }
  const { params } = collectParams({ json: Object.assign(Object.create(null), { CallSid: 'np' }) });
  t.equal(params.get('CallSid'), 'np', 'a null-prototype object is a plain object');
});

// --- Hostile input -----------------------------------------------------------------------------------

t.test('malformed percent escapes do not throw and are kept as text', async (t) => {
  const call = fromQuery('CustomField=%E0%A4%A&CallSid=%zz&digits=%22%E0%A4%22&x=%');
  t.equal(call.callSid, '%zz');
  t.equal(call.customField, '\ufffd%A', 'a truncated UTF-8 sequence becomes U+FFFD');
  t.equal(call.raw.x, '%');
  t.equal(call.digits, '\ufffd');
  const form = collectParams({ form: '%E0%A4%A=%zz' });
  t.same([...form.params], [['\ufffd%A', '%zz']]);
});

t.test('10,000 keys are bounded to maxKeys quickly, with one summary warning', async (t) => {
  const query = Array.from({ length: 10_000 }, (_, i) => `k${i}=${i}`).join('&');
  const start = performance.now();
  const { params, warnings } = collectParams({ query });
  const call = parseExotelCall(params, { defaultCountry: 'IN', warnings });
  const ms = performance.now() - start;
  t.equal(params.size, DEFAULT_LIMITS.maxKeys);
  t.equal(Object.keys(call.raw).length, DEFAULT_LIMITS.maxKeys);
  t.equal(call.raw.k0, '0', 'the first keys are kept');
  t.notOk('k200' in call.raw, 'the rest are dropped');
  t.same(call.warnings, ['9800 parameters dropped: more than 200 keys']);
  t.ok(ms < 500, `took ${ms.toFixed(1)} ms`);
});

t.test('10,000 repetitions of one key are one parameter and one warning', async (t) => {
  const { params, warnings } = collectParams({ query: `${'a=1&'.repeat(10_000)}CallSid=s` });
  t.same(
    [...params],
    [
      ['a', '1'],
      ['CallSid', 's'],
    ],
  );
  t.same(warnings, ['repeated key "a": last value kept']);
});

t.test('repeats of keys already kept still update them after maxKeys is reached', async (t) => {
  const limits = { ...DEFAULT_LIMITS, maxKeys: 2 };
  const { params, warnings } = collectParams({ query: 'CallSid=a&From=1&To=2&CallSid=b' }, limits);
  t.same(
    [...params],
    [
      ['CallSid', 'b'],
      ['From', '1'],
    ],
  );
  t.same(warnings, ['repeated key "CallSid": last value kept', '1 parameter dropped: more than 2 keys']);
});

t.test('a 1 MB value is truncated to maxValueLength with a warning naming the key', async (t) => {
  const big = 'x'.repeat(1024 * 1024);
  for (const sources of [{ query: `CustomField=${big}` }, { form: `CustomField=${big}` }, { json: { CustomField: big } }]) {
    const { params, warnings } = collectParams(sources);
    t.equal(params.get('CustomField')?.length, DEFAULT_LIMITS.maxValueLength);
    t.same(warnings, [`value of "CustomField" truncated from 1048576 to ${DEFAULT_LIMITS.maxValueLength} characters`]);
  }
  const spaces = `${' '.repeat(1024 * 1024)}x`;
  const start = performance.now();
  const call = parseExotelCall(
    new Map([
      ['CustomField', spaces],
      ['Created', spaces],
      ['From', spaces],
    ]),
    { defaultCountry: 'IN' },
  );
  t.equal(call.customField, 'x', 'trimming a long run of spaces is linear, even without limits');
  t.ok(performance.now() - start < 500);
  t.ok(
    call.warnings.every((w) => w.length < 200),
    'warnings quote values bounded',
  );
});

t.test('over-long keys are dropped with a summary warning', async (t) => {
  const { params, warnings } = collectParams({ query: `${'k'.repeat(101)}=1&${'k'.repeat(100)}=2&CallSid=s` });
  t.same([...params.keys()], ['k'.repeat(100), 'CallSid']);
  t.same(warnings, ['1 parameter dropped: key longer than 100 characters']);
  const two = collectParams({ query: `${'k'.repeat(101)}=1&${'j'.repeat(101)}=2&CallSid=s` });
  t.same(two.warnings, ['2 parameters dropped: key longer than 100 characters'], 'and in the plural for more than one');
});

t.test('1000-level bracket keys are dropped by length, or kept as one flat string when limits allow', async (t) => {
  const deep = `a${Array.from({ length: 1000 }, (_, i) => `[b${i}]`).join('')}`;
  const query = `${encodeURIComponent(deep)}=1&a[b][c][d]=2&CallSid=s`;
  const call = fromQuery(query);
  t.same(Object.keys(call.raw), ['a[b][c][d]', 'CallSid'], 'the deep key is dropped, the short one stays flat');
  t.equal(call.raw['a[b][c][d]'], '2');
  t.match(call.warnings, [/^1 parameter dropped: key longer than 100/]);
  const roomy = fromQuery(query, { limits: { ...DEFAULT_LIMITS, maxKeyLength: 100_000 } });
  t.equal(roomy.raw[deep], '1', 'never expanded into nested objects');
  t.equal(typeof roomy.raw.a, 'undefined');
});

t.test('prototype keys are plain data and never pollute Object.prototype', async (t) => {
  const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort();
  const query = '__proto__[polluted]=1&__proto__=x&constructor[prototype][polluted]=1&constructor=c&prototype=p&hasOwnProperty=h&toString=s';
  const json = JSON.parse('{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"polluted": 1}}, "valueOf": "v"}') as unknown;
  const { params, warnings } = collectParams({ query, form: query, json });
  const call = parseExotelCall(params, { defaultCountry: 'IN', warnings, secretKeys: ['__proto__[polluted]'] });
  const jsonOnly = collectParams({ json: JSON.parse('{"__proto__": "x", "CallSid": "p"}') as unknown });
  const call2 = parseExotelCall(jsonOnly.params, { defaultCountry: 'IN', warnings: jsonOnly.warnings });

  t.equal(({} as Record<string, unknown>).polluted, undefined);
  t.equal((Object.prototype as unknown as Record<string, unknown>).polluted, undefined);
  t.same(Object.getOwnPropertyNames(Object.prototype).sort(), protoBefore, 'Object.prototype unchanged');
  t.equal(Object.getPrototypeOf(call.raw), null);
  // biome-ignore lint/suspicious/noProto: the test is that `__proto__` arrives as an ordinary key
  t.equal(call.raw.__proto__, 'x', '__proto__ is an ordinary key');
  t.equal(call.raw['constructor[prototype][polluted]'], '1');
  t.equal(call.raw.constructor, 'c');
  t.equal(call.raw.hasOwnProperty, 'h');
  t.equal(call.raw.valueOf, 'v');
  t.notOk('__proto__[polluted]' in call.raw, 'secret removal works on such keys too');
  // biome-ignore lint/suspicious/noProto: as above
  t.equal(call2.raw.__proto__, 'x');
  t.equal(call2.callSid, 'p');
  t.same(Object.keys(call2.raw), ['__proto__', 'CallSid']);
  // biome-ignore lint/suspicious/noProto: as above
  t.equal(JSON.parse(JSON.stringify(call.raw)).__proto__, 'x', 'serialises as data');
});

t.test('IST timestamps agree with luxon for every kind of date, and impossible ones are refused', async (t) => {
  const { DateTime } = await import('luxon');
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  let compared = 0;
  let refused = 0;
  for (const y of [1970, 2000, 2024, 2026, 2100]) {
    for (const mo of [1, 2, 3, 12, 13]) {
      for (const d of [1, 28, 29, 30, 31, 32]) {
        for (const [h, mi, s] of [
          [0, 0, 0],
          [5, 29, 59],
          [18, 30, 0],
          [23, 59, 59],
          [24, 0, 0],
          [12, 60, 0],
          [12, 0, 60],
        ] as const) {
          const text = `${y}-${pad(mo)}-${pad(d)} ${pad(h)}:${pad(mi)}:${pad(s)}`;
          const call = parseExotelCall(
            new Map([
              ['CallSid', 'x'],
              ['StartTime', text],
            ]),
            { defaultCountry: 'IN' },
          );
          const want = DateTime.fromFormat(text, 'yyyy-MM-dd HH:mm:ss', { zone: 'Asia/Kolkata' });
          if (want.isValid) {
            compared++;
            if (call.startTime?.getTime() !== want.toMillis()) t.fail(`${text}: ${call.startTime?.toISOString()} != ${want.toISO()}`);
          } else {
            refused++;
            if (call.startTime !== null) t.fail(`${text} should be refused, got ${call.startTime?.toISOString()}`);
          }
        }
      }
    }
  }
  t.ok(compared > 400 && refused > 500, `${compared} valid timestamps equal luxon's, ${refused} impossible ones refused`);
});
