/** A rules snapshot built in memory and calls through the real Exotel parameter parser: no database. */
import { collectParams, parseExotelCall, type ExotelCall } from '../../../src/exotel/params.js';
import { DEFAULT_CONNECT } from '../../../src/exotel/connect.js';
import { DEFAULT_PACING, type Member, type Strategy } from '../../../src/schemas/dial-group.js';
import type { Flow } from '../../../src/schemas/flow.js';
import type { ScheduleRules } from '../../../src/schemas/schedule.js';
import type { RulesSnapshot, StoredDialGroup } from '../../../src/routing/snapshot.js';

export { seeded } from '../../helper.js';

// 2026-01-05 is a Monday; Kolkata is UTC+05:30. AT = Monday 12:00 IST.
export const AT = new Date('2026-01-05T06:30:00Z');
export const CALLER = '+919876543210';
export const [A, B, C, D] = ['+919811100001', '+919811100002', '+919811100003', '+919811100004'] as const;

export function callOf(params: Record<string, string>): ExotelCall {
  const { params: collected, warnings } = collectParams({ query: new URLSearchParams(params).toString() });
  return parseExotelCall(collected, { defaultCountry: 'IN', warnings });
}
export const call = (extra: Record<string, string> = {}): ExotelCall =>
  callOf({ CallSid: 'b6cfaf0d5cbd4a5f8a4e9b7a1d2c3e4f', CallFrom: '09876543210', CallTo: '08047115777', ...extra });

export const member = (number: string, extra: Partial<Member> = {}): Member => ({
  number,
  name: null,
  priority: 0,
  weight: 1,
  active: true,
  schedule: null,
  ...extra,
});

export function group(slug: string, strategy: Strategy, members: Member[], extra: Partial<StoredDialGroup> = {}): StoredDialGroup {
  return {
    slug,
    name: slug,
    strategy,
    sticky: null,
    members,
    connect: { ...DEFAULT_CONNECT },
    ...DEFAULT_PACING,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...extra,
  };
}

/** Weekdays 09:00–18:00 in Kolkata: open at AT. */
export const DAY_SHIFT: ScheduleRules = {
  timezone: 'Asia/Kolkata',
  weekly: (['mon', 'tue', 'wed', 'thu', 'fri'] as const).map((day) => ({ day, open: '09:00', close: '18:00' })),
  exceptions: [],
};
/** Weekends only: closed at AT. */
export const WEEKEND_SHIFT: ScheduleRules = {
  timezone: 'Asia/Kolkata',
  weekly: (['sat', 'sun'] as const).map((day) => ({ day, open: '00:00', close: '23:59' })),
  exceptions: [],
};

const stamp = { createdAt: new Date('2026-01-01T00:00:00Z'), updatedAt: new Date('2026-01-01T00:00:00Z') };
export function dialFlow(slug: string, otherwise: Flow['otherwise'], onError: Flow['onError']): Flow {
  return { slug, name: slug, type: 'dial', mode: 'sync', rules: [], otherwise, onError, ...stamp } as Flow;
}

export function snapshotOf(groups: StoredDialGroup[], flows: Flow[] = []): RulesSnapshot {
  return {
    version: 1,
    loadedAt: AT,
    flows: new Map(flows.map((f) => [f.slug, f])),
    vipLists: new Map(),
    schedules: new Map([
      ['day', DAY_SHIFT],
      ['weekend', WEEKEND_SHIFT],
    ]),
    dialGroups: new Map(groups.map((g) => [g.slug, g])),
    availability: new Map(),
  };
}
