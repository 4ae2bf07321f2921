import { InstantSchema, NumericCursorSchema } from './common.js';
import { Type } from '@sinclair/typebox';

export const AuditQuerySchema = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    cursor: Type.Optional(NumericCursorSchema),
    entity: Type.Optional(
      Type.String({
        maxLength: 64,
        description: 'One of vip-list (a VIP list and its entries; entityId is the slug), schedule, dial-group, flow, agent, api-key',
      }),
    ),
    entityId: Type.Optional(
      Type.String({ maxLength: 200, description: "The slug; an API key's id; an agent's number, in any form (09812345678, +919812345678)" }),
    ),
  },
  { additionalProperties: false },
);

export const AuditEntrySchema = Type.Object({
  id: Type.String(),
  at: InstantSchema,
  apiKeyId: Type.Union([Type.String(), Type.Null()], { description: 'The key that made the change' }),
  action: Type.String(),
  entity: Type.String(),
  entityId: Type.String(),
  before: Type.Unknown({ description: 'The object before the change (null when created)' }),
  after: Type.Unknown({ description: 'The object after the change (null when deleted)' }),
});

export const AuditPageSchema = Type.Object({
  items: Type.Array(AuditEntrySchema),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});
