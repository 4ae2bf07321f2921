/**
 * Property-based tests of the Exotel parameter parser (src/exotel/params.ts) over random and hostile
 * input: it never throws, respects every bound of `ParseLimits`, only ever produces keys Postgres can
 * store, and never touches Object.prototype. A fixed seed keeps CI deterministic (FUZZ_SEED and
 * FUZZ_RUNS_SCALE to explore further locally); fast-check prints the seed and the counterexample.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import t from 'tap';
import fc from 'fast-check';
import { DateTime } from 'luxon';
import { collectParams, DEFAULT_LIMITS, parseExotelCall, type ParseLimits } from '../../src/exotel/params.js';

const SEED = Number(process.env.FUZZ_SEED) || 20261107;
const RUN_SCALE = Number(process.env.FUZZ_RUNS_SCALE) || 1;
const runs = (n: number) => ({ seed: SEED, numRuns: Math.round(n * RUN_SCALE) });

const protoKeys = () => Reflect.ownKeys(Object.prototype).map(String).sort().join(',');
const PROTO_BEFORE = protoKeys();
function notPolluted(): boolean {
  return protoKeys() === PROTO_BEFORE && ({} as Record<string, unknown>).polluted === undefined && ({} as Record<string, unknown>).x === undefined;
}

// --- Generators -------------------------------------------------------------------------------------

const CONTROL = fc.constantFrom(
  '\u0000',
  '\u0001',
  '\t',
  '\n',
  '\r',
  '\u007f',
  '\u0085',
  '\u00a0',
  '\u2028',
  '\ufeff',
  '\ud800',
  '\udbff',
  '\udc00',
  '\udfff',
  '\ud83d\ude00',
);
const hostileText = (maxLength: number) =>
  fc.array(fc.oneof(CONTROL, fc.string({ maxLength: 4 }), fc.string({ unit: 'binary', maxLength: 4 })), { maxLength }).map((a) => a.join(''));

const FRAGMENTS = [
  '%E0%A4',
  '%',
  '%%',
  '%zz',
  '%C0%AF',
  '%C0%80',
  '%ED%A0%80',
  '%F4%90%80%80',
  '%FF',
  '%00',
  '&',
  '=',
  '+',
  '[',
  ']',
  '[[',
  ']]',
  '__proto__',
  'constructor',
  'prototype',
  '[__proto__]',
  '[constructor][prototype]',
  'polluted',
  'Legs',
  '[0]',
  '[19]',
  '[20]',
  '[999]',
  '[Number]',
  '[Cause]',
  '[CauseCode]',
  '[Type]',
  '[OnCallDuration]',
  'CallSid',
  'CallFrom',
  'digits',
  'token',
  'TOKEN',
  '09812345678',
  '%2B919812345678',
  '%22',
  '"',
  'x',
  '1',
];
/** Query and form text: glued fragments (broken escapes, brackets, prototype names) and arbitrary text. */
const queryArb = fc.oneof(
  { weight: 3, arbitrary: fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 60 }).map((a) => a.join('')) },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.tuple(fc.string({ maxLength: 20 }), hostileText(10)), { maxLength: 30 })
      .map((pairs) => new URLSearchParams(pairs.map(([k, v]): [string, string] => [k.toWellFormed(), v.toWellFormed()])).toString()),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('a', 'CallFrom', 'Legs[0][Number]', '__proto__[x]', '%00'), fc.integer({ min: 1, max: 3000 }))
      .map(([k, n]) => `${k}=v&`.repeat(n)),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 2000 }).map((n) => `Legs[0]${'[a]'.repeat(n)}=1&a${'['.repeat(n)}=2`) },
);

const keyArb = fc.oneof(
  fc.constantFrom(
    'CallSid',
    'callsid',
    'CallFrom',
    'From',
    'digits',
    'DialWhomNumber',
    'Legs',
    'legs',
    'LEGS',
    'token',
    'Token',
    '__proto__',
    'constructor',
    'prototype',
    'Legs[0][Number]',
    'Legs[__proto__][x]',
  ),
  hostileText(6),
  fc.string({ maxLength: 120 }),
);
const legArb = fc.dictionary(
  fc.oneof(fc.constantFrom('CauseCode', 'Cause', 'Type', 'OnCallDuration', 'Number', 'number', '__proto__', 'constructor'), fc.string({ maxLength: 5 })),
  fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.object({ maxDepth: 1 })),
  { maxKeys: 8 },
);
/** JSON bodies as JSON.parse makes them (own `__proto__` keys included), and values JSON.parse never makes. */
const jsonArb: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .array(
        fc.tuple(
          keyArb,
          fc.oneof(
            hostileText(10),
            fc.integer(),
            fc.double(),
            fc.boolean(),
            fc.constant(null),
            fc.array(legArb, { maxLength: 30 }),
            fc.jsonValue({ maxDepth: 2 }),
          ),
        ),
        { maxLength: 30 },
      )
      .map((pairs) => JSON.parse(`{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`) as unknown),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '{"__proto__":{"polluted":"yes"}}',
        '{"constructor":{"prototype":{"polluted":"yes"}}}',
        '{"Legs":[{"__proto__":{"polluted":"yes"},"Number":"1"}]}',
        '{"__proto__":"x","\\u0000":"y","\\ud800":"z"}',
      )
      .map((s) => JSON.parse(s) as unknown),
  },
  {
    weight: 1,
    arbitrary: fc.anything({
      withNullPrototype: true,
      withMap: true,
      withSet: true,
      withBigInt: true,
      withDate: true,
      withTypedArray: true,
      withSparseArray: true,
      withBoxedValues: true,
      maxDepth: 3,
    }),
  },
);

