import { LRUCache } from 'lru-cache';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

/**
 * E.164 form of a phone number as Exotel or an operator writes it: national (`09876543210`),
 * with the country code but no plus (`919876543210`), or E.164 (`+919876543210`).
 * Returns null when it is not a valid number for its country.
 */
export function toE164(raw: string, defaultCountry: CountryCode): string | null {
  const text = raw.trim();
  if (text.length === 0 || text.length > 32) return null;
  const key = `${defaultCountry}|${text}`;
  const known = recent.get(key);
  if (known !== undefined) return known || null;
  const parsed = parsePhoneNumberFromString(text, defaultCountry);
  const e164 = parsed?.isValid() ? parsed.number : null;
  recent.set(key, e164 ?? ''); // '' = not a number
  return e164;
}

/**
 * Parsing costs microseconds, and a callback carries the same few numbers (the ExoPhone, the
 * caller, agents) again and again: the latest answers are kept.
 */
const recent = new LRUCache<string, string>({ max: 10_000 });
