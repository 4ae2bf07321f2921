/**
 * What Exotel sends to an applet URL (Passthru, Connect "Dial Whom", Connect dynamic parameters, dial
 * events), turned into typed call fields. The parameter lists in docs/exotel.md are the contract.
 *
 * Two steps, both pure, synchronous and never throwing:
 * - `collectParams` merges the query string, a form body and/or a JSON body into one flat key → value map,
 *   bounded by `ParseLimits` (hostile input costs at most a linear pass and `maxKeys` entries).
 * - `parseExotelCall` reads the documented parameters from that map.
 *
 * Why it looks the way it does:
 * - Keys are matched case-insensitively: Exotel sends `CallSid` and `digits` and `flow_id`, its docs also
 *   show all-lowercase names (`callsid`) and mixed ones (`Callfrom`). A key repeated (in any spelling, in any
 *   source) keeps the spelling first seen and the value last seen, with a warning. A documented name not
 *   found that way is also looked up without `_`, `-` and spaces (`call_sid`, `Dial-Call-Status`).
 * - Real traffic sends absent values as the literal text `null` (`DialCallStatus=null`): such a parameter is
 *   dropped as it is collected, so it is absent everywhere — typed fields, rule conditions, legs and `raw`.
 * - Numbers may be Exotel SIP user ids (`sip:agent123`, when a Connect rings app users): kept as sent, with
 *   no E.164 form and no warning.
 * - Bracket keys are never expanded into objects (no `qs`): they stay flat strings, and only
 *   `Legs[i][CauseCode|Cause|Type|OnCallDuration|Number]` is read, by a strict pattern. With `Map` and
 *   null-prototype records, keys such as `__proto__` or `constructor[prototype][x]` are only data.
 * - Problems (truncation, dropped keys, numbers or dates that do not parse) become `warnings`; the raw value
 *   is always kept in `raw`, which is exactly what a CDR stores, minus the callback secret.
 * - Keys are made storable: a NUL or a lone surrogate in a key (`%00=1`, JSON `"\ud800"`) becomes U+FFFD.
 *   Postgres JSON refuses both, and the CDR writer can only clean values; one such key would otherwise make
 *   the whole CDR batch fail, losing the CDRs of every callback committed with it.
 */
import type { CountryCode } from 'libphonenumber-js';
import { DateTime } from 'luxon';
import { count } from '../lib/count.js';
import { toE164 } from './phone.js';

/** A phone number as Exotel sent it and in E.164 (null when not a valid number). */
export interface PhoneField {
  raw: string;
  e164: string | null;
}

export interface CallLeg {
  index: number;
  causeCode: string | null;
  cause: number | null;
  type: string | null;
  onCallDuration: number | null;
  number: PhoneField | null;
}

export interface ExotelCall {
  callSid: string | null;
  /** CallFrom, else From. */
  callFrom: PhoneField | null;
  /** CallTo, else To. */
  callTo: PhoneField | null;
  from: PhoneField | null;
  to: PhoneField | null;
  /** Lowercased, spaces as `-`: 'incoming', 'outbound-dial'. */
  direction: string | null;
  /** Lowercased, spaces as `-`: 'no answer' → 'no-answer'. */
  callStatus: string | null;
  /** Lowercased, spaces as `-`: 'call-attempt', 'completed', 'client-hangup', 'incomplete', 'voicemail'. */
  callType: string | null;
  /** Lowercased, spaces as `-`. */
  dialCallStatus: string | null;
  dialCallDuration: number | null;
  dialWhomNumber: PhoneField | null;
  outgoingPhoneNumber: PhoneField | null;
  /** Without the double quotes Exotel wraps it in; '' when sent empty, null when not sent. */
  digits: string | null;
  /**
   * Set when `digits` was not sent but taken from the call's first request to the same dial flow:
   * Exotel sends it only with a Dial Whom's first request, not with its re-fetches.
   */
  digitsFromFirstRequest?: true;
  customField: string | null;
  recordingUrl: string | null;
  created: Date | null;
  startTime: Date | null;
  currentTime: Date | null;
  /** Usually the constant 1970-01-01 05:30:00 IST, i.e. epoch 0. */
  endTime: Date | null;
  /** Dial events: 'busy' | 'free'. */
  status: string | null;
  /** Dial events: 'Dial' | 'Ringing' | 'Answered' | 'Terminal', as sent. */
  eventType: string | null;
  /** From `Legs[i][…]`, ordered by i; only indices that were sent. */
  legs: CallLeg[];
  /** Every parameter received (after limits), secret-free: exactly what a CDR stores. */
  raw: Record<string, string>;
  /** Problems met while parsing (truncation, dropped keys, bad numbers/dates); never throws. */
  warnings: string[];
}

