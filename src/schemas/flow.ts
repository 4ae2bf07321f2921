import { Type, type Static } from '@sinclair/typebox';
import { NullableInstantSchema, PhoneInputSchema, SlugSchema, TimestampsSchema } from './common.js';
import { FLOW_ENDPOINTS } from '../exotel/endpoints.js';

const TextMatchSchema = Type.Union([
  Type.Object({ equals: Type.String({ maxLength: 200 }) }, { additionalProperties: false }),
  Type.Object({ in: Type.Array(Type.String({ maxLength: 200 }), { minItems: 1, maxItems: 1000 }) }, { additionalProperties: false }),
]);

/** Conditions of a rule: every one given must hold (docs/contract.md, Deciding). */
export const ConditionsSchema = Type.Object(
  {
    callerIn: Type.Optional({ ...SlugSchema, description: 'Caller is a live entry of this VIP list' }),
    callerNotIn: Type.Optional({ ...SlugSchema, description: 'Caller is not a live entry of this VIP list' }),
    openBy: Type.Optional({ ...SlugSchema, description: 'This schedule is open now' }),
    closedBy: Type.Optional({ ...SlugSchema, description: 'This schedule is closed now' }),
    digits: Type.Optional(
      Type.Union([...TextMatchSchema.anyOf, Type.Object({ prefix: Type.String({ minLength: 1, maxLength: 50 }) }, { additionalProperties: false })], {
        description:
          'Digits entered in a Gather/IVR applet, keys 0-9, * and # as pressed (without the double quotes Exotel wraps them in): {equals}, {in} or {prefix}',
      }),
    ),
    callerPrefix: Type.Optional(
      Type.Array(Type.String({ pattern: '^\\+[0-9]{1,14}$' }), {
        minItems: 1,
        maxItems: 1000,
        description: 'Caller E.164 number starts with one of these, e.g. "+9180"',
      }),
    ),
    calledNumber: Type.Optional(Type.Array(PhoneInputSchema, { minItems: 1, maxItems: 1000, description: 'The ExoPhone called (CallTo) is one of these' })),
    direction: Type.Optional(Type.String({ minLength: 1, maxLength: 50, description: "Call direction as Exotel sends it, e.g. 'incoming'" })),
    customField: Type.Optional({
      ...TextMatchSchema,
      description: 'CustomField set when the call was made through the API, compared trimmed (a value is not empty, no spaces around it): {equals} or {in}',
    }),
    dialCallStatus: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 50 }), {
        minItems: 1,
        maxItems: 10,
        description: "Outcome of the previous Connect, e.g. ['busy','no-answer']: completed, busy, no-answer, failed or canceled",
      }),
    ),
  },
  { additionalProperties: false },
);
export type Conditions = Static<typeof ConditionsSchema>;

export const PassthruActionSchema = Type.Object(
  {
    branch: Type.Union([Type.Literal('A'), Type.Literal('B')], { description: 'A → 200 OK, B → 302 Found' }),
    url: Type.Optional(
      Type.String({
        format: 'uri',
        pattern: '^https?://',
        maxLength: 2000,
        description: 'Answer 200 with this http(s) URL as text/plain (so only with branch A)',
      }),
    ),
  },
  { additionalProperties: false },
);
/** Passthru: the caller (an agent, by CallFrom) sets their own availability; branch A when now available, else B. */
export const AvailabilityActionSchema = Type.Object(
  {
    availability: Type.Union([Type.Literal('toggle'), Type.Literal('available'), Type.Literal('away')], {
      description:
        "Sets the calling agent's own availability: toggle, available or away. Answers branch A when the caller is now available, B otherwise (also when the caller is no agent)",
    }),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: 'Recorded with the change, e.g. "set by phone"' })),
  },
  { additionalProperties: false },
);
export const SwitchActionSchema = Type.Object(
  { select: Type.String({ minLength: 1, maxLength: 100, description: 'Case of the Switch-case applet' }) },
  { additionalProperties: false },
);
export const DialGroupActionSchema = Type.Object({ dialGroup: SlugSchema }, { additionalProperties: false });
/** Overflow tiers: a later group is offered only when the earlier ones have nobody left to offer. */
export const DialTiersActionSchema = Type.Object(
  { dialGroups: Type.Array(SlugSchema, { minItems: 1, maxItems: 10, description: 'Dial groups in tier order; each keeps its own strategy and rotation' }) },
  { additionalProperties: false },
);
export const DialNumbersActionSchema = Type.Object(
  { numbers: Type.Array(PhoneInputSchema, { minItems: 1, maxItems: 50, description: 'Numbers to dial, in order' }) },
  { additionalProperties: false },
);
export const ActionSchema = Type.Union(
  [PassthruActionSchema, AvailabilityActionSchema, SwitchActionSchema, DialGroupActionSchema, DialTiersActionSchema, DialNumbersActionSchema],
  {
    description:
      'passthru flows: {branch, url?} or {availability, reason?}; switch flows: {select}; dial flows: {dialGroup}, {dialGroups} (tiers) or {numbers}',
  },
);
export type PassthruAction = Static<typeof PassthruActionSchema>;
export type AvailabilityAction = Static<typeof AvailabilityActionSchema>;
export type SwitchAction = Static<typeof SwitchActionSchema>;
export type Action = Static<typeof ActionSchema>;

