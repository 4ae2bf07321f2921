/**
 * toE164 (src/exotel/phone.ts) answers the plain Indian forms without libphonenumber's full parse.
 * These tests hold it to exactly what libphonenumber answers, for every input: the fast path's forms
 * with every leading digit, other countries, punctuation, wrong lengths, letters, other digit
 * scripts, blank and over-long text, under several default countries. Most inputs are random
 * digits the module-level cache has not seen, so both the cold path and cache hits are compared.
 * A fixed seed keeps CI deterministic (FUZZ_SEED and FUZZ_RUNS_SCALE to explore further locally).
 */
import t from 'tap';
import fc from 'fast-check';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';
import { INDIAN_FAST_PATH, notANumber, toE164 } from '../../src/exotel/phone.js';

const SEED = Number(process.env.FUZZ_SEED) || 20261121;
const RUN_SCALE = Number(process.env.FUZZ_RUNS_SCALE) || 1;
const runs = (n: number) => ({ seed: SEED, numRuns: Math.round(n * RUN_SCALE) });

/** What toE164 computed before the fast path: libphonenumber alone (and the same length bounds). */
function reference(raw: string, country: CountryCode): string | null {
  const text = raw.trim();
  if (text.length === 0 || text.length > 32) return null;
  const parsed = parsePhoneNumberFromString(text, country);
  return parsed?.isValid() && !parsed.ext ? parsed.number : null;
}

// --- Generators -------------------------------------------------------------------------------------

const digits = (minLength: number, maxLength = minLength) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength, maxLength });
/** Ten digits with the leading one drawn evenly from 0–9 (only 1–9 may take the fast path). */
const tenDigits = fc.tuple(fc.integer({ min: 0, max: 9 }), digits(9)).map(([first, rest]) => `${first}${rest}`);

const indian = fc.oneof(
  tenDigits,
  tenDigits.map((n) => `0${n}`),
  tenDigits.map((n) => `91${n}`),
  tenDigits.map((n) => `+91${n}`),
  tenDigits.map((n) => `0091${n}`),
  tenDigits.map((n) => `+910${n}`),
  tenDigits.map((n) => `9191${n}`),
  fc.constantFrom('91', '+91', '0', '').chain((prefix) => digits(0, 16).map((n) => prefix + n)), // too short, too long
);
const otherCountries = fc.oneof(
  digits(10).map((n) => `+1${n}`),
  digits(10).map((n) => `1${n}`),
  digits(10), // US
  digits(10).map((n) => `+44${n}`),
  digits(10).map((n) => `0${n}`),
  digits(10).map((n) => `44${n}`), // GB
  digits(9).map((n) => `+971${n}`),
  digits(8, 9).map((n) => `0${n}`),
  digits(9).map((n) => `971${n}`), // AE
  digits(8).map((n) => `+65${n}`),
  digits(8),
  digits(8).map((n) => `65${n}`), // SG
  fc.constantFrom('+', '+0', '00', '011').chain((prefix) => digits(1, 16).map((n) => prefix + n)),
);
const number = fc.oneof({ weight: 3, arbitrary: indian }, { weight: 2, arbitrary: otherCountries });

/** The same number as people and operators write it: separators anywhere, digits of other scripts. */
const written = (text: string) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constant(text) },
    {
      weight: 2,
      arbitrary: fc
        .array(fc.tuple(fc.nat({ max: text.length }), fc.constantFrom(' ', '-', '(', ')', '.', '  ', ' - ')), { minLength: 1, maxLength: 4 })
        .map((inserts) => inserts.sort((a, b) => b[0] - a[0]).reduce((s, [at, sep]) => s.slice(0, at) + sep + s.slice(at), text)),
    },
    { weight: 1, arbitrary: fc.constantFrom(0xff10, 0x0660, 0x0966).map((zero) => text.replace(/[0-9]/g, (d) => String.fromCharCode(zero + Number(d)))) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.nat({ max: text.length }), fc.constantFrom('a', 'x', 'ext', 'O', 'l', '#', ';', '+', '*'))
        .map(([at, c]) => text.slice(0, at) + c + text.slice(at)),
    },
  );
const padding = fc.constantFrom('', '', '', ' ', '  ', '\t', '\n', '\u00a0', '\ufeff', ' '.repeat(30));

