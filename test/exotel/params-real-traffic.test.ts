/**
 * Requests shaped like those captured from real Exotel integrations, where they differ from
 * Exotel's documents: `Created` as `Wed, 31 Jul 2024 16:42:56`, absent values as the text `null`,
 * SIP user ids for numbers, only `From`/`To`, names spelt as the documents vary them.
 */
import t from 'tap';
import { collectParams, parseExotelCall, type ExotelCall } from '../../src/exotel/params.js';

function fromQuery(query: string): ExotelCall {
  const { params, warnings } = collectParams({ query });
  return parseExotelCall(params, { defaultCountry: 'IN', warnings });
}
const qs = (entries: Record<string, string>) => new URLSearchParams(entries).toString();

t.test('Created as "Wed, 31 Jul 2024 16:42:56" is IST, with no warning', async (t) => {
  const call = fromQuery(qs({ CallSid: 'c1', Created: 'Wed, 31 Jul 2024 16:42:56', StartTime: 'Wed, 31 Jul 2024 16:42:50' }));
  t.equal(call.created?.toISOString(), '2024-07-31T11:12:56.000Z');
  t.equal(call.startTime?.toISOString(), '2024-07-31T11:12:50.000Z');
  t.same(call.warnings, []);
  t.equal(fromQuery(qs({ Created: 'Thu, 1 Aug 2024 09:05:00' })).created?.toISOString(), '2024-08-01T03:35:00.000Z', 'one-digit day');
  t.equal(fromQuery(qs({ Created: 'Wed, 31 Jul 2024 16:42:56 GMT' })).created?.toISOString(), '2024-07-31T16:42:56.000Z', 'with a zone: RFC 2822');
  t.equal(fromQuery('Created=Wed%2C%2031%20Jul%202024%2016%3A42%3A56%20%2B0530').created?.toISOString(), '2024-07-31T11:12:56.000Z', 'with an offset');
});

t.test('ISO 8601 with an offset, and the all-zero EndTime, give no warning', async (t) => {
  const call = fromQuery(qs({ Created: '2024-07-31T16:42:56+05:30', CurrentTime: '2024-07-31T11:12:58Z', EndTime: '0000-00-00 00:00:00' }));
  t.equal(call.created?.toISOString(), '2024-07-31T11:12:56.000Z');
  t.equal(call.currentTime?.toISOString(), '2024-07-31T11:12:58.000Z');
  t.equal(call.endTime, null, 'Exotel has no end time yet');
  t.same(call.warnings, []);
});

t.test('a day-name date that is wrong is still a warning', async (t) => {
  const call = fromQuery(qs({ Created: 'Thu, 31 Jul 2024 16:42:56' })); // 31 Jul 2024 was a Wednesday
  t.equal(call.created, null);
  t.match(call.warnings, [/^Created "Thu, 31 Jul 2024 16:42:56" is not a date/]);
});

t.test('the literal null is absent everywhere: fields, legs and raw params', async (t) => {
  const call = fromQuery(
    qs({
      CallSid: 'n1',
      CallFrom: '09812345678',
      CallTo: '08047115777',
      DialCallStatus: 'null',
      RecordingUrl: 'null',
      DialWhomNumber: 'NULL',
      CustomField: ' null ',
      digits: 'null',
      Created: 'null',
      DialCallDuration: 'null',
      'Legs[0][Number]': '09811100001',
      'Legs[0][Cause]': 'null',
      'Legs[0][CauseCode]': 'null',
      'Legs[0][OnCallDuration]': 'null',
    }),
  );
  t.match(call, {
    callSid: 'n1',
    dialCallStatus: null,
    recordingUrl: null,
    dialWhomNumber: null,
    customField: null,
    digits: null,
    created: null,
    dialCallDuration: null,
  });
  t.same(call.legs, [{ index: 0, causeCode: null, cause: null, type: null, onCallDuration: null, number: { raw: '09811100001', e164: '+919811100001' } }]);
  t.notOk(
    Object.values(call.raw).some((v) => v.toLowerCase().trim() === 'null'),
    'no "null" in raw params',
  );
  t.same(Object.keys(call.raw), ['CallSid', 'CallFrom', 'CallTo', 'Legs[0][Number]']);
  t.same(call.warnings, []);
});

