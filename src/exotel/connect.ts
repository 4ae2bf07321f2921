import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Connect } from '../schemas/dial-group.js';
import type { CallbackAnswer } from './responses.js';

/** Connect-applet parameters, version 1.0 (docs/exotel.md, Connect dynamic parameters). */
export const CONNECT_VERSION = '1.0';

/** Exotel's upper limits for the Connect settings that have one (seconds; parallel attempts). */
export const CONNECT_LIMITS = Object.freeze({ maxRingingDuration: 60, maxConversationDuration: 4500, maxParallelAttempts: 10 });

/**
 * Exotel's defaults for each Connect setting, except `fetchAfterAttempt`: Exotel defaults it to
 * false, but exoroute re-decides after every unanswered attempt (skipping busy agents, docs/contract.md §3),
 * which only works when Exotel asks again. Not annotated as `Connect`: that type is derived from
 * the schema that takes its defaults from here (completeConnect in src/store/dial-groups.ts checks
 * that every setting has one).
 */
export const DEFAULT_CONNECT = Object.freeze({
  record: false,
  recordingChannels: 'single',
  maxRingingDuration: 30,
  maxConversationDuration: 900,
  musicOnHold: Object.freeze({ type: 'default_tone' }),
  outgoingPhoneNumber: null,
  fetchAfterAttempt: true,
  maxParallelAttempts: 5,
  startCallPlayback: null,
} as const);

/**
 * The most numbers a Connect answer carries. exoroute's own cap, not Exotel's (its docs state none):
 * a dial group may have 500 members, and a JSON answer of hundreds of numbers helps nobody. The
 * first ones in the call's order are answered; the others stay untried in the call's dial state, so
 * a re-fetch (`fetch_after_attempt`) offers them once the first ones have been tried.
 */
export const CONNECT_MAX_NUMBERS = 50;

/** The numbers a Connect answer carries: the first CONNECT_MAX_NUMBERS (`numbers` itself when there are no more). */
export function connectNumbers(numbers: string[]): string[] {
  return numbers.length > CONNECT_MAX_NUMBERS ? numbers.slice(0, CONNECT_MAX_NUMBERS) : numbers;
}

const E164 = Type.String({ pattern: '^\\+[1-9][0-9]{6,14}$' });
export const ConnectResponseSchema = Type.Object(
  {
    fetch_after_attempt: Type.Boolean(),
    destination: Type.Object({ numbers: Type.Array(E164, { maxItems: CONNECT_MAX_NUMBERS }) }, { additionalProperties: false }),
    outgoing_phone_number: Type.Optional(E164),
    record: Type.Boolean(),
    recording_channels: Type.Union([Type.Literal('single'), Type.Literal('dual')]),
    max_ringing_duration: Type.Integer({ minimum: 1, maximum: CONNECT_LIMITS.maxRingingDuration }),
    max_conversation_duration: Type.Integer({ minimum: 1, maximum: CONNECT_LIMITS.maxConversationDuration }),
    music_on_hold: Type.Union([
      Type.Object({ type: Type.Union([Type.Literal('default_tone'), Type.Literal('operator_tone')]) }, { additionalProperties: false }),
      Type.Object({ type: Type.Literal('custom_tone'), value: Type.String({ pattern: '^https?://' }) }, { additionalProperties: false }),
    ]),
    parallel_ringing: Type.Optional(
      Type.Object(
        { activate: Type.Boolean(), max_parallel_attempts: Type.Integer({ minimum: 1, maximum: CONNECT_LIMITS.maxParallelAttempts }) },
        { additionalProperties: false },
      ),
    ),
    dial_passthru_event_url: Type.Optional(Type.String({ pattern: '^https?://' })),
    start_call_playback: Type.Optional(
      Type.Object(
        {
          playback_to: Type.Union([Type.Literal('both'), Type.Literal('callee')]),
          type: Type.Union([Type.Literal('text'), Type.Literal('audio_url')]),
          value: Type.String({ minLength: 1 }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type ConnectResponse = Static<typeof ConnectResponseSchema>;
const checkConnect = TypeCompiler.Compile(ConnectResponseSchema);

export class InvalidConnectAnswer extends Error {}

/**
 * Dial Whom: `200 text/plain`, comma-separated E.164 numbers; empty when nobody is left. All of them:
 * Exotel's Dial Whom states no limit, and a group's 500 members are some 8 KB of text.
 */
export function dialWhomAnswer(numbers: string[]): CallbackAnswer {
  return { statusCode: 200, contentType: 'text/plain', body: numbers.join(',') };
}

/**
 * Connect dynamic parameters from a group's settings, complete as stored (camelCase → Exotel's
 * snake_case). `numbers` is already cut to CONNECT_MAX_NUMBERS (connectNumbers, by the dial answer,
 * whose trace says so). Checked against the response schema before it leaves: an invalid answer
 * throws InvalidConnectAnswer.
 */
export function connectAnswer(numbers: string[], settings: Readonly<Connect>, opts: { parallel: boolean; eventUrl: string | null }): CallbackAnswer {
  const body: ConnectResponse = {
    fetch_after_attempt: settings.fetchAfterAttempt,
    destination: { numbers },
    record: settings.record,
    recording_channels: settings.recordingChannels,
    max_ringing_duration: settings.maxRingingDuration,
    max_conversation_duration: settings.maxConversationDuration,
    music_on_hold: settings.musicOnHold,
  };
  if (settings.outgoingPhoneNumber) body.outgoing_phone_number = settings.outgoingPhoneNumber;
  if (opts.parallel) body.parallel_ringing = { activate: true, max_parallel_attempts: settings.maxParallelAttempts };
  if (opts.eventUrl) body.dial_passthru_event_url = opts.eventUrl;
  if (settings.startCallPlayback) {
    const p = settings.startCallPlayback;
    body.start_call_playback = { playback_to: p.playbackTo, type: p.type, value: p.value };
  }
  if (!checkConnect.Check(body)) {
    const first = checkConnect.Errors(body).First();
    throw new InvalidConnectAnswer(`connect answer invalid at ${first?.path ?? '?'}: ${first?.message ?? ''}`);
  }
  return { statusCode: 200, contentType: 'application/json', body: JSON.stringify(body) };
}
