import { InstantSchema, NumericCursorSchema, PageLimitSchema } from './common.js';
import { Type } from '@sinclair/typebox';

/** The `entity` each store records its changes under (src/store/*.ts). */
export const AUDIT_ENTITIES = ['vip-list', 'schedule', 'dial-group', 'flow', 'agent', 'api-key'] as const;

export const AuditQuerySchema = Type.Object(
  {
    limit: PageLimitSchema,
    cursor: Type.Optional(NumericCursorSchema),
    // A misspelt entity (`vip-lists`, `dial_group`) would match nothing: an empty trail, as if nobody had changed anything.
    entity: Type.Optional(
      Type.Union(
        AUDIT_ENTITIES.map((e) => Type.Literal(e)),
        { description: 'One of vip-list (a VIP list and its entries; entityId is the slug), schedule, dial-group, flow, agent, api-key' },
      ),
    ),
    entityId: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, description: "The slug; an API key's id; an agent's number, in any form (09812345678, +919812345678)" }),
    ),
    apiKeyId: Type.Optional(Type.String({ format: 'uuid', description: "The key that made the changes (an API key's id, as in `GET /admin/api-keys`)" })),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Made at or after this instant (ISO 8601 with offset)' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Made before this instant (ISO 8601 with offset)' })),
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
  after: Type.Unknown({
    description:
      'The object after the change (null when deleted). An agent set available also says what that ended, under `ended`: `paused`, `wrapUpUntil`, `onCall`',
  }),
});

export const AuditPageSchema = Type.Object({
  items: Type.Array(AuditEntrySchema),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});
