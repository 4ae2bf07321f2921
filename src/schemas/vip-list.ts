import { Type, type Static } from '@sinclair/typebox';
import { NullableInstantSchema, NumericCursorSchema, PageLimitSchema, PhoneInputSchema, SlugSchema, TimestampsSchema } from './common.js';

/**
 * `string | null` as one JSON type list, not an `anyOf`. Chosen when bodies were validated with Ajv's
 * `coerceTypes`, under which an `anyOf` tried the string branch first and turned `null` into `""`;
 * bodies are now taken as sent (src/plugins/validation.ts), so either would do, and the type list
 * keeps its error naming both types (`must be string,null`).
 */
const NullableString = (opts: { maxLength: number; format?: string; description?: string }) =>
  Type.Unsafe<string | null>({ type: ['string', 'null'], ...opts });

export const VipListInputSchema = Type.Object(
  {
    slug: SlugSchema,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    description: Type.Optional(NullableString({ maxLength: 2000 })),
  },
  { additionalProperties: false },
);
export type VipListInput = Static<typeof VipListInputSchema>;
export const VIP_LIST_EXAMPLE = { slug: 'gold', name: 'Gold customers' };
export const VIP_LIST_PATCH_EXAMPLE = { description: 'Top-tier accounts' };

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

const { minLength, maxLength } = PhoneInputSchema;
/** A VIP number: the forms it may take are spelled out, since lists are often pasted from spreadsheets. */
const VipNumberSchema = Type.String({
  minLength,
  maxLength,
  description: 'Phone number: E.164 (+919812345678), with country code (919812345678) or national (09812345678, DEFAULT_COUNTRY)',
  examples: ['09812345678'],
});

export const VipEntryInputSchema = Type.Object(
  {
    number: VipNumberSchema,
    name: Type.Optional(NullableString({ maxLength: 200 })),
    tier: Type.Optional(NullableString({ maxLength: 50 })),
    note: Type.Optional(NullableString({ maxLength: 2000 })),
    expiresAt: Type.Optional(NullableString({ maxLength: 64, format: 'date-time', description: 'After this instant the entry no longer matches' })),
  },
  { additionalProperties: false },
);
export type VipEntryInput = Static<typeof VipEntryInputSchema>;

export const VIP_ENTRY_EXAMPLES = [
  { number: '09812345678', name: 'Asha', tier: 'platinum', expiresAt: '2027-03-31T23:59:59+05:30' },
  [{ number: '9812345679' }, { number: '+919812345680', note: 'escalations' }],
];

/**
 * The same entries as a CSV export (Content-Type: text/csv), for the OpenAPI document: a header row
 * naming the columns as the JSON fields, then one entry a row, an empty cell a field left out.
 */
export const VIP_ENTRIES_CSV_EXAMPLE =
  'number,name,tier,note,expiresAt\n09812345678,Asha,platinum,,2027-03-31T23:59:59+05:30\n9812345679,,,,\n+919812345680,,,escalations,\n';

export const MAX_BULK_ENTRIES = 10_000;
// The array first: when both branches fail at the top (too many items), its error is the one named.
// No minItems: an empty array is refused by the route, with what to do (mode=replace&allowEmpty=true empties a list).
export const VipEntriesBodySchema = Type.Union([Type.Array(VipEntryInputSchema, { maxItems: MAX_BULK_ENTRIES }), VipEntryInputSchema]);

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
  removed: Type.Optional(Type.Integer({ description: 'With mode=replace only: entries of the list that were not in the request, now removed' })),
});

export const VIP_WRITE_MODES = ['merge', 'replace'] as const;
export type VipWriteMode = (typeof VIP_WRITE_MODES)[number];
export const VipEntriesWriteQuerySchema = Type.Object(
  {
    mode: Type.Optional(
      Type.Union(
        VIP_WRITE_MODES.map((m) => Type.Literal(m)),
        {
          default: 'merge',
          description:
            '`merge` (the default): entries are added or updated by number, the others are left as they are. `replace`: the list afterwards holds exactly the entries sent (an array), the others are removed, in one transaction',
        },
      ),
    ),
    allowEmpty: Type.Optional(
      Type.Boolean({ description: 'With mode=replace: `true` lets an empty array (`[]`) remove every entry of the list; without it, `[]` is a 400' }),
    ),
    maxRemoved: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 2147483647,
        description:
          'With mode=replace: the most entries the request may remove (a guard against a truncated export). When it would remove more, the answer is 409 naming how many and the limit, and nothing is changed',
      }),
    ),
    dryRun: Type.Optional(
      Type.Boolean({
        description:
          '`true`: the answer is the one the write would give (its counts, or the entry) and so are its refusals (400, 404, 409), but nothing is changed and nothing audited',
      }),
    ),
  },
  { additionalProperties: false },
);

export const VipEntriesQuerySchema = Type.Object(
  {
    limit: PageLimitSchema,
    cursor: Type.Optional(NumericCursorSchema),
    q: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, description: 'Search: a whole number in any form, part of the number (digits) or part of the name' }),
    ),
  },
  { additionalProperties: false },
);

export const VipEntriesPageSchema = Type.Object({
  items: Type.Array(VipEntrySchema),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});

export const VipEntryParamsSchema = Type.Object({ slug: SlugSchema, number: VipNumberSchema });
