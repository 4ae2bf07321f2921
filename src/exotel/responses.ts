import { STATUS_CODES } from 'node:http';
import type { PassthruAction, SwitchAction } from '../schemas/flow.js';

/** Exactly what goes back to Exotel. */
export interface CallbackAnswer {
  statusCode: number;
  contentType: string | null;
  body: string;
}

/**
 * Passthru (sync): Exotel takes branch A on `200 OK` and branch B on `302 Found`; a body is the
 * URL of an applet or flow to continue with (Passthru guide: "HTTP 200 with applet URL").
 */
export function passthruAnswer(action: PassthruAction): CallbackAnswer {
  if (action.url) return { statusCode: 200, contentType: 'text/plain', body: action.url };
  return { statusCode: action.branch === 'B' ? 302 : 200, contentType: 'text/plain', body: '' };
}

/** Async Passthru: Exotel does not wait for a decision; answer at once. */
export const asyncPassthruAnswer: CallbackAnswer = { statusCode: 200, contentType: 'text/plain', body: '' };

/** Switch-case applet: `200 text/plain` with `{"select":"<case>"}`. */
export function switchAnswer(action: SwitchAction): CallbackAnswer {
  return { statusCode: 200, contentType: 'text/plain', body: JSON.stringify({ select: action.select }) };
}

/** A refused callback, in Fastify's error shape. */
export function errorAnswer(statusCode: number, message: string): CallbackAnswer {
  return {
    statusCode,
    contentType: 'application/json; charset=utf-8',
    body: JSON.stringify({ statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message }),
  };
}
