/**
 * What a person must change when a value fails its schema, in place of Ajv's bare phrasings
 * (`must be equal to constant`, `must match format "date"`): the allowed values, the format
 * spelled out with an example, the fields an object may have.
 */
import type { ErrorObject } from 'ajv';

/** Formats as a person writes them, each with an example. */
const FORMATS: Record<string, string> = {
  date: 'a date, YYYY-MM-DD (e.g. 2026-12-25)',
  'date-time': 'an ISO 8601 instant with its offset, YYYY-MM-DDTHH:MM:SS±HH:MM or Z (e.g. 2027-03-31T23:59:59+05:30), in the years 0001 to 9999 (UTC)',
  uri: 'an absolute URL (e.g. https://example.com/after-hours)',
  uuid: 'an id as the API gave it, a UUID (e.g. 3f2b8c1e-6a4d-4e8b-9c7a-1d2e3f4a5b6c)',
  'iana-timezone': 'an IANA timezone name (e.g. Asia/Kolkata, Europe/London), not an abbreviation such as IST or BST, nor an offset',
};

/**
 * Patterns a schema reuses under descriptions of their own (a slug in `callerIn` is described as
 * "Caller is a live entry of this VIP list"): what a value must look like.
 */
const PATTERNS: Record<string, string> = {
  '^[a-z0-9-]{1,64}$': 'a slug: lowercase letters, digits and -, 1–64 characters (e.g. gold)',
  '^\\+[0-9]{1,14}$': 'an E.164 prefix: + and digits (e.g. +9180)',
  '^\\+[1-9][0-9]{6,14}$': 'an E.164 number: + and 7–15 digits (e.g. +918047115777)',
  '^https?://': 'an http:// or https:// URL',
  '\\S': 'some text, not only spaces',
};

const list = (values: unknown[]) => [...new Set(values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))))].join(', ');

/**
 * The fix for the error chosen to be shown, given every error Ajv reported (the sibling `const`
 * errors of a union of literals together give the allowed values). Undefined when Ajv's own
 * message already says it (`must be string`, `must NOT have more than 64 characters`).
 */
export function whatToFix(chosen: ErrorObject, all: readonly ErrorObject[]): string | undefined {
  const params = chosen.params as { allowedValue?: unknown; allowedValues?: unknown[]; format?: string; additionalProperty?: string };
  if (chosen.keyword === 'const' || chosen.keyword === 'enum') {
    const allowed = all
      .filter((e) => e.instancePath === chosen.instancePath && (e.keyword === 'const' || e.keyword === 'enum'))
      .flatMap((e) => {
        const p = e.params as { allowedValue?: unknown; allowedValues?: unknown[] };
        return e.keyword === 'const' ? [p.allowedValue] : (p.allowedValues ?? []);
      });
    return allowed.length === 1 ? `must be ${list(allowed)}` : `must be one of ${list(allowed)}`;
  }
  if (chosen.keyword === 'format' && params.format) {
    const fix = `must be ${FORMATS[params.format] ?? `in the format ${params.format}`}`;
    // `?at=2026-12-25T11:00:00+05:30` typed into a URL: the query string reads its + as a space.
    const plusAsSpace = params.format === 'date-time' && typeof chosen.data === 'string' && /\d \d\d:?\d\d$/.test(chosen.data);
    return plusAsSpace ? `${fix}; in a URL, write + as %2B (a + there is read as a space)` : fix;
  }
  if (chosen.keyword === 'additionalProperties') {
    const known = Object.keys((chosen.parentSchema as { properties?: object } | undefined)?.properties ?? {});
    return known.length > 0 ? `unknown field; remove it (the fields here are ${known.join(', ')})` : 'unknown field; remove it';
  }
  if (chosen.keyword === 'pattern') {
    const pattern = (chosen.params as { pattern?: string }).pattern ?? '';
    const described = (chosen.parentSchema as { description?: string } | undefined)?.description;
    if (PATTERNS[pattern]) return `must be ${PATTERNS[pattern]}`;
    return described ? `must be: ${described}` : `must match the pattern ${pattern}`;
  }
  return undefined;
}
