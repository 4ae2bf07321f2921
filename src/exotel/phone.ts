import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

/**
 * E.164 form of a phone number as Exotel or an operator writes it: national (`09876543210`),
 * with the country code but no plus (`919876543210`), or E.164 (`+919876543210`).
 * Returns null when it is not a valid number for its country.
 */
export function toE164(raw: string, defaultCountry: CountryCode): string | null {
  const text = raw.trim();
  if (text.length === 0 || text.length > 32) return null;
  const parsed = parsePhoneNumberFromString(text, defaultCountry);
  return parsed?.isValid() ? parsed.number : null;
}
