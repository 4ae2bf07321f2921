/**
 * Business-hours computation: is a schedule open at an instant, why, and when does that next change.
 *
 * Pure and synchronous; all timezone math goes through luxon's IANA zones.
 *
 * Semantics:
 * - All times are local wall-clock times in `rules.timezone`.
 * - A weekly window on day D opens at D `open` and, half-open, closes:
 *   - at D `close` when `close` > `open`;
 *   - at the end of D (D+1 00:00) when `close` is `24:00`;
 *   - at `close` on D+1 when `close` < `open` (spans midnight);
 *   - at the same wall-clock time on D+1 when `close` == `open` (24 hours, e.g. 00:00–00:00 = all of D).
 * - Several windows per day may overlap or touch; the open set is their union, so touching windows
 *   (09:00–13:00 and 13:00–18:00) are one span with no change at the seam.
 * - A dated exception governs its whole local calendar date: that date's weekly windows are ignored, and
 *   whatever spills into it from the previous date (a midnight-spanning weekly window or the previous date's
 *   exception) is cut off at its midnight. `closed: true` → closed all that date; special hours → open only
 *   those hours, built like a weekly window (so they may span midnight into the next date, unless that date
 *   has its own exception, which then governs it). If several exceptions name the same date the first wins.
 * - DST: a local time in a spring-forward gap moves forward as luxon does (the wall time read with the
 *   pre-transition offset: 01:30 in London on 2026-03-29 is 02:30 BST); an ambiguous fall-back time takes
 *   the earlier instant. Windows are therefore shorter/longer in real time on DST days, and a window lying
 *   wholly inside a gap may be empty (then it is ignored).
 * - The result depends only on the instant of `at`, not on the offset it was written with.
 * - `reason` names what decided: the window or exception containing `at` (earliest-starting one if several
 *   do), or why it is closed (`exception <date>: closed`, `exception <date>: outside special hours …`,
 *   `outside weekly windows`, `no weekly windows`).
 * - `nextChangeAt` is the first instant strictly after `at` where open flips, as ISO 8601 in the schedule's
 *   zone with its offset and no milliseconds, or null when nothing flips within 366 days (366 × 24 h) of `at`
 *   (or the flip is after the year 9999, which ISO 8601's four-digit year cannot write).
 * - An override (`rules.override`) decides alone from when it is set (`setAt`, inclusive) until its `until`
 *   (exclusive; none: until it is deleted); the reason is then `override: <reason> until <until>`. Before
 *   `setAt` and after `until` the weekly windows and exceptions decide; seen from before `setAt`, the
 *   override's start is the next change when it flips the state and nothing flips before it. An override
 *   changed while in force without flipping (e.g. a later `until`) keeps its `setAt` (src/store/schedules.ts).
 */
import { DateTime, IANAZone } from 'luxon';
import type { ScheduleException, ScheduleOverride, ScheduleRules, ScheduleStatus } from '../schemas/schedule.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** nextChangeAt is null when the next flip is later than this after `at`. */
const HORIZON_MS = 366 * DAY_MS;
/** Safety bound on the forward scan (the horizon needs ~368 dates). */
const MAX_SCAN_DATES = 400;
/** Indexed by `Date#getUTCDay()`. */
const WEEKDAY_BY_JS_DAY = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

/** A local calendar date (no zone attached). */
interface LocalDate {
  readonly y: number;
  readonly m: number;
  readonly d: number;
  /** `YYYY-MM-DD` */
  readonly iso: string;
  /** `mon`…`sun` */
  readonly weekday: string;
}

/** An open interval [start, end) in epoch ms, with the text that explains it. */
interface Interval {
  readonly start: number;
  readonly end: number;
  readonly reason: string;
}

interface WindowSpec {
  readonly open: string;
  readonly close: string;
  readonly reason: string;
}

/** Date.UTC, but for the years 0–99 too (Date.UTC reads them as 1900–1999). */
function utc(y: number, month0: number, d: number, h = 0, min = 0): Date {
  const js = new Date(Date.UTC(2000, 0, 1, h, min));
  js.setUTCFullYear(y, month0, d);
  return js;
}

