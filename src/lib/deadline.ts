/** The rejection of `withDeadline` when the work has not settled in time. */
export class DeadlineExceeded extends Error {}

/**
 * `work`'s outcome, or a DeadlineExceeded rejection (`message(ms)`) once `ms` have passed (at once
 * when `ms` ≤ 0), whichever comes first; the timer is cleared either way. The work is not
 * cancelled: a late result is dropped. A plain timer rather than node:timers/promises with an
 * AbortController, and the message built only when it is late: this runs once per dial callback.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, message: (ms: number) => string, opts?: { unref?: boolean }): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(message(ms))), Math.max(0, ms));
    if (opts?.unref) timer.unref();
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
