import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { ConnectSettings } from '../schemas/dial-group.js';
import type { CallbackAnswer } from './responses.js';

/** Connect-applet parameters, version 1.0 (docs/exotel.md, Connect dynamic parameters). */
export const CONNECT_VERSION = '1.0';

const E164 = Type.String({ pattern: '^\\+[1-9][0-9]{6,14}$' });
export const ConnectResponseSchema = Type.Object(
  {
    fetch_after_attempt: Type.Boolean(),
    destination: Type.Object({ numbers: Type.Array(E164, { maxItems: 50 }) }, { additionalProperties: false }),
    outgoing_phone_number: Type.Optional(E164),
    record: Type.Boolean(),
    recording_channels: Type.Union([Type.Literal('single'), Type.Literal('dual')]),
    max_ringing_duration: Type.Integer({ minimum: 1, maximum: 60 }),
    max_conversation_duration: Type.Integer({ minimum: 1, maximum: 4500 }),
    music_on_hold: Type.Union([
      Type.Object({ type: Type.Union([Type.Literal('default_tone'), Type.Literal('operator_tone')]) }, { additionalProperties: false }),
      Type.Object({ type: Type.Literal('custom_tone'), value: Type.String({ pattern: '^https?://' }) }, { additionalProperties: false }),
    ]),
    parallel_ringing: Type.Optional(
      Type.Object({ activate: Type.Boolean(), max_parallel_attempts: Type.Integer({ minimum: 1, maximum: 10 }) }, { additionalProperties: false }),
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

/** Dial Whom: `200 text/plain`, comma-separated E.164 numbers; empty when nobody is left. */
export function dialWhomAnswer(numbers: string[]): CallbackAnswer {
  return { statusCode: 200, contentType: 'text/plain', body: numbers.join(',') };
}

/**
 * Connect dynamic parameters from a group's settings (camelCase → Exotel's snake_case). Checked
 * against the response schema before it leaves: an invalid answer throws InvalidConnectAnswer.
 */
export function connectAnswer(numbers: string[], settings: ConnectSettings & Required<Pick<ConnectSettings, 'maxParallelAttempts'>>, opts: { parallel: boolean; eventUrl: string | null }): CallbackAnswer {
  const body: ConnectResponse = {
    fetch_after_attempt: settings.fetchAfterAttempt ?? true,
    destination: { numbers },
    record: settings.record ?? false,
    recording_channels: settings.recordingChannels ?? 'single',
    max_ringing_duration: settings.maxRingingDuration ?? 30,
    max_conversation_duration: settings.maxConversationDuration ?? 900,
    music_on_hold: settings.musicOnHold ?? { type: 'default_tone' },
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