export interface ParseLimits {
  maxKeys: number;
  maxKeyLength: number;
  maxValueLength: number;
  maxLegs: number;
}

export const DEFAULT_LIMITS: ParseLimits = Object.freeze({ maxKeys: 200, maxKeyLength: 100, maxValueLength: 2048, maxLegs: 20 });

const LEG_FIELDS = ['CauseCode', 'Cause', 'Type', 'OnCallDuration', 'Number'] as const;
type LegField = (typeof LEG_FIELDS)[number];
const LEG_FIELD_BY_LOWER = new Map<string, LegField>(LEG_FIELDS.map((f) => [f.toLowerCase(), f]));
const LEG_KEY = /^Legs\[(\d{1,3})\]\[(CauseCode|Cause|Type|OnCallDuration|Number)\]$/i;

/**
 * Case-insensitive, bounded key → value accumulator. Keeps the first spelling of a key and the last value.
 * Warnings stay bounded too: one per distinct repeated or truncated key, one summary for dropped keys.
 */
class ParamBag {
  private readonly entries = new Map<string, { key: string; value: string }>();
  /** Made at the first repeated or truncated key: most callbacks have neither. */
  private repeated: Set<string> | null = null;
  private truncated: Set<string> | null = null;
  private droppedForCount = 0;
  private droppedForLength = 0;
  private unstorableKeys = 0;

  constructor(
    private readonly limits: ParseLimits,
    readonly warnings: string[],
  ) {}

  add(key: string, value: string): void {
    if (isNullText(value)) return;
    if (key.length > this.limits.maxKeyLength) {
      this.droppedForLength++;
      return;
    }
    const storable = storableKey(key);
    if (storable !== key) {
      this.unstorableKeys++;
      key = storable;
    }
    const lower = key.toLowerCase();
    const existing = this.entries.get(lower);
    if (!existing && this.entries.size >= this.limits.maxKeys) {
      this.droppedForCount++;
      return;
    }
    if (value.length > this.limits.maxValueLength) {
      this.truncated ??= new Set();
      if (!this.truncated.has(lower)) {
        this.truncated.add(lower);
        this.warnings.push(`value of ${show(key)} truncated from ${value.length} to ${this.limits.maxValueLength} characters`);
      }
      // Not between the two halves of a surrogate pair: a well-formed value stays well formed.
      const cut = isHighSurrogate(value.charCodeAt(this.limits.maxValueLength - 1)) ? this.limits.maxValueLength - 1 : this.limits.maxValueLength;
      value = value.slice(0, cut);
    }
    if (existing) {
      this.repeated ??= new Set();
      if (!this.repeated.has(lower)) {
        this.repeated.add(lower);
        this.warnings.push(`repeated key ${show(key)}: last value kept`);
      }
      existing.value = value;
    } else {
      this.entries.set(lower, { key, value });
    }
  }

  finish(): Map<string, string> {
    if (this.unstorableKeys > 0) {
      this.warnings.push(`${count(this.unstorableKeys, 'key')} with a NUL or a lone surrogate: those characters replaced by U+FFFD`);
    }
    if (this.droppedForLength > 0) {
      this.warnings.push(`${count(this.droppedForLength, 'parameter')} dropped: key longer than ${this.limits.maxKeyLength} characters`);
    }
    if (this.droppedForCount > 0) {
      this.warnings.push(`${count(this.droppedForCount, 'parameter')} dropped: more than ${this.limits.maxKeys} keys`);
    }
    const params = new Map<string, string>();
    const byLower = new Map<string, string>();
    for (const [lower, { key, value }] of this.entries) {
      params.set(key, value);
      byLower.set(lower, value);
    }
    FOLDED.set(params, byLower);
    return params;
  }
}

