import { Type, type Static } from '@sinclair/typebox';
import { PhoneInputSchema, SlugSchema, TimestampsSchema } from './common.js';
import { CONNECT_LIMITS as MAX, DEFAULT_CONNECT as DEFAULT } from '../exotel/connect.js';

export const StrategySchema = Type.Union(
  [
    Type.Literal('sequential'),
    Type.Literal('round_robin'),
    Type.Literal('random'),
    Type.Literal('weighted'),
    Type.Literal('least_recent'),
    Type.Literal('parallel'),
  ],
  { description: 'Order in which members are offered (docs/contract.md §3)' },
);
export type Strategy = Static<typeof StrategySchema>;

const E164Schema = Type.String({ pattern: '^\\+[1-9][0-9]{6,14}$', description: 'E.164 number, e.g. +918047115777' });
const UrlSchema = Type.String({ format: 'uri', pattern: '^https?://', maxLength: 2000 });

export const MemberInputSchema = Type.Object(
  {
    number: PhoneInputSchema,
    name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, default: 0, description: 'sequential: lower rings first' })),
    weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 1, description: 'weighted: share of first offers' })),
    active: Type.Optional(Type.Boolean({ default: true })),
    schedule: Type.Optional(Type.Union([SlugSchema, Type.Null()], { description: 'Shift: the member is offered only while this schedule is open' })),
  },
  { additionalProperties: false },
);
export type MemberInput = Static<typeof MemberInputSchema>;

export const MemberSchema = Type.Object({
  number: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  priority: Type.Integer(),
  weight: Type.Integer(),
  active: Type.Boolean(),
  schedule: Type.Union([Type.String(), Type.Null()]),
});
export type Member = Static<typeof MemberSchema>;

export const MemberPatchSchema = Type.Object(
  {
    name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
    weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    active: Type.Optional(Type.Boolean()),
    schedule: Type.Optional(Type.Union([SlugSchema, Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type MemberPatch = Static<typeof MemberPatchSchema>;

export const StickySchema = Type.Object(
  {
    enabled: Type.Boolean(),
    // No `default` here: inside `sticky`'s union Ajv (strict) refuses it; the store fills in 30.
    lookbackDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 365, description: 'days; default 30' })),
  },
  { additionalProperties: false, description: "A caller's last connected agent (within lookbackDays) is offered first" },
);
export type Sticky = Static<typeof StickySchema>;

/** Connect-applet call settings, validated against Exotel's limits; defaults and limits from src/exotel/connect.ts. */
export const ConnectSettingsSchema = Type.Object(
  {
    record: Type.Optional(Type.Boolean({ default: DEFAULT.record })),
    recordingChannels: Type.Optional(Type.Union([Type.Literal('single'), Type.Literal('dual')], { default: DEFAULT.recordingChannels })),
    maxRingingDuration: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX.maxRingingDuration,
        default: DEFAULT.maxRingingDuration,
        description: `seconds, at most ${MAX.maxRingingDuration}`,
      }),
    ),
    maxConversationDuration: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX.maxConversationDuration,
        default: DEFAULT.maxConversationDuration,
        description: `seconds, at most ${MAX.maxConversationDuration} (${MAX.maxConversationDuration / 60} minutes)`,
      }),
    ),
    musicOnHold: Type.Optional(
      // Written so the 400 names the real mistake (src/plugins/validation.ts reports the first of the
      // deepest errors, a wrong value before a wrong shape): custom_tone comes first, so one without a
      // value is "musicOnHold/value: is required"; its `type` is an enum (a wrong value, where a
      // literal's `const` counts as shape), so an unknown type is "musicOnHold/type: …allowed values".
      Type.Union(
        [
          Type.Object({ type: Type.Unsafe<'custom_tone'>({ type: 'string', enum: ['custom_tone'] }), value: UrlSchema }, { additionalProperties: false }),
          Type.Object({ type: Type.Union([Type.Literal('default_tone'), Type.Literal('operator_tone')]) }, { additionalProperties: false }),
        ],
        { description: 'default_tone, operator_tone, or custom_tone with an audio URL' },
      ),
    ),
    outgoingPhoneNumber: Type.Optional(
      Type.Union([E164Schema, Type.Null()], { description: 'ExoPhone to dial out from (E.164); null = the incoming ExoPhone' }),
    ),
    fetchAfterAttempt: Type.Optional(Type.Boolean({ default: DEFAULT.fetchAfterAttempt, description: 'Exotel asks again after each unanswered attempt' })),
    maxParallelAttempts: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX.maxParallelAttempts,
        default: DEFAULT.maxParallelAttempts,
        description: `parallel strategy: 1–${MAX.maxParallelAttempts}`,
      }),
    ),
    startCallPlayback: Type.Optional(
      Type.Union([
        Type.Object(
          {
            playbackTo: Type.Union([Type.Literal('both'), Type.Literal('callee')]),
            type: Type.Union([Type.Literal('text'), Type.Literal('audio_url')]),
            value: Type.String({ minLength: 1, maxLength: 2000 }),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ]),
    ),
  },
  { additionalProperties: false },
);
export type ConnectSettings = Static<typeof ConnectSettingsSchema>;
/** Connect settings as stored and answered: every one present. */
export type Connect = Required<ConnectSettings>;