const limitsArb: fc.Arbitrary<ParseLimits> = fc.oneof(
  fc.constant(DEFAULT_LIMITS),
  fc.record({ maxKeys: fc.nat({ max: 40 }), maxKeyLength: fc.nat({ max: 60 }), maxValueLength: fc.nat({ max: 80 }), maxLegs: fc.nat({ max: 25 }) }),
);

const sourcesArb = fc.record(
  { query: fc.option(queryArb, { nil: undefined }), form: fc.option(queryArb, { nil: undefined }), json: fc.option(jsonArb, { nil: undefined }) },
  { requiredKeys: [] },
);

const storable = (s: string) => s.isWellFormed() && !s.includes('\u0000');
const E164 = /^\+[1-9][0-9]{6,14}$/;

// --- Properties -------------------------------------------------------------------------------------

t.test('collectParams never throws, keeps within maxKeys / maxKeyLength / maxValueLength, keys storable, warnings bounded', async (t) => {
  fc.assert(
    fc.property(sourcesArb, limitsArb, (sources, limits) => {
      const { params, warnings } = collectParams(sources, limits);
      if (!(params instanceof Map) || params.size > limits.maxKeys) return false;
      const lower = new Set<string>();
      for (const [key, value] of params) {
        if (typeof key !== 'string' || typeof value !== 'string') return false;
        if (key.length > limits.maxKeyLength || value.length > limits.maxValueLength || !storable(key)) return false;
        lower.add(key.toLowerCase());
      }
      // One per distinct repeated key, one per distinct truncated key, a few summaries (and one per
      // case spelling of a JSON `Legs` array, at most 16).
      return (
        lower.size === params.size &&
        warnings.length <= 2 * limits.maxKeys + 24 &&
        warnings.every((w) => typeof w === 'string' && w.length < 300) &&
        notPolluted()
      );
    }),
    runs(400),
  );
  t.ok(notPolluted(), 'Object.prototype untouched');
});

t.test('parseExotelCall never throws on any key → value map and respects its bounds', async (t) => {
  const mapArb = fc.oneof(
    sourcesArb.chain((s) => limitsArb.map((l) => ({ params: collectParams(s, l).params, limits: l }))),
    // Maps that do not come from collectParams (as simulate passes them): unbounded keys, case duplicates.
    fc
      .tuple(
        fc.array(
          fc.tuple(
            fc.oneof(
              keyArb,
              fc.constantFrom(
                'Legs[0][Number]',
                'legs[0][number]',
                'Legs[1][Cause]',
                'Legs[019][Type]',
                'Legs[25][Number]',
                'Legs[999][OnCallDuration]',
                'CALLSID',
              ),
            ),
            fc.oneof(hostileText(12), fc.constantFrom('09812345678', ' 919812345678', '"1"', '2026-11-20 10:00:00', '99999999999999999999')),
          ),
          { maxLength: 40 },
        ),
        limitsArb,
      )
      .map(([pairs, limits]) => ({ params: new Map(pairs), limits })),
  );
  fc.assert(
    fc.property(
      mapArb,
      fc.constantFrom('IN', 'US', 'GB') as fc.Arbitrary<'IN' | 'US' | 'GB'>,
      fc.array(fc.constantFrom('token', 'TOKEN', 'secret', 'CallSid'), { maxLength: 2 }),
      ({ params, limits }, country, secretKeys) => {
        const call = parseExotelCall(params, { defaultCountry: country, secretKeys, limits });
        if (Object.getPrototypeOf(call.raw) !== null) return false;
        const rawKeys = Object.keys(call.raw);
        if (rawKeys.length > params.size || !rawKeys.every(storable)) return false;
        const secrets = new Set(secretKeys.map((k) => k.toLowerCase()));
        if (rawKeys.some((k) => secrets.has(k.toLowerCase()))) return false;
        if (call.legs.length > limits.maxLegs) return false;
        if (!call.legs.every((leg, i) => leg.index < limits.maxLegs && (i === 0 || call.legs[i - 1]!.index < leg.index))) return false;
        const phones = [call.callFrom, call.callTo, call.from, call.to, call.dialWhomNumber, call.outgoingPhoneNumber, ...call.legs.map((l) => l.number)];
        if (!phones.every((p) => p === null || (typeof p.raw === 'string' && p.raw.length > 0 && (p.e164 === null || E164.test(p.e164))))) return false;
        const integers = [call.dialCallDuration, ...call.legs.flatMap((l) => [l.cause, l.onCallDuration])];
        if (!integers.every((n) => n === null || (Number.isSafeInteger(n) && n >= 0))) return false;
        const dates = [call.created, call.startTime, call.currentTime, call.endTime];
        if (!dates.every((d) => d === null || (d instanceof Date && !Number.isNaN(d.getTime())))) return false;
        if (call.digits !== null && (call.digits.startsWith('"') || call.digits.endsWith('"'))) return false;
        if (call.callSid === '' || call.customField === '') return false;
        // The CDR stores the result as JSON: it must serialise.
        JSON.stringify(call);
        return notPolluted();
      },
    ),
    runs(400),
  );
  t.ok(notPolluted(), 'Object.prototype untouched');
});

