/**
 * The parameters Exotel sends to exoroute's callback endpoints, as the OpenAPI document shows them.
 * Documentation only: callbacks are parsed by src/exotel/params.ts, which never refuses a
 * parameter (names in any case or with `_`, unknown ones kept in the CDR, the text `null` read as
 * absent), so no route validates against these.
 */
import { Type } from '@sinclair/typebox';

const required = (description: string, example: string) => Type.String({ description, examples: [example] });
/** Exotel sends only some parameters, depending on where in the flow the applet is. */
const text = (description: string, example: string) => Type.Optional(required(description, example));
const number = (description: string, example: string) =>
  text(`${description} Any form: national (\`09812345678\`), \`91…\` or E.164; an Exotel SIP user id (\`sip:agent123\`) is kept as sent.`, example);
const time = (description: string, example: string) =>
  text(`${description} \`yyyy-mm-dd hh:mm:ss\` or \`Wed, 31 Jul 2024 16:42:56\` in Asia/Kolkata, or ISO 8601 with an offset.`, example);

const CALL = {
  CallSid: required(
    "Exotel's id of the call. Required: without it, or with more than 200 characters, the answer is 400 (and still a CDR).",
    'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6',
  ),
  CallFrom: number('The caller (incoming) or the number calling out. `From` stands in when it is missing.', '09812345678'),
  CallTo: number('The ExoPhone the call landed on (condition `calledNumber`). `To` stands in when it is missing.', '08047115777'),
  From: number('Same as CallFrom, sent by older applets and some accounts.', '09812345678'),
  To: number('Same as CallTo.', '08047115777'),
  Direction: text('`incoming` or `outbound-dial` (condition `direction`).', 'incoming'),
  CallStatus: text('Status of the call at this stage.', 'in-progress'),
  CallType: text('`call-attempt`, `completed`, `client-hangup`, `incomplete` or `voicemail`.', 'call-attempt'),
  Created: time('When the call was created.', '2026-12-25 11:00:00'),
  StartTime: time('When the call started.', '2026-12-25 11:00:00'),
  CurrentTime: time("Exotel's clock when it sent this request. Business hours are decided by exoroute's own clock, not by this.", '2026-12-25 11:00:02'),
  EndTime: time('Constant `1970-01-01 05:30:00` in applet requests.', '1970-01-01 05:30:00'),
  digits: text('Keys pressed in a Gather/IVR applet before, wrapped in double quotes (`"1"`), which exoroute strips (condition `digits`).', '"1"'),
  CustomField: text("The CustomField of a call made through Exotel's API (condition `customField`).", 'order-4711'),
  DialCallStatus: text(
    'Outcome of the previous Connect attempt: `completed`, `busy`, `no-answer`, `failed`, `canceled` (condition `dialCallStatus`).',
    'no-answer',
  ),
  DialCallDuration: text('Seconds of the previous Connect leg.', '0'),
  DialWhomNumber: number('The agent dialed last: on a Dial Whom / Connect re-fetch, that number is not offered again.', '09811100001'),
  RecordingUrl: text('The recording of a previous Voicemail or Connect applet.', 'https://recordings.exotel.com/exotelrecordings/acme/a1b2.mp3'),
  'Legs[0][Number]': number(
    'Each attempted leg of the previous Connect (`Legs[i][Number|Cause|CauseCode|Type|OnCallDuration]`): its numbers are not offered again.',
    '09811100001',
  ),
};

/** What the Passthru, Switch-case, Dial Whom and Connect callbacks read. */
export const CallbackParamsSchema = Type.Object(CALL, {
  description: "Exotel's call parameters; names in any case (`callfrom`), any others are kept in the CDR.",
  additionalProperties: true,
});

/** What a dial event (dial_passthru_event_url) carries. */
export const DialEventParamsSchema = Type.Object(
  {
    CallSid: text(
      "Exotel's id of the call. Without it the event still sets the agent's busy state (with no call); with more than 200 characters the answer is 400 (and still a CDR).",
      'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6',
    ),
    CallFrom: CALL.CallFrom,
    From: CALL.From,
    CallTo: CALL.CallTo,
    Direction: text("`outbound-dial` for the Connect applet's agent leg.", 'outbound-dial'),
    DialWhomNumber: number('The agent being dialed. Needed (else 400), except an Exotel SIP user id, acknowledged without keeping state.', '09811100001'),
    Status: text('`busy` while the agent is rung or on the call, `free` when that ends.', 'busy'),
    EventType: text('`Dial`, `Ringing`, `Answered` (the caller–agent link `sticky` uses) or `Terminal`.', 'Dial'),
    Created: CALL.Created,
    CurrentTime: CALL.CurrentTime,
  },
  { description: 'Sent by Exotel for each agent leg of a Connect whose answer set dial_passthru_event_url.', additionalProperties: true },
);

/** The two ways a callback carries EXOTEL_CALLBACK_SECRET, as OpenAPI security requirements (either one). */
export const CALLBACK_SECURITY: Array<Record<string, string[]>> = [{ exotelBasic: [] }, { exotelToken: [] }];
