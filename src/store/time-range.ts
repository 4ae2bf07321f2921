import { InvalidFieldError } from '../errors.js';

/**
 * A list's `from` and `to` query parameters (instants, as their schemas take them) as dates; a 400
 * naming querystring/to when it is before `from`. CDRs, the audit trail and refusals filter alike.
 */
export function timeRange(q: { from?: string | undefined; to?: string | undefined }): { from: Date | undefined; to: Date | undefined } {
  const from = q.from !== undefined ? new Date(q.from) : undefined;
  const to = q.to !== undefined ? new Date(q.to) : undefined;
  if (from && to && to < from) throw new InvalidFieldError('querystring/to', `must not be before from (${q.from})`);
  return { from, to };
}