const input = fc.oneof(
  { weight: 12, arbitrary: fc.tuple(padding, number.chain(written), padding).map(([a, n, b]) => a + n + b) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      ' ',
      '\t\n',
      '\u00a0\u2028',
      '+',
      '0',
      '91',
      'tel:+919876543210',
      '+91 98765 43210;ext=12',
      '09876543210 ext 12',
      '09876543210#12',
      'abc',
      'ninety-one',
    ),
  },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('+91', '91', '0', ''), digits(30, 40)).map(([p, n]) => p + n) }, // over 32 characters
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...'0123456789+-() abcxO#'), maxLength: 20 }) },
);
const country = fc.constantFrom<CountryCode>('IN', 'IN', 'US', 'GB', 'AE', 'SG');

// --- Tests ------------------------------------------------------------------------------------------

t.test('the Indian fast path is in use with the installed libphonenumber metadata (else the tests below prove nothing about it)', async (t) => {
  t.ok(INDIAN_FAST_PATH);
});

t.test('a number with an extension is no number (the extension would be dropped), and notANumber says why', async (t) => {
  for (const raw of ['09812345678 ext 12', '09812345678 x12', '09812345678#12', '+919812345678;ext=12', 'tel:+919812345678;ext=12']) {
    t.equal(toE164(raw, 'IN'), null, raw);
    t.match(notANumber(raw, 'IN'), `'${raw}' has an extension (12)`);
  }
  t.equal(toE164('09812345678', 'IN'), '+919812345678');
  t.equal(notANumber('12', 'IN'), "'12' is not a valid phone number (default country IN)");
});

t.test('toE164 returns exactly what libphonenumber returns, on numbers the cache has not seen and again from the cache', async (t) => {
  fc.assert(
    fc.property(input, country, (raw, defaultCountry) => {
      const expected = reference(raw, defaultCountry);
      const cold = toE164(raw, defaultCountry);
      const cached = toE164(raw, defaultCountry);
      if (cold !== expected || cached !== expected)
        throw new Error(`toE164(${JSON.stringify(raw)}, ${defaultCountry}) = ${cold} then ${cached}, libphonenumber: ${expected}`);
    }),
    runs(30_000),
  );
  t.pass('no input where toE164 and libphonenumber disagree');
});

t.test('valid Indian numbers in all four forms agree with libphonenumber, whatever their leading digit and default country', async (t) => {
  fc.assert(
    fc.property(tenDigits, fc.constantFrom('', '0', '91', '+91'), country, (ten, prefix, defaultCountry) => {
      const raw = prefix + ten;
      const expected = reference(raw, defaultCountry);
      if (toE164(raw, defaultCountry) !== expected) throw new Error(`toE164(${JSON.stringify(raw)}, ${defaultCountry}) ≠ ${expected}`);
    }),
    runs(20_000),
  );
  t.pass('all forms agree');
});

t.test('the boundaries of the fast path agree with libphonenumber', async (t) => {
  const cases: [string, CountryCode][] = [
    ['09876543210', 'IN'],
    ['919876543210', 'IN'],
    ['+919876543210', 'IN'],
    ['9876543210', 'IN'],
    ['+919876543210', 'US'],
    ['+919876543210', 'GB'],
    ['9876543210', 'US'],
    ['919876543210', 'US'],
    ['09876543210', 'GB'],
    ['+910123456789', 'IN'],
    ['0123456789', 'IN'],
    ['01234567890', 'IN'],
    ['1234567890', 'IN'],
    ['911234567890', 'IN'],
    ['9191234567', 'IN'],
    ['919123456789', 'IN'],
    ['00919876543210', 'IN'],
    ['5123456789', 'IN'],
    ['915123456789', 'IN'],
    ['+91 98765 43210', 'IN'],
    ['０９８７６５４３２１０', 'IN'],
    ['+9198765432100', 'IN'],
    ['98765432100', 'IN'],
  ];
  for (const [raw, defaultCountry] of cases) t.equal(toE164(raw, defaultCountry), reference(raw, defaultCountry), `${raw} (${defaultCountry})`);
  // The reference itself answers as the product expects for the everyday forms.
  for (const raw of ['09876543210', '919876543210', '+919876543210', '9876543210']) t.equal(toE164(raw, 'IN'), '+919876543210', raw);
});