/**
 * Maps made by collectParams, with their values by lowercased key: their keys are already unique
 * case-insensitively and storable, so parseExotelCall need not fold them again.
 */
const FOLDED = new WeakMap<Map<string, string>, Map<string, string>>();

/**
 * Collects parameters from a query string and/or form body (x-www-form-urlencoded text) and/or a JSON
 * object. Later sources override earlier ones for the same key. Never throws.
 */
export function collectParams(
  sources: { query?: string; form?: string; json?: unknown },
  limits: ParseLimits = DEFAULT_LIMITS,
): { params: Map<string, string>; warnings: string[] } {
  const warnings: string[] = [];
  const bag = new ParamBag(limits, warnings);
  // URLSearchParams decodes `+` and %-escapes and leaves malformed escapes as text instead of throwing.
  if (sources.query) for (const [key, value] of new URLSearchParams(sources.query)) bag.add(key, value);
  if (sources.form) for (const [key, value] of new URLSearchParams(sources.form)) bag.add(key, value);
  if (sources.json !== undefined) addJson(bag, sources.json, limits, warnings);
  return { params: bag.finish(), warnings };
}

function addJson(bag: ParamBag, json: unknown, limits: ParseLimits, warnings: string[]): void {
  if (!isPlainObject(json)) {
    warnings.push(`JSON body ignored: not an object (${json === null ? 'null' : Array.isArray(json) ? 'array' : typeof json})`);
    return;
  }
  let ignored = 0;
  for (const key of Object.keys(json)) {
    const value = json[key];
    if (typeof value === 'string') bag.add(key, value);
    else if (typeof value === 'number' || typeof value === 'boolean') bag.add(key, String(value));
    else if (key.toLowerCase() === 'legs' && Array.isArray(value)) addJsonLegs(bag, value, limits, warnings);
    else if (value !== null) ignored++;
  }
  if (ignored > 0) warnings.push(`${count(ignored, 'nested JSON value')} ignored: only strings, numbers and booleans are read`);
}

