import { Type, type Static } from '@sinclair/typebox';
import { NullableInstantSchema, SlugSchema, TimestampsSchema } from './common.js';
import { NumericCursorSchema } from './audit.js';

export const VipListInputSchema = Type.Object(
  {
    slug: SlugSchema,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    description: Type.Optional(Type.Union([Type.String({ maxLength: 2000 }), Type.Null()])),
  },
  { additionalProperties: false },
);
export type VipListInput = Static<typeof VipListInputSchema>;

export const VipListPatchSchema = Type.Partial(Type.Omit(VipListInputSchema, ['slug']), { additionalProperties: false });
export type VipListPatch = Static<typeof VipListPatchSchema>;

export const VipListSchema = Type.Composite([
  Type.Object({
    slug: SlugSchema,
    name: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    entryCount: Type.Integer({ description: 'Entries in the list, expired ones included' }),
  }),
  TimestampsSchema,
]);
export type VipList = Static<typeof VipListSchema>;

const PhoneInputSchema = Type.String({
  minLength: 1,
  maxLength: 32,
  description: 'Phone number: E.164 (+919812345678), with country code (919812345678) or national (09812345678, DEFAULT_COUNTRY)',
  examples: ['09812345678'],
});

export const VipEntryInputSchema = Type.Object(
  {
    number: PhoneInputSchema,
    name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
    tier: Type.Optional(Type.Union([Type.String({ maxLength: 50 }), Type.Null()])),
    note: Type.Optional(Type.Union([Type.String({ maxLength: 2000 }), Type.Null()])),
    expiresAt: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'After this instant the entry no longer matches' })),
  },
  { additionalProperties: false },
);
export type VipEntryInput = Static<typeof VipEntryInputSchema>;

export const MAX_BULK_ENTRIES = 10_000;
export const VipEntriesBodySchema = Type.Union([
  VipEntryInputSchema,
  Type.Array(VipEntryInputSchema, { minItems: 1, maxItems: MAX_BULK_ENTRIES }),
]);

export const VipEntrySchema = Type.Composite([
  Type.Object({
    number: Type.String({ description: 'E.164' }),
    name: Type.Union([Type.String(), Type.Null()]),
    tier: Type.Union([Type.String(), Type.Null()]),
    note: Type.Union([Type.String(), Type.Null()]),
    expiresAt: NullableInstantSchema,
  }),
  TimestampsSchema,
]);
export type VipEntry = Static<typeof VipEntrySchema>;

export const BulkUpsertResultSchema = Type.Object({
  inserted: Type.Integer(),
  updated: Type.Integer(),
});

export const VipEntriesQuerySchema = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    cursor: Type.Optional(NumericCursorSchema),
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Search: part of the number (digits) or of the name' })),
  },
  { additionalProperties: false },
);

export const VipEntriesPageSchema = Type.Object({
  items: Type.Array(VipEntrySchema),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});

export const VipEntryParamsSchema = Type.Object({ slug: SlugSchema, number: PhoneInputSchema });