/** Calendar arithmetic only (a Date in UTC is used as a proleptic calendar, not for any offset). */
function localDate(y: number, m: number, d: number): LocalDate {
  const js = utc(y, m - 1, d);
  const yy = js.getUTCFullYear();
  const mm = js.getUTCMonth() + 1;
  const dd = js.getUTCDate();
  const iso = `${String(yy).padStart(4, '0')}-${String(mm).padStart(2, '0')}-${String(dd).padStart(2, '0')}`;
  return { y: yy, m: mm, d: dd, iso, weekday: WEEKDAY_BY_JS_DAY[js.getUTCDay()] ?? 'sun' };
}

function addDays(date: LocalDate, n: number): LocalDate {
  return localDate(date.y, date.m, date.d + n);
}

function parseTime(hhmm: string): { h: number; min: number } {
  const match = /^(\d{2}):(\d{2})$/.exec(hhmm);
  const h = Number(match?.[1]);
  const min = Number(match?.[2]);
  if (!match || h > 24 || min > 59 || (h === 24 && min !== 0)) {
    throw new RangeError(`invalid time of day: ${JSON.stringify(hhmm)}`);
  }
  return { h, min };
}

function isClosedException(ex: ScheduleException): ex is Extract<ScheduleException, { closed: true }> {
  return ex.closed === true;
}

/** Everything derived from the rules once per call. */
class Calendar {
  readonly zone: IANAZone;
  private readonly weeklyByDay = new Map<string, WindowSpec[]>();
  private readonly startCache = new Map<string, number>();

  constructor(
    readonly rules: ScheduleRules,
    private readonly exceptions: ReadonlyMap<string, ScheduleException>,
  ) {
    const zone = IANAZone.create(rules.timezone);
    if (!zone.isValid) throw new RangeError(`invalid timezone: ${JSON.stringify(rules.timezone)}`);
    this.zone = zone;
    for (const w of rules.weekly) {
      const list = this.weeklyByDay.get(w.day) ?? [];
      list.push({ open: w.open, close: w.close, reason: `weekly window ${w.day} ${w.open}-${w.close}` });
      this.weeklyByDay.set(w.day, list);
    }
  }

  exception(date: LocalDate): ScheduleException | undefined {
    return this.exceptions.get(date.iso);
  }

  /** Local date of an instant in the schedule's zone. */
  dateOf(ms: number): LocalDate {
    const dt = DateTime.fromMillis(ms, { zone: this.zone });
    return localDate(dt.year, dt.month, dt.day);
  }

  /**
   * Instant of a local wall-clock time. Gap times move forward as luxon does; ambiguous times take the
   * earlier instant (luxon alone would give the later one).
   */
  instant(date: LocalDate, h: number, min: number): number {
    const dt = DateTime.fromObject({ year: date.y, month: date.m, day: date.d, hour: h, minute: min }, { zone: this.zone });
    if (!dt.isValid) throw new RangeError(`cannot place ${date.iso} ${h}:${min} in ${this.rules.timezone}`);
    let t = dt.toMillis();
    const wall = utc(date.y, date.m - 1, date.d, h, min).getTime();
    // An earlier reading of the same wall time uses an offset in force shortly before t.
    for (const probe of [t - 3 * HOUR_MS, t - DAY_MS]) {
      const offset = this.zone.offset(probe);
      const candidate = wall - offset * MINUTE_MS;
      if (candidate < t && this.zone.offset(candidate) === offset) t = candidate;
    }
    return t;
  }

  /** Instant the local date begins (its 00:00, moved as above). */
  startOf(date: LocalDate): number {
    let t = this.startCache.get(date.iso);
    if (t === undefined) {
      t = this.instant(date, 0, 0);
      this.startCache.set(date.iso, t);
    }
    return t;
  }