const RuleNameSchema = Type.String({ minLength: 1, maxLength: 100, description: 'Shown in traces and CDRs; unique in the flow' });
export const RuleSchema = Type.Object({ name: RuleNameSchema, when: ConditionsSchema, then: ActionSchema }, { additionalProperties: false });
export type Rule = Static<typeof RuleSchema>;
/** A rule as written: without a `name` it is named by its position (`rule 1`) when stored. */
export const RuleInputSchema = Type.Object(
  {
    name: Type.Optional({ ...RuleNameSchema, description: 'Shown in traces and CDRs; unique in the flow. Default: by position, `rule 1`, `rule 2`, …' }),
    when: ConditionsSchema,
    then: ActionSchema,
  },
  { additionalProperties: false },
);

export const FlowTypeSchema = Type.Union([Type.Literal('passthru'), Type.Literal('switch'), Type.Literal('dial')]);
export type FlowType = Static<typeof FlowTypeSchema>;

const FlowFields = {
  name: Type.String({ minLength: 1, maxLength: 200 }),
  type: FlowTypeSchema,
  mode: Type.Optional(Type.Union([Type.Literal('sync'), Type.Literal('async')], { description: 'passthru only: async answers 200 at once', default: 'sync' })),
  rules: Type.Array(RuleInputSchema, { maxItems: 200, description: 'Tried in order; the first whose conditions all hold decides' }),
  otherwise: ActionSchema,
  onError: ActionSchema,
};

export const FlowInputSchema = Type.Object({ slug: SlugSchema, ...FlowFields }, { additionalProperties: false });
export type FlowInput = Static<typeof FlowInputSchema>;
export const FlowReplaceSchema = Type.Object(FlowFields, { additionalProperties: false });
export const FLOW_EXAMPLE = {
  slug: 'inbound',
  name: 'Main line',
  type: 'passthru',
  rules: [
    { name: 'VIPs', when: { callerIn: 'gold' }, then: { branch: 'A' } },
    { name: 'closed', when: { closedBy: 'support' }, then: { branch: 'B' } },
  ],
  otherwise: { branch: 'A' },
  onError: { branch: 'A' },
};
export type FlowReplace = Static<typeof FlowReplaceSchema>;

export const FlowSchema = Type.Composite([
  Type.Object({
    slug: SlugSchema,
    name: Type.String(),
    type: FlowTypeSchema,
    mode: Type.Union([Type.Literal('sync'), Type.Literal('async')]),
    rules: Type.Array(RuleSchema),
    otherwise: ActionSchema,
    onError: ActionSchema,
  }),
  TimestampsSchema,
]);
export type Flow = Static<typeof FlowSchema>;

const ExotelUrlSchema = Type.String({ format: 'uri' });
/** A flow as the admin API returns it: with the applet URL(s) to paste into Exotel's flow builder. */
export const FlowViewSchema = Type.Composite([
  FlowSchema,
  Type.Object({
    exotelUrls: Type.Object(
      {
        passthru: Type.Optional({ ...ExotelUrlSchema, description: 'passthru flows: the Passthru applet URL (sync)' }),
        switch: Type.Optional({ ...ExotelUrlSchema, description: 'switch flows: the Passthru applet URL before a Switch-case applet' }),
        dialWhom: Type.Optional({ ...ExotelUrlSchema, description: 'dial flows: Connect applet → Dial whom → number returned by URL' }),
        connect: Type.Optional({ ...ExotelUrlSchema, description: 'dial flows: Connect applet → Connect using an application URL' }),
      },
      {
        description:
          'The URL(s) to paste into Exotel for this flow, built from PUBLIC_URL. With EXOTEL_CALLBACK_SECRET set they carry it as ' +
          '`token`: shown to admin keys, `token=***` for viewer keys.',
      },
    ),
  }),
]);

/**
 * The keys of a rule that name another object, by the object's kind: in its conditions (`when`),
 * and in an action (a rule's `then`, `otherwise`, `onError`).
 */
export const REFERENCE_KEYS = {
  'vip-list': { when: ['callerIn', 'callerNotIn'], action: [] },
  schedule: { when: ['openBy', 'closedBy'], action: [] },
  // dialGroups: a list of slugs (overflow tiers)
  'dial-group': { when: [], action: ['dialGroup', 'dialGroups'] },
} as const satisfies Record<string, { when: ReadonlyArray<keyof Conditions>; action: readonly string[] }>;
export type ReferencedKind = keyof typeof REFERENCE_KEYS;

