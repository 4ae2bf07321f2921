import { LRUCache } from 'lru-cache';
import { Metadata, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

/**
 * E.164 form of a phone number as Exotel or an operator writes it: national (`09876543210`),
 * with the country code but no plus (`919876543210`), or E.164 (`+919876543210`).
 * Returns null when it is not a valid number for its country, or has an extension (`… ext 12`,
 * `…#12`): Exotel dials whole numbers, and the extension would be dropped without a word.
 */
export function toE164(raw: string, defaultCountry: CountryCode): string | null {
  const text = raw.trim();
  if (text.length === 0 || text.length > 32) return null;
  // Checked before the cache: cheaper than a lookup, and new callers would only churn the cache.
  const indian = validIndianNumber(text, defaultCountry);
  if (indian !== null) return indian;
  const key = `${defaultCountry}|${text}`;
  const known = recent.get(key);
  if (known !== undefined) return known || null;
  const e164 = parse(text, defaultCountry);
  recent.set(key, e164 ?? ''); // '' = not a number
  return e164;
}

function parse(text: string, defaultCountry: CountryCode): string | null {
  const parsed = parsePhoneNumberFromString(text, defaultCountry);
  return parsed?.isValid() && !parsed.ext ? parsed.number : null;
}

/**
 * toE164 of a number typed into a URL's query string, where a `+` sent unencoded arrives as a space
 * (`?number=+6591234567` reads ` 6591234567`): such a value is read as international first, as a
 * callback's numbers are (parsePhone in src/exotel/params.ts). Read as national, it would be
 * another number (+916591234567).
 */
export function queryNumberToE164(value: string, defaultCountry: CountryCode): string | null {
  return (/^ [0-9]/.test(value) ? toE164(`+${value.trim()}`, defaultCountry) : null) ?? toE164(value, defaultCountry);
}

/** Why toE164 refused `raw`, for a 400: an extension is named, as it is no typo. */
export function notANumber(raw: string, defaultCountry: CountryCode): string {
  const ext = raw.length <= 64 ? parsePhoneNumberFromString(raw.trim(), defaultCountry)?.ext : undefined;
  return ext
    ? `'${raw}' has an extension (${ext}); Exotel dials whole phone numbers, not extensions: give a number without one`
    : `'${raw}' is not a valid phone number (default country ${defaultCountry})`;
}

/**
 * libphonenumber's parse costs microseconds, and callbacks carry the same few numbers (the
 * ExoPhone, the caller, agents) again and again: its latest answers are kept.
 */
const recent = new LRUCache<string, string>({ max: 10_000 });

/**
 * Most callers are new, and nearly all are Indian numbers in one of four plain forms. For those,
 * libphonenumber's whole pipeline (RFC 3966 and extension scanning, IDD and national-prefix
 * stripping, a PhoneNumber object) comes down to one test of India's national number pattern,
 * taken from libphonenumber's own metadata. This answers only when that test says "valid" and
 * libphonenumber provably agrees; everything else (other countries, punctuation, a national
 * number starting with 0, invalid numbers) goes to libphonenumber. Why each form agrees:
 *
 * - `+91` N: 91 is India's calling code alone, N keeps no national prefix (it starts 1–9), and
 *   India has no per-type patterns, so valid ⇔ N matches the national number pattern.
 * - N and `0` N, default IN: N[0] ≠ 0, so there is no IDD prefix (`00`); `0` is stripped as the
 *   national prefix because N has a possible length. An N starting with 91 is only read as
 *   "91 without the plus" when N itself is not valid.
 * - `91` N, default IN: libphonenumber drops the 91 when `91`N is not valid and N is; when `91`N
 *   is itself valid it keeps all twelve digits, so that case is left to libphonenumber.
 */
function validIndianNumber(text: string, defaultCountry: CountryCode): string | null {
  if (india === null) return null;
  let national: string;
  if (text.length === 13 && text.startsWith('+91')) national = text.slice(3);
  else if (defaultCountry !== 'IN') return null;
  else if (text.length === 10) national = text;
  else if (text.length === 11 && text[0] === '0') national = text.slice(1);
  else if (text.length === 12 && text.startsWith('91')) {
    if (india.valid.test(text)) return null;
    national = text.slice(2);
  } else return null;
  return TEN_DIGITS_NO_PREFIX.test(national) && india.valid.test(national) ? `+91${national}` : null;
}

const TEN_DIGITS_NO_PREFIX = /^[1-9][0-9]{9}$/; // ASCII digits only: other digit forms go to libphonenumber

/** Metadata methods libphonenumber-js has but does not declare in its types. */
interface PlanInternals {
  callingCode(): string;
  IDDPrefix(): string;
  nationalNumberPattern(): string;
  possibleLengths(): number[] | undefined;
  nationalPrefixForParsing(): string | undefined;
  nationalPrefixTransformRule(): string | undefined;
  hasTypes(): boolean;
}
interface MetadataInternals {
  numberingPlan: PlanInternals;
  getCountryCodesForCallingCode(callingCode: string): string[] | undefined;
  hasCallingCode(callingCode: string): boolean;
}

/**
 * India's validity rule from the metadata libphonenumber parses with, or null (no fast path) if
 * a metadata update breaks any fact the reasoning above depends on.
 */
const india: { valid: RegExp } | null = (() => {
  const metadata = new Metadata();
  metadata.selectNumberingPlan('IN');
  const internals = metadata as unknown as MetadataInternals;
  const plan = internals.numberingPlan;
  const countries = internals.getCountryCodesForCallingCode('91');
  const sameAsAssumed =
    plan.callingCode() === '91' &&
    countries?.length === 1 &&
    countries[0] === 'IN' &&
    !internals.hasCallingCode('9') &&
    plan.IDDPrefix() === '00' &&
    plan.nationalPrefixForParsing() === '0' &&
    !plan.nationalPrefixTransformRule() &&
    !plan.hasTypes() &&
    (plan.possibleLengths() ?? []).includes(10);
  // Built as libphonenumber's matchesEntirely() builds it.
  return sameAsAssumed ? { valid: new RegExp(`^(?:${plan.nationalNumberPattern()})$`) } : null;
})();

/** For the tests: whether the Indian fast path is in use with the installed metadata. */
export const INDIAN_FAST_PATH = india !== null;