t.test('parseExotelCall reads a collectParams map (already folded) exactly as it reads the same pairs in a plain Map', async (t) => {
  fc.assert(
    fc.property(sourcesArb, limitsArb, fc.array(fc.constantFrom('token', 'TOKEN', 'secret', 'CallSid'), { maxLength: 2 }), (sources, limits, secretKeys) => {
      const { params, warnings } = collectParams(sources, limits);
      const opts = { defaultCountry: 'IN' as const, secretKeys, limits, warnings };
      const folded = parseExotelCall(params, opts);
      const plain = parseExotelCall(new Map(params), opts);
      assert.deepEqual(folded, plain);
      assert.deepEqual(Object.keys(folded.raw), Object.keys(plain.raw));
    }),
    runs(400),
  );
  t.pass('same call, same raw parameters, same warnings');
});

t.test('a query string of distinct, well-formed keys round-trips: first spelling, last value, bounded like the model', async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 30 })), { maxLength: 60 }),
      fc.record({
        maxKeys: fc.integer({ min: 0, max: 50 }),
        maxKeyLength: fc.integer({ min: 0, max: 12 }),
        maxValueLength: fc.integer({ min: 0, max: 30 }),
        maxLegs: fc.constant(20),
      }),
      (pairs, limits) => {
        const wellFormed = pairs.map(([k, v]) => [k.replaceAll('\u0000', 'x'), v] as [string, string]);
        // The model: case-insensitive keys, first spelling, last value, keys beyond maxKeys or over
        // maxKeyLength dropped, values cut to maxValueLength (not inside a surrogate pair).
        const model = new Map<string, { key: string; value: string }>();
        for (const [key, value] of wellFormed) {
          if (key.length > limits.maxKeyLength) continue;
          const existing = model.get(key.toLowerCase());
          if (!existing && model.size >= limits.maxKeys) continue;
          let v = value;
          if (v.length > limits.maxValueLength) {
            const code = v.charCodeAt(limits.maxValueLength - 1);
            v = v.slice(0, code >= 0xd800 && code <= 0xdbff ? limits.maxValueLength - 1 : limits.maxValueLength);
          }
          if (existing) existing.value = v;
          else model.set(key.toLowerCase(), { key, value: v });
        }
        const { params } = collectParams({ query: new URLSearchParams(wellFormed).toString() }, limits);
        assert.deepEqual(
          [...params],
          [...model.values()].map(({ key, value }) => [key, value]),
        );
      },
    ),
    runs(300),
  );
  t.pass('collectParams agrees with the model');
});

