/**
 * Exotel callbacks as Exotel sends them (GET, parameters in the query string; see
 * docs/exotel.md and test/routes/exotel/passthru.test.ts): every call a new CallSid,
 * callers in the three formats Exotel uses, a share of them on the VIP list.
 */

/** The VIP list the bench seeds: 10,000 numbers +919800000000 … +919800009999. */
export const VIP_COUNT = 10_000;
export const vipNumber = (i: number) => `+91980${String(i).padStart(7, '0')}`;
/** The agents of the bench's dial group. */
export const AGENT_NUMBERS = ['+919812345600', '+919812345601', '+919812345602', '+919812345603', '+919812345604'];
export const EXOPHONE = '08047115777';

/** Share of callers on the VIP list. */
const VIP_SHARE = 0.3;

/** A deterministic pseudo-random sequence (mulberry32), so that runs send the same traffic. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Exotel's `yyyy-mm-dd hh:mm:ss` in Asia/Kolkata. */
function istNow(offsetS = 0): string {
  return new Date(Date.now() + 5.5 * 3600_000 + offsetS * 1000).toISOString().slice(0, 19).replace('T', ' ');
}

/** E.164 +91XXXXXXXXXX as Exotel may write it: 0XXXXXXXXXX, +91XXXXXXXXXX or 91XXXXXXXXXX. */
function asExotelWrites(e164: string, n: number): string {
  const national = e164.slice(3);
  return n % 3 === 0 ? `0${national}` : n % 3 === 1 ? encodeURIComponent(e164) : `91${national}`;
}

export type CallbackKind = 'passthru' | 'dial-whom' | 'connect';

/**
 * Paths of successive callbacks to `/exotel/<kind>/<flow>`. Passthru: one callback per call, after
 * an IVR (digits). Dial Whom / Connect: the first fetch of each call, and for one call in three a
 * re-fetch after the first agent did not answer (DialCallStatus, DialWhomNumber), as Exotel sends
 * with "fetch after every attempt".
 */
export function callbackPaths(kind: CallbackKind, flow: string, tag: string, seed = 1): () => string {
  const rnd = random(seed);
  const created = istNow(-8);
  const common =
    `&CallTo=${EXOPHONE}&Direction=incoming&Created=${encodeURIComponent(created)}&DialCallDuration=0` +
    `&StartTime=${encodeURIComponent(created)}&EndTime=1970-01-01+05%3A30%3A00&CallType=call-attempt&To=${EXOPHONE}` +
    `&CurrentTime=${encodeURIComponent(istNow())}&flow_id=12345&tenant_id=6789`;
  let n = 0;
  let lastCall = '';
  let lastFrom = '';
  return () => {
    n++;
    if (kind !== 'passthru' && n % 4 === 0 && lastCall) {
      // re-fetch of the previous call: its first agent did not answer
      const agent = AGENT_NUMBERS[n % AGENT_NUMBERS.length]!;
      return (
        `/exotel/${kind}/${flow}?CallSid=${lastCall}&CallFrom=${lastFrom}&From=${lastFrom}${common}` +
        `&DialCallStatus=no-answer&DialWhomNumber=0${agent.slice(3)}`
      );
    }
    const vip = rnd() < VIP_SHARE;
    const e164 = vip ? vipNumber(Math.floor(rnd() * VIP_COUNT)) : `+91970${String(Math.floor(rnd() * 1e7)).padStart(7, '0')}`;
    const from = asExotelWrites(e164, n);
    const callSid = `${tag}${n.toString(16).padStart(10, '0')}`;
    lastCall = callSid;
    lastFrom = from;
    const ivr = kind === 'passthru' ? '&digits=%221%22' : '';
    return `/exotel/${kind}/${flow}?CallSid=${callSid}&CallFrom=${from}&From=${from}${common}${ivr}`;
  };
}