t.test('null in a JSON body, and a null CallFrom falls back to From', async (t) => {
  const { params, warnings } = collectParams({
    json: { CallSid: 'j1', CallFrom: 'null', From: '09812345678', RecordingUrl: null, Legs: [{ Number: 'null', Cause: 'null' }] },
  });
  const call = parseExotelCall(params, { defaultCountry: 'IN', warnings });
  t.same(call.callFrom, { raw: '09812345678', e164: '+919812345678' });
  t.same(call.legs, []);
  t.same(call.warnings, []);
});

t.test('SIP user ids are kept as sent wherever a number may appear, with no warning', async (t) => {
  const call = fromQuery(
    qs({
      CallSid: 's1',
      CallFrom: 'sip:customer7',
      CallTo: '08047115777',
      DialWhomNumber: 'sip:agent123',
      OutgoingPhoneNumber: 'SIP:exo-out',
      'Legs[0][Number]': 'sip:agent123',
      'Legs[1][Number]': '09811100002',
    }),
  );
  t.same(call.dialWhomNumber, { raw: 'sip:agent123', e164: null });
  t.same(call.callFrom, { raw: 'sip:customer7', e164: null });
  t.same(call.outgoingPhoneNumber, { raw: 'SIP:exo-out', e164: null });
  t.same(
    call.legs.map((l) => l.number),
    [
      { raw: 'sip:agent123', e164: null },
      { raw: '09811100002', e164: '+919811100002' },
    ],
  );
  t.same(call.warnings, []);
});

t.test('only From/To: they stand for CallFrom/CallTo; unknown parameters stay in raw', async (t) => {
  const call = fromQuery(qs({ CallSid: 'f1', From: '09812345678', To: '08047115777', Direction: 'incoming', AppId: '9', ExotelVersion: 'x' }));
  t.same(call.callFrom, { raw: '09812345678', e164: '+919812345678' });
  t.same(call.callTo, { raw: '08047115777', e164: '+918047115777' });
  t.match(call.raw, { AppId: '9', ExotelVersion: 'x' });
  t.same(call.warnings, []);
});

t.test("parameter names as Exotel's documents spell them: any case, and with _ or - between words", async (t) => {
  const lower = fromQuery('callsid=l1&callfrom=09812345678&Callto=08047115777&dialcallstatus=busy&DIGITS=%221%22');
  t.match(lower, { callSid: 'l1', callFrom: { e164: '+919812345678' }, callTo: { e164: '+918047115777' }, dialCallStatus: 'busy', digits: '1' });
  const snake = fromQuery(
    'call_sid=u1&call_from=09812345678&dial_whom_number=09811100001&Dial-Call-Status=no+answer&custom_field=x&recording_url=https%3A%2F%2Fr',
  );
  t.match(snake, {
    callSid: 'u1',
    callFrom: { e164: '+919812345678' },
    dialWhomNumber: { e164: '+919811100001' },
    dialCallStatus: 'no-answer',
    customField: 'x',
    recordingUrl: 'https://r',
  });
  t.same(snake.warnings, []);
  t.equal(fromQuery('CallSid=exact&call_sid=loose').callSid, 'exact', 'the exact name wins over a loose spelling');
});

t.test('a captured POST (form body) reads like the GET', async (t) => {
  const body =
    'CallSid=p1&CallFrom=09812345678&CallTo=08047115777&Direction=incoming&Created=Wed%2C+31+Jul+2024+16%3A42%3A56&DialCallStatus=null&RecordingUrl=null&digits=%222%22';
  const { params, warnings } = collectParams({ query: '', form: body });
  const call = parseExotelCall(params, { defaultCountry: 'IN', warnings });
  t.match(call, { callSid: 'p1', digits: '2', dialCallStatus: null, recordingUrl: null, created: new Date('2024-07-31T11:12:56Z') });
  t.same(call.warnings, []);
});