  /**
   * Open intervals originating on `date`, sorted by start: the exception's hours if the date has an
   * exception, else its weekly windows; cut at the next midnight if the next date has an exception.
   */
  intervalsOn(date: LocalDate): Interval[] {
    const ex = this.exception(date);
    let windows: readonly WindowSpec[];
    if (ex === undefined) {
      windows = this.weeklyByDay.get(date.weekday) ?? [];
    } else if (isClosedException(ex)) {
      windows = [];
    } else {
      windows = [{ open: ex.open, close: ex.close, reason: `exception ${ex.date}: special hours ${ex.open}-${ex.close}` }];
    }
    if (windows.length === 0) return [];

    const next = addDays(date, 1);
    const cutAtMidnight = this.exception(next) !== undefined;
    const out: Interval[] = [];
    for (const w of windows) {
      const open = parseTime(w.open);
      if (open.h === 24) throw new RangeError(`invalid opening time: ${JSON.stringify(w.open)}`);
      const start = this.instant(date, open.h, open.min);
      let end: number;
      if (w.close === '24:00') {
        end = this.startOf(next);
      } else {
        const close = parseTime(w.close);
        end = w.close > w.open ? this.instant(date, close.h, close.min) : this.instant(next, close.h, close.min);
      }
      if (cutAtMidnight) end = Math.min(end, this.startOf(next));
      if (end > start) out.push({ start, end, reason: w.reason });
    }
    return out.sort((a, b) => a.start - b.start);
  }

  /** The interval that explains why `at` is open (earliest start wins), from dates D-1 and D. */
  containing(at: number, day: LocalDate): Interval | undefined {
    let best: Interval | undefined;
    for (const date of [addDays(day, -1), day]) {
      for (const iv of this.intervalsOn(date)) {
        if (iv.start <= at && at < iv.end && (best === undefined || iv.start < best.start)) best = iv;
      }
    }
    return best;
  }
}

function toMillis(at: Date): number {
  const ms = at instanceof Date ? at.getTime() : Number.NaN;
  if (!Number.isFinite(ms)) throw new RangeError('invalid date');
  return ms;
}

function allExceptions(rules: ScheduleRules): Map<string, ScheduleException> {
  const map = new Map<string, ScheduleException>();
  for (const ex of rules.exceptions) if (!map.has(ex.date)) map.set(ex.date, ex);
  return map;
}

function closedReason(cal: Calendar, day: LocalDate): string {
  const ex = cal.exception(day);
  if (ex === undefined) return cal.rules.weekly.length === 0 ? 'no weekly windows' : 'outside weekly windows';
  if (isClosedException(ex)) return `exception ${ex.date}: closed`;
  return `exception ${ex.date}: outside special hours ${ex.open}-${ex.close}`;
}

