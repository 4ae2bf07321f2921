import { Type, type Static } from '@sinclair/typebox';
import { InstantSchema, NumericCursorSchema, PageLimitSchema, SlugSchema } from './common.js';
import { CALLBACK_ENDPOINTS, UNKNOWN_ENDPOINT } from '../exotel/endpoints.js';
import { MAX_CALL_SID_CHARS, OUTCOMES } from '../routing/callback.js';

// 'unknown': a callback to a path under /exotel that names no endpoint (a typo in the URL given to Exotel) leaves a CDR too.
const CdrEndpointSchema = Type.Union(
  [...CALLBACK_ENDPOINTS, UNKNOWN_ENDPOINT].map((e) => Type.Literal(e)),
  {
    description: `The callback endpoint that received the call (${UNKNOWN_ENDPOINT}: a path under /exotel that names none)`,
  },
);

/** Postgres text cannot hold NUL: control characters in a filter are a 400 here, not a 500 from the query. */
const NO_CONTROL_CHARACTERS = '^[^\\u0000-\\u001f]+$';
// As long as the callbacks take (MAX_CALL_SID_CHARS), so that every stored CDR can be looked up.
const CallSidSchema = Type.String({
  minLength: 1,
  maxLength: MAX_CALL_SID_CHARS,
  pattern: NO_CONTROL_CHARACTERS,
  description: 'Exotel CallSid (no control characters)',
});

const NullableString = (description?: string) => Type.Union([Type.String(), Type.Null()], description ? { description } : {});

/** One callback as exoroute received and answered it. */
export const CdrSchema = Type.Object({
  id: Type.String({ description: 'Increases with arrival; use it to fetch the CDR again' }),
  receivedAt: InstantSchema,
  endpoint: Type.String({ description: `${CALLBACK_ENDPOINTS.join(', ')}, or ${UNKNOWN_ENDPOINT} (a path under /exotel that names no endpoint)` }),
  flowSlug: NullableString('The flow in the callback URL (null for dial-events)'),
  callSid: NullableString('Exotel CallSid (null when the callback had none; it was answered 400)'),
  callFrom: NullableString('Caller, E.164 (null when it could not be normalised; see callFromRaw)'),
  callFromRaw: NullableString('CallFrom exactly as Exotel sent it'),
  callTo: NullableString('Called ExoPhone, E.164'),
  callToRaw: NullableString('CallTo exactly as Exotel sent it'),
  direction: NullableString(),
  callStatus: NullableString(),
  callType: NullableString(),
  digits: NullableString('Digits pressed, without Exotel’s surrounding quotes'),
  customField: NullableString(),
  dialCallStatus: NullableString('On a re-fetch: the result of the previous attempt'),
  dialWhomNumber: NullableString('On a re-fetch or dial event: the agent number, E.164'),
  legs: Type.Unknown({ description: 'Legs[i][…] parameters as an array of objects, or null' }),
  params: Type.Unknown({ description: 'Every parameter as received (secrets removed)' }),
  decision: Type.Unknown({ description: 'What was decided: the action and its trace, or null' }),
  matchedRule: NullableString('Name of the rule that decided, null for otherwise/onError'),
  outcome: Type.String({ description: 'How the callback ended, as the CDR writer names it' }),
  reason: NullableString('Why, when the outcome is not a plain answer'),
  httpStatus: Type.Integer({ description: 'Status exoroute answered with' }),
  responseBody: NullableString('Body exoroute answered with'),
  handlingMs: Type.Number({ description: 'Time from request to answer, milliseconds' }),
  attempt: Type.Integer({
    description:
      'How many callbacks of this call to this endpoint and flow this instance answered, this one included (1 for the first; counted in memory per instance)',
  }),
});
export type Cdr = Static<typeof CdrSchema>;

const cdrFilterFields = {
  callSid: Type.Optional(CallSidSchema),
  number: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 32,
      description: 'Caller, called number or dialed agent, in any format (national numbers use DEFAULT_COUNTRY)',
      examples: ['09812345678'],
    }),
  ),
  flow: Type.Optional(SlugSchema),
  endpoint: Type.Optional(CdrEndpointSchema),
  from: Type.Optional(Type.String({ format: 'date-time', description: 'Received at or after this instant (ISO 8601 with offset)' })),
  to: Type.Optional(Type.String({ format: 'date-time', description: 'Received before this instant (ISO 8601 with offset)' })),
  outcome: Type.Optional(
    Type.Union(
      OUTCOMES.map((o) => Type.Literal(o)),
      {
        description:
          "How the callback ended: answered, async (a flow in async mode: Exotel does not wait for the answer), on-error (the flow's onError) or rejected",
      },
    ),
  ),
};

/** Filters shared by the list and the CSV export; every given filter must hold. */
export const CdrFilterQuerySchema = Type.Object(cdrFilterFields, { additionalProperties: false });
export type CdrFilterQuery = Static<typeof CdrFilterQuerySchema>;

export const CdrListQuerySchema = Type.Object(
  {
    ...cdrFilterFields,
    limit: PageLimitSchema,
    cursor: Type.Optional(NumericCursorSchema),
  },
  { additionalProperties: false },
);
export type CdrListQuery = Static<typeof CdrListQuerySchema>;

export const CdrPageSchema = Type.Object({
  items: Type.Array(CdrSchema),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next (older) page; null on the last' }),
});

export const CdrIdParamsSchema = Type.Object({ id: Type.String({ pattern: '^[0-9]{1,19}$', description: 'CDR id (digits)' }) });

export const CallSidParamsSchema = Type.Object({ callSid: CallSidSchema });

export const CallTimelineSchema = Type.Object({
  callSid: Type.String(),
  callbacks: Type.Array(CdrSchema, { description: 'Every callback for the call, oldest first' }),
});