/** A JSON `Legs` array of objects becomes the same flat `Legs[i][Field]` keys a query string carries. */
function addJsonLegs(bag: ParamBag, legs: unknown[], limits: ParseLimits, warnings: string[]): void {
  if (legs.length > limits.maxLegs) warnings.push(`JSON Legs: ${count(legs.length - limits.maxLegs, 'leg')} beyond ${limits.maxLegs} ignored`);
  const read = Math.min(legs.length, limits.maxLegs);
  for (let i = 0; i < read; i++) {
    const leg = legs[i];
    if (!isPlainObject(leg)) continue;
    for (const name of Object.keys(leg)) {
      const field = LEG_FIELD_BY_LOWER.get(name.toLowerCase());
      const value = leg[name];
      if (!field) continue;
      if (typeof value === 'string') bag.add(`Legs[${i}][${field}]`, value);
      else if (typeof value === 'number' || typeof value === 'boolean') bag.add(`Legs[${i}][${field}]`, String(value));
    }
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A map folded as collectParams folds its sources: case-insensitive duplicates merged (first
 * spelling, made storable; last value, with a warning), and its values by lowercased key.
 */
function fold(params: Map<string, string>, warnings: string[]): { folded: Map<string, string>; byLower: Map<string, string> } {
  const byLower = new Map<string, string>();
  const keyOf = new Map<string, string>();
  const repeated = new Set<string>();
  for (const [key, value] of params) {
    if (isNullText(value)) continue;
    const lower = key.toLowerCase();
    if (byLower.has(lower) && !repeated.has(lower)) {
      repeated.add(lower);
      warnings.push(`repeated key ${show(key)}: last value kept`);
    }
    byLower.set(lower, value);
    if (!keyOf.has(lower)) keyOf.set(lower, storableKey(key));
  }
  const folded = new Map<string, string>();
  for (const [lower, value] of byLower) folded.set(keyOf.get(lower)!, value);
  return { folded, byLower };
}

/** Parses collected params. `secretKeys` (e.g. ['token']) are removed from `raw` (case-insensitive). */
export function parseExotelCall(
  params: Map<string, string>,
  opts: { defaultCountry: CountryCode; secretKeys?: string[]; warnings?: string[]; limits?: ParseLimits },
): ExotelCall {
  const warnings = [...(opts.warnings ?? [])];
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const secrets = new Set((opts.secretKeys ?? []).map((k) => k.toLowerCase()));

  // A map not made by collectParams (e.g. simulate) is folded the same way first.
  const known = FOLDED.get(params);
  const { folded, byLower } = known ? { folded: params, byLower: known } : fold(params, warnings);
  const raw: Record<string, string> = Object.create(null) as Record<string, string>;
  // `byLower` holds the same keys, lowercased, in the same order (both maps are built together).
  const lowered = byLower.keys();
  for (const [key, value] of folded) if (!secrets.has(lowered.next().value!)) raw[key] = value;

  const loose = looseKeys(byLower);
  const get = (name: string): string | undefined => {
    const lower = name.toLowerCase();
    return byLower.get(lower) ?? loose?.get(lower);
  };
  const text = (name: string): string | null => nonEmpty(clean(get(name)));
  const phone = (name: string): PhoneField | null => parsePhone(name, get(name), opts.defaultCountry, warnings);
  const integer = (name: string): number | null => parseInteger(name, get(name), warnings);
  const date = (name: string): Date | null => parseDate(name, get(name), warnings);

  const from = phone('From');
  const to = phone('To');
  return {
    callSid: text('CallSid'),
    callFrom: phone('CallFrom') ?? from,
    callTo: phone('CallTo') ?? to,
    from,
    to,
    direction: enumValue(get('Direction')),
    callStatus: enumValue(get('CallStatus')),
    callType: enumValue(get('CallType')),
    dialCallStatus: enumValue(get('DialCallStatus')),
    dialCallDuration: integer('DialCallDuration'),
    dialWhomNumber: phone('DialWhomNumber'),
    outgoingPhoneNumber: phone('OutgoingPhoneNumber'),
    digits: parseDigits(get('digits')),
    customField: text('CustomField'),
    recordingUrl: text('RecordingUrl'),
    created: date('Created'),
    startTime: date('StartTime'),
    currentTime: date('CurrentTime'),
    endTime: date('EndTime'),
    status: nonEmpty(clean(get('Status'))?.toLowerCase()),
    eventType: text('EventType'),
    legs: parseLegs(folded, limits, opts.defaultCountry, warnings),
    raw,
    warnings,
  };
}

const SEPARATORS = /[_\-\s]/g;

/**
 * Values by key lowercased and without separators (`call_sid` → `callsid`), for the keys that have
 * one; null when none has (most callbacks).
 */
function looseKeys(byLower: Map<string, string>): Map<string, string> | null {
  let loose: Map<string, string> | null = null;
  for (const [lower, value] of byLower) {
    SEPARATORS.lastIndex = 0;
    if (!SEPARATORS.test(lower)) continue;
    const bare = lower.replace(SEPARATORS, '');
    loose ??= new Map();
    if (!loose.has(bare)) loose.set(bare, value);
  }
  return loose;
}

/** The literal text `null` (any case, whitespace around): how real traffic sends an absent value. */
function isNullText(value: string): boolean {
  return value.length >= 4 && value.length <= 40 && clean(value)!.toLowerCase() === 'null';
}

function parseLegs(params: Map<string, string>, limits: ParseLimits, country: CountryCode, warnings: string[]): CallLeg[] {
  // Built at the first leg key: most callbacks have none.
  let fieldsByIndex: Map<number, Map<LegField, string>> | null = null;
  let tooLarge: Set<number> | null = null;
  for (const key of params.keys()) {
    const m = LEG_KEY.exec(key);
    if (!m) continue;
    const index = Number(m[1]);
    if (index >= limits.maxLegs) {
      tooLarge ??= new Set();
      tooLarge.add(index);
      continue;
    }
    const field = LEG_FIELD_BY_LOWER.get(m[2]!.toLowerCase())!;
    fieldsByIndex ??= new Map();
    let fields = fieldsByIndex.get(index);
    if (!fields) {
      fields = new Map();
      fieldsByIndex.set(index, fields);
    }
    fields.set(field, params.get(key)!); // `Legs[1]` and `Legs[01]` are one leg; the last value wins
  }
  if (tooLarge) {
    warnings.push(`Legs index ${[...tooLarge].sort((a, b) => a - b).join(', ')} ignored: at most ${limits.maxLegs} legs are read`);
  }
  if (!fieldsByIndex) return [];
  const byIndex = fieldsByIndex;
  return [...byIndex.keys()]
    .sort((a, b) => a - b)
    .map((index) => {
      const f = byIndex.get(index)!;
      const name = (field: LegField) => `Legs[${index}][${field}]`;
      return {
        index,
        causeCode: nonEmpty(clean(f.get('CauseCode'))),
        cause: parseInteger(name('Cause'), f.get('Cause'), warnings),
        type: nonEmpty(clean(f.get('Type'))),
        onCallDuration: parseInteger(name('OnCallDuration'), f.get('OnCallDuration'), warnings),
        number: parsePhone(name('Number'), f.get('Number'), country, warnings),
      };
    });
}

/** An Exotel SIP user id, as a Connect that rings app users reports it: `sip:agent123`. */
export const SIP_USER = /^sips?:\S+$/i;

/**
 * A `+` sent unencoded in a query string arrives as a space (`CallFrom=+9198…` → ` 9198…`). A value that
 * starts with exactly one space and then a digit is therefore read as international first: reading it as
 * national would turn ` 14155552671` into the valid Indian +91 14155552671.
 */
function parsePhone(name: string, value: string | undefined, country: CountryCode, warnings: string[]): PhoneField | null {
  const raw = nonEmpty(clean(value));
  if (raw === null) return null;
  if (SIP_USER.test(raw)) return { raw, e164: null };
  const plusLost = /^ [0-9]/.test(value!);
  const e164 = (plusLost ? toE164(`+${raw}`, country) : null) ?? toE164(raw, country);
  if (e164 === null) warnings.push(`${name} ${show(raw)} is not a valid phone number`);
  return { raw, e164 };
}

function parseInteger(name: string, value: string | undefined, warnings: string[]): number | null {
  const s = clean(value);
  if (!s) return null;
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (Number.isSafeInteger(n)) return n;
  warnings.push(`${name} ${show(s)} is not a whole number`);
  return null;
}

/** India has kept +05:30 all year since 1945. */
const IST_OFFSET_MS = 5.5 * 3600_000;

/** The number written by the ASCII digits s[from..to), or -1 if one is not a digit. */
function digitsAt(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * `yyyy-mm-dd hh:mm:ss` in IST: the instant, null if that day or time does not exist, undefined if
 * `s` is not of that form. Without luxon, and without a regular expression's match object: every
 * callback carries several of these, and `DateTime.fromFormat` costs tens of microseconds each.
 */
function fromIst(s: string): Date | null | undefined {
  if (s.length !== 19 || s[4] !== '-' || s[7] !== '-' || s[10] !== ' ' || s[13] !== ':' || s[16] !== ':') return undefined;
  const y = digitsAt(s, 0, 4);
  const mo = digitsAt(s, 5, 7);
  const d = digitsAt(s, 8, 10);
  const h = digitsAt(s, 11, 13);
  const mi = digitsAt(s, 14, 16);
  const se = digitsAt(s, 17, 19);
  if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || se < 0) return undefined;
  // A day that does not exist (2026-02-30) is invalid; 24:00:00 is the next midnight, as in ISO 8601.
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return null;
  if (!(h < 24 && mi < 60 && se < 60) && !(h === 24 && mi === 0 && se === 0)) return null;
  // Date.UTC reads years 0–99 as 1900–1999: count those from 400 years on (one whole Gregorian cycle).
  const utc = y < 100 ? Date.UTC(y + 400, mo - 1, d, h, mi, se) - GREGORIAN_CYCLE_MS : Date.UTC(y, mo - 1, d, h, mi, se);
  return new Date(utc - IST_OFFSET_MS);
}

const GREGORIAN_CYCLE_MS = 146_097 * 86_400_000;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!;
}

const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$/i;
/** `Wed, 31 Jul 2024 16:42:56`, as real traffic sends `Created`; with a zone (`+0530`, `GMT`) it is RFC 2822. */
const DAY_MONTH_NAMES = /^[A-Za-z]{3}, \d{1,2} [A-Za-z]{3} \d{4} \d{2}:\d{2}(?::\d{2})?(?: (.+))?$/;
/** What Exotel sends for a time it does not have (`EndTime=0000-00-00 00:00:00`). */
const NO_TIME = '0000-00-00 00:00:00';

/**
 * `yyyy-mm-dd hh:mm:ss` and `Wed, 31 Jul 2024 16:42:56` are Exotel's server time, Asia/Kolkata; ISO 8601
 * must carry its offset.
 */
function parseDate(name: string, value: string | undefined, warnings: string[]): Date | null {
  const s = clean(value);
  if (!s || s === NO_TIME) return null;
  const ist = fromIst(s);
  if (ist) return ist;
  if (ist === undefined && ISO_WITH_OFFSET.test(s)) {
    const dt = DateTime.fromISO(s.replace(' ', 'T'), { setZone: true });
    if (dt.isValid) return dt.toJSDate();
  }
  const named = ist === undefined ? DAY_MONTH_NAMES.exec(s) : null;
  if (named) {
    const format = s.split(':').length === 3 ? 'EEE, d MMM yyyy HH:mm:ss' : 'EEE, d MMM yyyy HH:mm';
    const dt = named[1] === undefined ? DateTime.fromFormat(s, format, { zone: 'Asia/Kolkata', locale: 'en-US' }) : DateTime.fromRFC2822(s, { setZone: true });
    if (dt.isValid) return dt.toJSDate();
  }
  warnings.push(`${name} ${show(s)} is not a date (yyyy-mm-dd hh:mm:ss or "Wed, 31 Jul 2024 16:42:56" in Asia/Kolkata, or ISO 8601 with offset)`);
  return null;
}

/** Exotel wraps digits in double quotes (`"42"`); its own advice is to trim them off. */
function parseDigits(value: string | undefined): string | null {
  const s = clean(value);
  if (s === undefined) return null;
  let start = 0;
  let end = s.length;
  while (start < end && s[start] === '"') start++;
  while (end > start && s[end - 1] === '"') end--;
  return clean(s.slice(start, end))!;
}

/** Status-like values: lowercased, whitespace runs as `-` ('outbound dial' → 'outbound-dial'). */
export function enumValue(value: string | undefined): string | null {
  return nonEmpty(clean(value)?.toLowerCase().replace(/\s+/g, '-'));
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** A key Postgres can store as JSON text: NUL and lone surrogates replaced by U+FFFD. */
function storableKey(key: string): string {
  return key.isWellFormed() && !key.includes('\u0000') ? key : key.toWellFormed().replaceAll('\u0000', '\uFFFD');
}

/**
 * Trims whitespace and control characters at both ends (kept inside, and untouched in `raw`). A loop, not
 * `/\s+$/`, whose backtracking is quadratic on long runs of spaces.
 */
function clean(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  let start = 0;
  let end = value.length;
  while (start < end && isTrimmable(value.charCodeAt(start))) start++;
  while (end > start && isTrimmable(value.charCodeAt(end - 1))) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

function isTrimmable(code: number): boolean {
  return (
    code <= 0x20 ||
    (code >= 0x7f && code <= 0xa0) ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

function nonEmpty(value: string | undefined): string | null {
  return value === undefined || value === '' ? null : value;
}

/** A key or value quoted for a warning: control characters visible, length bounded. */
function show(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}