t.test('hostile input costs linear time: huge queries, deep brackets and huge values parse fast', async (t) => {
  const cases: Array<[string, string]> = [
    ['200,000 distinct keys', Array.from({ length: 200_000 }, (_, i) => `k${i}=${i}`).join('&')],
    ['200,000 repeats of one key', 'CallFrom=09812345678&'.repeat(200_000)],
    ['a 5 MB value', `CustomField=${'a'.repeat(5_000_000)}`],
    ['100,000-deep brackets', `Legs[0]${'[a]'.repeat(100_000)}=1&a${'['.repeat(100_000)}=1`],
    ['1 MB of broken escapes', '%E0%A4'.repeat(170_000)],
    ['1 MB of separators', '&='.repeat(500_000)],
    ['1 MB of spaces around a number', `CallFrom=${' '.repeat(500_000)}09812345678${' '.repeat(500_000)}`],
    ['20,000 long values of one key', `CustomField=${'a'.repeat(3000)}&`.repeat(2000)],
  ];
  for (const [name, query] of cases) {
    const t0 = performance.now();
    const { params, warnings } = collectParams({ query });
    const call = parseExotelCall(params, { defaultCountry: 'IN', warnings });
    const ms = performance.now() - t0;
    t.ok(ms < 1500, `${name}: ${ms.toFixed(0)} ms`);
    t.ok(
      params.size <= DEFAULT_LIMITS.maxKeys && call.warnings.length <= 2 * DEFAULT_LIMITS.maxKeys + 24,
      `${name}: bounded (${params.size} keys, ${call.warnings.length} warnings)`,
    );
  }
});

// --- Examples the properties above found -------------------------------------------------------------

t.test('a key with a NUL or a lone surrogate is stored with U+FFFD instead (Postgres JSON refuses both), with one warning', async (t) => {
  const { params, warnings } = collectParams({ query: 'CallSid=k1&%00=1&a%00b=2', json: JSON.parse('{"\\ud800":"3","x\\udfffy":"4"}') as unknown });
  t.same(
    [...params],
    [
      ['CallSid', 'k1'],
      ['\ufffd', '3'],
      ['a\ufffdb', '2'],
      ['x\ufffdy', '4'],
    ],
    'the JSON key `\\ud800` folds into the query key `%00`',
  );
  t.same(warnings, ['repeated key "\ufffd": last value kept', '4 keys with a NUL or a lone surrogate: those characters replaced by U+FFFD']);
  t.same(
    collectParams({ query: 'CallSid=k2&a%00b=2' }).warnings,
    ['1 key with a NUL or a lone surrogate: those characters replaced by U+FFFD'],
    'one: singular',
  );
  const call = parseExotelCall(
    new Map([
      ['\u0000', 'a'],
      ['b\ud800', 'b'],
    ]),
    { defaultCountry: 'IN' },
  );
  t.same(Object.keys(call.raw), ['\ufffd', 'b\ufffd'], 'maps not from collectParams are made storable too');
  t.equal(call.raw['\ufffd'], 'a', 'values are kept as sent (the CDR writer cleans values)');
});

t.test('a value is truncated once per key with one warning, never between the halves of a surrogate pair', async (t) => {
  const limits = { ...DEFAULT_LIMITS, maxValueLength: 5 };
  const { params, warnings } = collectParams(
    {
      query: new URLSearchParams([
        ['a', 'abcd😀xyz'],
        ['a', 'abcd😀xyz'],
        ['b', 'abc😀xyz'],
      ]).toString(),
    },
    limits,
  );
  t.same(
    [...params],
    [
      ['a', 'abcd'],
      ['b', 'abc😀'],
    ],
  );
  t.ok([...params.values()].every((v) => v.isWellFormed()));
  t.same(warnings.filter((w) => w.includes('truncated')).length, 2, 'one truncation warning per key, not per repetition');
});

t.test('an Exotel time (yyyy-mm-dd hh:mm:ss, IST) reads as luxon reads it at +05:30: any year, impossible days and times refused', async (t) => {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 9999 }),
      fc.integer({ min: 0, max: 13 }),
      fc.integer({ min: 0, max: 32 }),
      fc.integer({ min: 0, max: 25 }),
      fc.integer({ min: 0, max: 60 }),
      fc.integer({ min: 0, max: 60 }),
      (y, mo, d, h, mi, se) => {
        const text = `${pad(y, 4)}-${pad(mo)}-${pad(d)} ${pad(h)}:${pad(mi)}:${pad(se)}`;
        const { params } = collectParams({ query: new URLSearchParams({ Created: text }).toString() });
        const got = parseExotelCall(params, { defaultCountry: 'IN' }).created;
        // 24:00:00 is the next midnight (ISO 8601), which luxon does not read: ask it for 00:00:00 and add a day.
        const midnight = h === 24 && mi === 0 && se === 0;
        const dt = DateTime.fromFormat(midnight ? text.replace(' 24:', ' 00:') : text, 'yyyy-MM-dd HH:mm:ss', { zone: 'UTC+5:30' });
        const want = dt.isValid ? dt.toMillis() + (midnight ? 86_400_000 : 0) : null;
        assert.equal(got?.getTime() ?? null, want, text);
      },
    ),
    runs(20_000),
  );
  t.pass('20,000 random times agree with luxon');
});