/** How agents are spared after a call and after offers they did not answer (issue 26); no `default`s, for PATCH. */
const AgentPacing = {
  wrapUpSeconds: Type.Integer({ minimum: 0, maximum: 3600, description: "seconds after an agent's call ends before they are offered again; default 0" }),
  maxMissedOffers: Type.Integer({ minimum: 0, maximum: 100, description: 'consecutive unanswered offers that pause an agent; 0 (default): never' }),
  missedPauseSeconds: Type.Integer({ minimum: 1, maximum: 86400, description: 'how long such a pause lasts (or until set available); default 300' }),
};
export const DEFAULT_PACING = { wrapUpSeconds: 0, maxMissedOffers: 0, missedPauseSeconds: 300 } as const;

const GroupFields = {
  name: Type.String({ minLength: 1, maxLength: 200 }),
  strategy: StrategySchema,
  sticky: Type.Optional(Type.Union([StickySchema, Type.Null()])),
  members: Type.Array(MemberInputSchema, { maxItems: 500 }),
  connect: Type.Optional(ConnectSettingsSchema),
  wrapUpSeconds: Type.Optional({ ...AgentPacing.wrapUpSeconds, default: DEFAULT_PACING.wrapUpSeconds }),
  maxMissedOffers: Type.Optional({ ...AgentPacing.maxMissedOffers, default: DEFAULT_PACING.maxMissedOffers }),
  missedPauseSeconds: Type.Optional({ ...AgentPacing.missedPauseSeconds, default: DEFAULT_PACING.missedPauseSeconds }),
};
export const DialGroupInputSchema = Type.Object({ slug: SlugSchema, ...GroupFields }, { additionalProperties: false });
export type DialGroupInput = Static<typeof DialGroupInputSchema>;
export const DIAL_GROUP_EXAMPLE = {
  slug: 'sales',
  name: 'Sales',
  strategy: 'round_robin',
  sticky: { enabled: true, lookbackDays: 30 },
  members: [
    { number: '09812345678', name: 'Asha', priority: 1 },
    { number: '09812345679', name: 'Ravi', priority: 2 },
    { number: '+919812345680', name: 'Meera', priority: 3, weight: 2 },
  ],
  connect: {
    record: true,
    recordingChannels: 'dual',
    maxRingingDuration: 30,
    maxConversationDuration: 900,
    musicOnHold: { type: 'default_tone' },
    fetchAfterAttempt: true,
  },
};
export const DIAL_GROUP_PATCH_EXAMPLE = { strategy: 'least_recent' };
export const MEMBER_PATCH_EXAMPLE = { active: false };
export const DialGroupReplaceSchema = Type.Object(GroupFields, { additionalProperties: false });
export type DialGroupReplace = Static<typeof DialGroupReplaceSchema>;
/** PATCH: fields given replace the stored ones (members: the whole list); no defaults filled in. */
export const DialGroupPatchSchema = Type.Object(
  {
    name: Type.Optional(GroupFields.name),
    strategy: Type.Optional(StrategySchema),
    sticky: Type.Optional(Type.Union([StickySchema, Type.Null()])),
    members: Type.Optional(GroupFields.members),
    connect: Type.Optional(ConnectSettingsSchema),
    wrapUpSeconds: Type.Optional(AgentPacing.wrapUpSeconds),
    maxMissedOffers: Type.Optional(AgentPacing.maxMissedOffers),
    missedPauseSeconds: Type.Optional(AgentPacing.missedPauseSeconds),
  },
  { additionalProperties: false },
);
export type DialGroupPatch = Static<typeof DialGroupPatchSchema>;

export const DialGroupSchema = Type.Composite([
  Type.Object({
    slug: SlugSchema,
    name: Type.String(),
    strategy: StrategySchema,
    sticky: Type.Union([Type.Object({ enabled: Type.Boolean(), lookbackDays: Type.Integer() }), Type.Null()]),
    members: Type.Array(MemberSchema),
    wrapUpSeconds: Type.Integer(),
    maxMissedOffers: Type.Integer(),
    missedPauseSeconds: Type.Integer(),
    connect: Type.Object({
      record: Type.Boolean(),
      recordingChannels: Type.String(),
      maxRingingDuration: Type.Integer(),
      maxConversationDuration: Type.Integer(),
      musicOnHold: Type.Object({ type: Type.String(), value: Type.Optional(Type.String()) }),
      outgoingPhoneNumber: Type.Union([Type.String(), Type.Null()]),
      fetchAfterAttempt: Type.Boolean(),
      maxParallelAttempts: Type.Integer(),
      startCallPlayback: Type.Union([Type.Object({ playbackTo: Type.String(), type: Type.String(), value: Type.String() }), Type.Null()]),
    }),
  }),
  TimestampsSchema,
]);
export type DialGroup = Static<typeof DialGroupSchema>;

export const MemberParamsSchema = Type.Object({ slug: SlugSchema, number: PhoneInputSchema });