/** Merge sorted-or-not intervals into disjoint, sorted [start, end) pairs; touching ones join. */
function merge(spans: Array<[number, number]>): Array<[number, number]> {
  spans.sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [s, e] of spans) {
    const last = out[out.length - 1];
    if (last !== undefined && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

/**
 * The first instant strictly after `at` where open flips, or null if none within the horizon. Walks dates
 * forward from D-1, keeping the merged open spans that end after `at`; a candidate is final once it lies
 * before the start of the next unprocessed date (later dates' intervals all start at or after it).
 */
function nextChange(cal: Calendar, at: number, day: LocalDate): number | null {
  const limit = at + HORIZON_MS;
  let spans: Array<[number, number]> = [];
  let date = addDays(day, -1);
  for (let i = 0; i < MAX_SCAN_DATES; i++) {
    const fresh = cal.intervalsOn(date).filter((iv) => iv.end > at);
    if (fresh.length > 0) spans = merge([...spans, ...fresh.map((iv): [number, number] => [iv.start, iv.end])]);
    const next = addDays(date, 1);
    if (i >= 1) {
      const boundary = cal.startOf(next);
      const first = spans[0];
      const candidate = first === undefined ? undefined : first[0] <= at ? first[1] : first[0];
      if (candidate !== undefined && candidate < boundary) return candidate <= limit ? candidate : null;
      if (boundary > limit) return null;
    }
    date = next;
  }
  return null;
}

const instantMs = (value: Date | string) => (value instanceof Date ? value.getTime() : Date.parse(value));

/** The override in force at `ms`, if any: from when it was set, until its `until`. */
export function overrideAt(rules: Pick<ScheduleRules, 'override'>, ms: number): ScheduleOverride | null {
  const o = rules.override;
  if (!o || ms < instantMs(o.setAt)) return null;
  return o.until === null || ms < instantMs(o.until) ? o : null;
}

/** `change` if it lies within the horizon of `at` (nextChangeAt's null: nothing flips within 366 days). */
const withinHorizon = (change: number | null, at: number) => (change !== null && change <= at + HORIZON_MS ? change : null);

const isoIn = (ms: number, zone: string) => DateTime.fromMillis(ms, { zone }).toISO({ suppressMilliseconds: true });

/**
 * nextChangeAt as ISO 8601 in the schedule's zone; null for a change after the year 9999 there, which
 * RFC 3339 (the answer's date-time) cannot write (luxon would write +010000-…).
 */
const changeIso = (change: number | null, zone: string) => {
  const iso = change === null ? null : isoIn(change, zone);
  return iso !== null && /^\d{4}-/.test(iso) ? iso : null;
};

/** `override: <reason> until <until>` when an override decides at `at`, else null (for traces). */
export function overrideReason(rules: ScheduleRules, at: Date): string | null {
  const o = overrideAt(rules, toMillis(at));
  if (!o) return null;
  return `override: ${o.reason} until ${o.until === null ? 'it is deleted' : isoIn(instantMs(o.until), rules.timezone)}`;
}

/** Whether the schedule is open at `at`, why, and when that next changes. */
export function scheduleStatus(rules: ScheduleRules, at: Date): ScheduleStatus {
  const ms = toMillis(at);
  const override = overrideAt(rules, ms);
  if (override) {
    const reason = overrideReason(rules, at)!;
    if (override.until === null) return { open: override.open, reason, nextChangeAt: null };
    // From `until` on, the windows and exceptions decide: a flip then, or at their next change; null
    // past the horizon, as without an override (`after` looks a horizon ahead of `until`, not of `at`).
    const untilMs = instantMs(override.until);
    const after = scheduleStatus({ ...rules, override: null }, new Date(untilMs));
    const change = withinHorizon(after.open !== override.open ? untilMs : after.nextChangeAt === null ? null : Date.parse(after.nextChangeAt), ms);
    return { open: override.open, reason, nextChangeAt: changeIso(change, rules.timezone) };
  }
  const cal = new Calendar(rules, allExceptions(rules));
  const day = cal.dateOf(ms);
  const hit = cal.containing(ms, day);
  let change = nextChange(cal, ms, day);
  const open = hit !== undefined;
  const setMs = rules.override ? instantMs(rules.override.setAt) : null;
  if (setMs !== null && setMs > ms && (change === null || change >= setMs)) {
    // An override set after `at` (a look into the past): the windows decide until it was set, then it does.
    const then = scheduleStatus(rules, new Date(setMs));
    change = withinHorizon(then.open !== open ? setMs : then.nextChangeAt === null ? null : Date.parse(then.nextChangeAt), ms);
  }
  return {
    open,
    reason: open ? hit.reason : closedReason(cal, day),
    nextChangeAt: changeIso(change, rules.timezone),
  };
}

/**
 * Open intervals of a schedule over a stretch of dates, kept per rules object. Every callback that
 * checks business hours asks about (nearly) the same instant, so the zone arithmetic (luxon, Intl)
 * runs once per schedule and stretch, not once per callback. Rules objects in the snapshot are
 * never modified (a change loads a new snapshot), so a WeakMap keyed by them stays correct.
 */
interface OpenStretch {
  /** Instants in [from, to) are answered from `intervals`. */
  readonly from: number;
  readonly to: number;
  readonly intervals: readonly Interval[];
  /** Where each local date of the stretch starts, and why an instant in it outside `intervals` is closed. */
  readonly dates: ReadonlyArray<{ readonly start: number; readonly closedReason: string }>;
  readonly zone: IANAZone;
  /**
   * The local time of the minute last asked about (localTimeAt): its UTC offset comes from luxon,
   * which asks Intl on every call, and was 5 % of a passthru callback's CPU (bench/HISTORY.md).
   */
  readonly clock: { minute: number; localTime: string };
}
const stretches = new WeakMap<ScheduleRules, OpenStretch>();
/** Dates covered by one stretch, starting with the date of the instant asked about. */
const STRETCH_DATES = 7;

/**
 * The intervals originating on dates D-1 … D+STRETCH_DATES. An instant whose local date is in
 * D … D+STRETCH_DATES-1 can only lie in intervals from its own date or the one before (an interval
 * ends by the next day; none starts before its own date), so the union is exact for those instants.
 */
function openStretch(rules: ScheduleRules, ms: number): OpenStretch {
  const cal = new Calendar(rules, allExceptions(rules));
  const day = cal.dateOf(ms);
  const intervals: Interval[] = [];
  for (let i = -1; i <= STRETCH_DATES; i++) intervals.push(...cal.intervalsOn(addDays(day, i)));
  const dates = Array.from({ length: STRETCH_DATES }, (_, i) => {
    const date = addDays(day, i);
    return { start: cal.startOf(date), closedReason: closedReason(cal, date) };
  });
  return {
    from: cal.startOf(day),
    to: cal.startOf(addDays(day, STRETCH_DATES)),
    intervals,
    dates,
    zone: cal.zone,
    clock: { minute: Number.NaN, localTime: '' },
  };
}

/**
 * The instant as a person at the schedule reads a clock (`fri 2026-12-25 11:00 Asia/Kolkata`),
 * worked out once per minute: it shows minutes, and UTC offsets change on whole minutes.
 */
function localTimeAt(stretch: OpenStretch, timezone: string, ms: number): string {
  const minute = Math.floor(ms / MINUTE_MS);
  if (stretch.clock.minute !== minute) {
    const local = new Date(ms + stretch.zone.offset(ms) * MINUTE_MS);
    const iso = local.toISOString();
    stretch.clock.minute = minute;
    stretch.clock.localTime = `${WEEKDAY_BY_JS_DAY[local.getUTCDay()]} ${iso.slice(0, 10)} ${iso.slice(11, 16)} ${timezone}`;
  }
  return stretch.clock.localTime;
}

function stretchAt(rules: ScheduleRules, ms: number): OpenStretch {
  let stretch = stretches.get(rules);
  if (stretch === undefined || ms < stretch.from || ms >= stretch.to) {
    stretch = openStretch(rules, ms);
    stretches.set(rules, stretch);
  }
  return stretch;
}

/** Same answer as `scheduleStatus(rules, at).open`. */
export function isOpen(rules: ScheduleRules, at: Date): boolean {
  const ms = toMillis(at);
  const override = overrideAt(rules, ms);
  if (override) return override.open;
  for (const iv of stretchAt(rules, ms).intervals) if (iv.start <= ms && ms < iv.end) return true;
  return false;
}

/**
 * Same `open` and `reason` as `scheduleStatus`, without the search for the next change, and the
 * instant as a person at the schedule reads a clock (`fri 2026-12-25 11:00 Asia/Kolkata`): what a
 * callback's trace shows.
 */
export function openAt(rules: ScheduleRules, at: Date): { open: boolean; reason: string; localTime: string } {
  const ms = toMillis(at);
  const stretch = stretchAt(rules, ms);
  const localTime = localTimeAt(stretch, rules.timezone, ms);
  const override = overrideAt(rules, ms);
  if (override) return { open: override.open, reason: overrideReason(rules, at)!, localTime };
  for (const iv of stretch.intervals) if (iv.start <= ms && ms < iv.end) return { open: true, reason: iv.reason, localTime };
  let reason = stretch.dates[0]!.closedReason;
  for (const date of stretch.dates) if (date.start <= ms) reason = date.closedReason;
  return { open: false, reason, localTime };
}
