import { Type, type Static } from '@sinclair/typebox';
import { InstantSchema, NullableInstantSchema, SlugSchema } from './common.js';
import { TimezoneSchema } from './schedule.js';

export const AvailabilityStatusSchema = Type.Union([Type.Literal('available'), Type.Literal('away')]);
export type AvailabilityStatus = Static<typeof AvailabilityStatusSchema>;

export const AvailabilityInputSchema = Type.Object(
  {
    status: { ...AvailabilityStatusSchema, description: 'away: offered by no dial group until set back or `until` passes' },
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: 'e.g. lunch, training' })),
    until: Type.Optional(
      Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
        description: 'away only: ISO 8601 instant in the future, with its offset, when the agent is available again; absent or null: away until set back',
      }),
    ),
  },
  { additionalProperties: false },
);
export type AvailabilityInput = Static<typeof AvailabilityInputSchema>;

/** Away or available as last set, by whom and when. */
export const AvailabilitySchema = Type.Object({
  status: AvailabilityStatusSchema,
  reason: Type.Union([Type.String(), Type.Null()]),
  until: NullableInstantSchema,
  setBy: Type.String({ description: "'api-key:<id>' (admin API) or 'phone:<CallSid>' (the agent's own call)" }),
  setAt: InstantSchema,
});
export type Availability = Static<typeof AvailabilitySchema>;

/** What an agent is now, most telling first: on a call, away, wrapping up, paused, inactive, off shift, available. */
export const AgentStateSchema = Type.Union(
  ['on_call', 'away', 'wrapping_up', 'paused', 'inactive', 'off_shift', 'available'].map((s) => Type.Literal(s)),
  { description: 'on_call > away > wrapping_up > paused > inactive (switched off in every group) > off_shift (no group shift open) > available' },
);
export type AgentState = 'on_call' | 'away' | 'wrapping_up' | 'paused' | 'inactive' | 'off_shift' | 'available';
export const AGENT_STATES: readonly AgentState[] = ['on_call', 'away', 'wrapping_up', 'paused', 'inactive', 'off_shift', 'available'];

/** An agent's offers since local midnight, and how they ended. */
const TodaySchema = Type.Object({ offers: Type.Integer(), answers: Type.Integer(), misses: Type.Integer() });

/** One dial-group membership of an agent, as its state is judged. */
export const AgentGroupSchema = Type.Object({
  slug: Type.String(),
  active: Type.Boolean(),
  schedule: Type.Union([Type.String(), Type.Null()], { description: 'Shift schedule' }),
  onShift: Type.Boolean(),
});
export type AgentGroup = Static<typeof AgentGroupSchema>;

export const AgentSchema = Type.Object({
  number: Type.String(),
  name: Type.Union([Type.String(), Type.Null()], { description: 'The first name a group gives the member' }),
  state: AgentStateSchema,
  groups: Type.Array(
    Type.Composite([
      AgentGroupSchema,
      Type.Object({
        today: {
          ...TodaySchema,
          description:
            "The agent's `today` that this group offered, as exoroute_agent_offers_total{group} and the others count them (an offer for an agent in several groups whose group was not named counts in none)",
        },
      }),
    ]),
  ),
  onCall: Type.Union([Type.Object({ since: InstantSchema, callSid: Type.Union([Type.String(), Type.Null()]) }), Type.Null()]),
  away: Type.Union([AvailabilitySchema, Type.Null()], { description: 'Set while the agent is away' }),
  availability: Type.Union([AvailabilitySchema, Type.Null()], { description: 'As last set (null: never set)' }),
  wrapUpUntil: NullableInstantSchema,
  paused: Type.Union([Type.Object({ until: InstantSchema, reason: Type.String() }), Type.Null()]),
  missedOffers: Type.Integer({
    description:
      'Consecutive missed offers (no-answer, busy; a failed offer is skipped): since its last answered offer, its last pause for misses, or when it was last set available (counted up to 1000)',
  }),
  today: Type.Object(
    {
      since: Type.String({
        format: 'date-time',
        description: "The local midnight today starts at, in `timezone` with that zone's offset (2026-12-07T00:00:00+05:30)",
      }),
      ...TodaySchema.properties,
    },
    { description: 'Offers made since `since`; misses: no-answer or busy (a failed or cancelled offer is neither an answer nor a miss)' },
  ),
});
export type Agent = Static<typeof AgentSchema>;

export const OfferSchema = Type.Object({
  callSid: Type.String(),
  flow: Type.Union([Type.String(), Type.Null()], {
    description: 'The dial flow that offered the agent in this call: another flow of the same call makes an offer of its own (null: not known)',
  }),
  group: Type.Union([Type.String(), Type.Null()]),
  offeredAt: {
    ...InstantSchema,
    description:
      'When the agent was rung: its Dial event. An offer no dial event reported (Dial Whom sends none) has only the re-fetch that reported how it ended: offeredAt is then that re-fetch, as endedAt, not when the agent was rung',
  },
  outcome: Type.Union([Type.String(), Type.Null()], {
    description:
      'answered, no-answer, busy (misses), failed (the carrier or network), cancelled (a parallel ring cut short when another agent answered); null while ringing or on the call (endedAt null), or when the offer ended without Exotel saying how (endedAt set: its end came before its start)',
  }),
  endedAt: NullableInstantSchema,
});
export type Offer = Static<typeof OfferSchema>;

export const AgentDetailSchema = Type.Composite([AgentSchema, Type.Object({ recentOffers: Type.Array(OfferSchema) })]);

const TodayTimezoneSchema = { ...TimezoneSchema, description: 'Where "today" is counted from midnight (default Asia/Kolkata)' };
export const AgentsQuerySchema = Type.Object({ timezone: Type.Optional(TodayTimezoneSchema) }, { additionalProperties: false });
export const AgentsListQuerySchema = Type.Object(
  {
    timezone: Type.Optional(TodayTimezoneSchema),
    state: Type.Optional({ ...AgentStateSchema, description: 'Only the agents in this state now' }),
    group: Type.Optional({
      ...SlugSchema,
      description: 'Only the members of this dial group (each with all its groups, and today its offers from all of them)',
    }),
  },
  { additionalProperties: false },
);
export const AgentParamsSchema = Type.Object({ number: Type.String({ minLength: 1, maxLength: 32, description: 'Agent number in any form' }) });