/** The slugs of the objects a flow names, by kind, in the order the flow names them. */
export function referencesOf(flow: { rules: Array<Pick<Rule, 'when' | 'then'>>; otherwise: Action; onError: Action }): Record<ReferencedKind, Set<string>> {
  const found = { 'vip-list': new Set<string>(), schedule: new Set<string>(), 'dial-group': new Set<string>() };
  const kinds = Object.keys(REFERENCE_KEYS) as ReferencedKind[];
  for (const rule of flow.rules) {
    for (const kind of kinds) {
      for (const key of REFERENCE_KEYS[kind].when) {
        const slug = rule.when[key];
        if (slug) found[kind].add(slug);
      }
    }
  }
  for (const action of [...flow.rules.map((r) => r.then), flow.otherwise, flow.onError]) {
    for (const kind of kinds) {
      for (const key of REFERENCE_KEYS[kind].action) {
        const named = (action as Record<string, unknown>)[key];
        for (const slug of Array.isArray(named) ? named : [named]) if (typeof slug === 'string') found[kind].add(slug);
      }
    }
  }
  return found;
}

export const CallbackEndpointSchema = Type.Union(
  FLOW_ENDPOINTS.map((e) => Type.Literal(e)),
  {
    description: 'Which callback endpoint to simulate',
  },
);

export const SimulateInputSchema = Type.Object(
  {
    endpoint: CallbackEndpointSchema,
    params: Type.Record(Type.String({ maxLength: 100 }), Type.Union([Type.String({ maxLength: 2048 }), Type.Number(), Type.Boolean()]), {
      description: 'Exotel parameters as the applet would send them (CallSid, CallFrom, digits, ...)',
    }),
    at: Type.Optional(Type.String({ format: 'date-time', description: 'Pretend it is this instant (default now)' })),
  },
  { additionalProperties: false },
);

export const SIMULATE_EXAMPLE = {
  endpoint: 'passthru',
  params: { CallSid: 'test', CallFrom: '09812345678', CallTo: '08047115777' },
  at: '2026-12-25T11:00:00+05:30',
};

export const ConditionTraceSchema = Type.Object({ condition: Type.String(), held: Type.Boolean(), why: Type.String() });
export const RuleTraceSchema = Type.Object({
  index: Type.Integer(),
  name: Type.String(),
  result: Type.Union([Type.Literal('matched'), Type.Literal('not matched'), Type.Literal('not evaluated')]),
  conditions: Type.Array(ConditionTraceSchema),
});
export type RuleTrace = Static<typeof RuleTraceSchema>;

export const SimulateResultSchema = Type.Object({
  answer: Type.Object(
    {
      statusCode: Type.Integer(),
      contentType: Type.Union([Type.String(), Type.Null()]),
      body: Type.String(),
    },
    { description: 'Exactly what the callback endpoint would answer' },
  ),
  action: Type.Union([ActionSchema, Type.Null()]),
  numbers: Type.Optional(Type.Array(Type.String(), { description: 'dial-whom/connect: the numbers offered, in order' })),
  decidedBy: Type.String({ description: "'rule', 'otherwise', 'onError' or 'rejected'" }),
  matchedRule: Type.Union([Type.String(), Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()]),
  trace: Type.Array(RuleTraceSchema),
  availability: Type.Optional(
    Type.Object(
      {
        agent: Type.Union([Type.String(), Type.Null()], { description: 'The caller, when a member of a dial group' }),
        from: Type.Union([Type.String(), Type.Null()]),
        to: Type.Union([Type.String(), Type.Null()]),
        why: Type.String(),
      },
      { description: 'An availability action: what it would change (simulate changes nothing)' },
    ),
  ),
  dial: Type.Optional(
    Type.Object(
      {
        tier: Type.Union([Type.String(), Type.Null()], { description: 'The dial group of the tier offered' }),
        tierIndex: Type.Union([Type.Integer(), Type.Null()]),
        skipped: Type.Array(Type.Object({ number: Type.String(), group: Type.Union([Type.String(), Type.Null()]), why: Type.String() }), {
          description: 'Members passed over and why: away, off shift, inactive, busy, wrap-up, paused, tried',
        }),
        repeat: Type.Optional(Type.Boolean()),
        strategy: Type.Optional(Type.String({ description: "The offered group's strategy, or 'numbers' for a list" })),
        sticky: Type.Optional(
          Type.Union([Type.String(), Type.Null()], {
            description:
              "Sticky for this caller: 'last N days' (their last connected agent in that window goes first), 'off: caller unknown', or null when the group has it off",
          }),
        ),
        cut: Type.Optional(
          Type.String({
            description:
              "connect: 'first 50 of N' when more numbers were offered than a Connect answer carries (50); the rest stay untried, and a re-fetch offers them",
          }),
        ),
      },
      { description: 'dial-whom/connect: which tier was offered, its strategy and sticky, who was skipped and why, and whether a Connect answer was cut' },
    ),
  ),
  at: NullableInstantSchema,
});
