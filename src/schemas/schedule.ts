import { Type, type Static } from '@sinclair/typebox';
import { InstantSchema, NullableInstantSchema, SlugSchema, TimestampsSchema } from './common.js';

export const WeekdaySchema = Type.Union(
  ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => Type.Literal(d)),
  { description: 'Day of the week, lowercase three letters' },
);
export type Weekday = Static<typeof WeekdaySchema>;

/** `HH:MM`, 00:00–23:59. */
export const TimeOfDaySchema = Type.String({
  pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$',
  description: 'Local time of day, HH:MM (24-hour)',
  examples: ['09:00'],
});
/** A closing time may also be `24:00`, the end of the day. */
export const ClosingTimeSchema = Type.String({
  pattern: '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$',
  description:
    'Local time of day, HH:MM (24-hour); 24:00 is the end of the day. Earlier than `open` spans midnight; equal to `open` is 24 hours from `open` (00:00–00:00: the whole day).',
  examples: ['18:00'],
});

export const WeeklyWindowSchema = Type.Object({ day: WeekdaySchema, open: TimeOfDaySchema, close: ClosingTimeSchema }, { additionalProperties: false });
export type WeeklyWindow = Static<typeof WeeklyWindowSchema>;

export const ClosedExceptionSchema = Type.Object(
  { date: Type.String({ format: 'date' }), closed: Type.Literal(true), note: Type.Optional(Type.String({ maxLength: 200 })) },
  { additionalProperties: false },
);
export const SpecialHoursExceptionSchema = Type.Object(
  {
    date: Type.String({ format: 'date' }),
    closed: Type.Optional(Type.Literal(false)),
    open: TimeOfDaySchema,
    close: ClosingTimeSchema,
    note: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
export const ScheduleExceptionSchema = Type.Union([ClosedExceptionSchema, SpecialHoursExceptionSchema]);
export type ScheduleException = Static<typeof ScheduleExceptionSchema>;

export const TimezoneSchema = Type.String({
  format: 'iana-timezone',
  description: 'IANA timezone name',
  default: 'Asia/Kolkata',
  examples: ['Asia/Kolkata', 'Europe/London'],
});

/** An override as set: open or closed, why, and until when (null: until deleted). */
export const ScheduleOverrideSchema = Type.Object({
  open: Type.Boolean(),
  reason: Type.String(),
  until: NullableInstantSchema,
  setAt: InstantSchema,
});
export type ScheduleOverride = Static<typeof ScheduleOverrideSchema>;

export const ScheduleOverrideInputSchema = Type.Object(
  {
    open: Type.Boolean({ description: 'false: closed (e.g. an emergency), true: open, whatever the windows and exceptions say' }),
    reason: Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: 'Shown in status, flow decisions and their traces' }),
    until: Type.Optional(
      Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
        description: 'ISO 8601 instant in the future, at the latest 9999-12-31T23:59:59Z; absent or null: until the override is deleted',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ScheduleOverrideInput = Static<typeof ScheduleOverrideInputSchema>;

/** What the open/closed computation needs: the schedule's rules, nothing else. */
export const ScheduleRulesSchema = Type.Object({
  timezone: TimezoneSchema,
  weekly: Type.Array(WeeklyWindowSchema, { maxItems: 100, default: [] }),
  exceptions: Type.Array(ScheduleExceptionSchema, { maxItems: 1000, default: [] }),
  override: Type.Optional(Type.Union([ScheduleOverrideSchema, Type.Null()])),
});
export type ScheduleRules = Static<typeof ScheduleRulesSchema>;

export const ScheduleInputSchema = Type.Object(
  {
    slug: SlugSchema,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    timezone: Type.Optional(TimezoneSchema),
    weekly: Type.Optional(ScheduleRulesSchema.properties.weekly),
    exceptions: Type.Optional(ScheduleRulesSchema.properties.exceptions),
  },
  { additionalProperties: false },
);
export type ScheduleInput = Static<typeof ScheduleInputSchema>;
const weekdays = (open: string, close: string) => (['mon', 'tue', 'wed', 'thu', 'fri'] as const).map((day) => ({ day, open, close }));
export const SCHEDULE_EXAMPLE = {
  slug: 'support',
  name: 'Support desk',
  timezone: 'Asia/Kolkata',
  weekly: [...weekdays('09:00', '18:00'), { day: 'sat', open: '22:00', close: '06:00' }],
  exceptions: [{ date: '2026-12-25', closed: true }],
};
export const SCHEDULE_PATCH_EXAMPLE = {
  exceptions: [
    { date: '2026-12-25', closed: true },
    { date: '2026-12-31', open: '09:00', close: '13:00' },
  ],
};

/**
 * Same fields as the input, without `default`s: Ajv (`useDefaults`) would otherwise fill every field left
 * out of a PATCH, and the merge would reset timezone, weekly and exceptions.
 */
export const SchedulePatchSchema = Type.Object(
  {
    name: Type.Optional(ScheduleInputSchema.properties.name),
    timezone: Type.Optional(Type.String({ format: 'iana-timezone', description: 'IANA timezone name', examples: ['Asia/Kolkata'] })),
    weekly: Type.Optional(Type.Array(WeeklyWindowSchema, { maxItems: 100 })),
    exceptions: Type.Optional(Type.Array(ScheduleExceptionSchema, { maxItems: 1000 })),
  },
  { additionalProperties: false },
);
export type SchedulePatch = Static<typeof SchedulePatchSchema>;

export const ScheduleSchema = Type.Composite([
  Type.Object({
    slug: SlugSchema,
    name: Type.String(),
    timezone: Type.String({ description: 'IANA timezone name' }),
    weekly: Type.Array(WeeklyWindowSchema),
    exceptions: Type.Array(ScheduleExceptionSchema),
    override: Type.Union([ScheduleOverrideSchema, Type.Null()], {
      description: 'Set with PUT /admin/schedules/{slug}/override; null when none is in force (one whose `until` has passed is over)',
    }),
  }),
  TimestampsSchema,
]);
export type Schedule = Static<typeof ScheduleSchema>;

export const ScheduleStatusSchema = Type.Object({
  open: Type.Boolean(),
  reason: Type.String({ description: 'Why: the window, exception or gap that decides' }),
  nextChangeAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'When open/closed next flips (ISO 8601 with the schedule’s offset); null if never within a year (or only after the year 9999)',
  }),
});
export type ScheduleStatus = Static<typeof ScheduleStatusSchema>;

export const ScheduleReplaceSchema = Type.Omit(ScheduleInputSchema, ['slug'], { additionalProperties: false });

export const ScheduleStatusQuerySchema = Type.Object(
  { at: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601 instant with any offset; default now' })) },
  { additionalProperties: false },
);
