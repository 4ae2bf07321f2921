import { Type, type Static } from '@sinclair/typebox';
import { InstantSchema, NumericCursorSchema, PageLimitSchema } from './common.js';

/** One source address's refused callbacks in one minute (src/store/refusals.ts). */
export const RefusalSummarySchema = Type.Object({
  id: Type.String({ description: 'Row id; pass as `cursor` to page on' }),
  minute: InstantSchema,
  address: Type.String({
    description: 'Source address (an IPv6 address by its /64 prefix), or `other`: the addresses beyond the first 500 of the minute, together',
  }),
  refusals: Type.Integer({ description: 'Callbacks refused from this address in this minute, all counted' }),
  wrongSecret: Type.Integer({ description: 'Of those: callback secret missing or wrong (401)' }),
  outsideAllowedCidrs: Type.Integer({ description: 'Of those: source address not in EXOTEL_ALLOWED_CIDRS (403)' }),
  storedAsCdrs: Type.Integer({ description: 'Of those: stored as full CDRs (outcome `rejected`), the first ones of the minute' }),
  throttled: Type.Integer({ description: 'Of those: answered 429 with Retry-After instead' }),
  firstAt: InstantSchema,
  lastAt: InstantSchema,
});
export type RefusalSummary = Static<typeof RefusalSummarySchema>;

export const RefusalListQuerySchema = Type.Object(
  {
    address: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: '^[0-9A-Fa-f.:/]+$|^other$',
        description: 'Only this source address, as listed (`other`, or e.g. 2001:db8:1:2::/64)',
      }),
    ),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Minutes at or after the minute of this instant (ISO 8601 with offset)' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Minutes starting before this instant (ISO 8601 with offset)' })),
    limit: PageLimitSchema,
    cursor: Type.Optional(NumericCursorSchema),
  },
  { additionalProperties: false },
);
export type RefusalListQuery = Static<typeof RefusalListQuerySchema>;

export const RefusalPageSchema = Type.Object({
  items: Type.Array(RefusalSummarySchema),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next (older) page; null on the last' }),
});
