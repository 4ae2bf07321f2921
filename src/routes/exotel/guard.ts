import { isUtf8 } from 'node:buffer';
import { timingSafeEqual } from 'node:crypto';
import { BlockList, isIPv6 } from 'node:net';
import type { Config } from '../../config.js';

const BASIC = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i;
const V4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/;
const COLON = 0x3a;

/** What the guard answers for a callback that carries EXOTEL_CALLBACK_SECRET_PREVIOUS: allowed, and flagged. */
export const PREVIOUS_SECRET = 'previous';

function wrongSecret() {
  return { status: 401 as const, reason: 'callback secret missing or wrong (HTTP Basic password or token parameter)' };
}

/**
 * Who may call back: the `EXOTEL_CALLBACK_SECRET` as HTTP Basic password (any user) or as the
 * `token` query parameter, from an address in `EXOTEL_ALLOWED_CIDRS` (docs/contract.md §3). During a
 * rotation `EXOTEL_CALLBACK_SECRET_PREVIOUS` is accepted too, compared only when the current one does
 * not match; the check then answers PREVIOUS_SECRET instead of null.
 */
export function callbackGuard(config: Pick<Config, 'EXOTEL_CALLBACK_SECRET' | 'EXOTEL_CALLBACK_SECRET_PREVIOUS' | 'EXOTEL_ALLOWED_CIDRS'>) {
  const secret = config.EXOTEL_CALLBACK_SECRET ? Buffer.from(config.EXOTEL_CALLBACK_SECRET, 'utf8') : null;
  const previous = secret && config.EXOTEL_CALLBACK_SECRET_PREVIOUS ? Buffer.from(config.EXOTEL_CALLBACK_SECRET_PREVIOUS, 'utf8') : null;
  let allowed: BlockList | null = null;
  if (config.EXOTEL_ALLOWED_CIDRS.length > 0) {
    allowed = new BlockList();
    for (const cidr of config.EXOTEL_ALLOWED_CIDRS) {
      const [addr, bits] = cidr.split('/') as [string, string | undefined];
      const type = isIPv6(addr) ? 'ipv6' : 'ipv4';
      if (bits === undefined) allowed.addAddress(addr, type);
      else allowed.addSubnet(addr, Number(bits), type);
    }
  }
  // Constant-time in the secret's content. The length check answers sooner for a password of
  // another length, which tells a caller the secret's length (16–200 characters) and nothing else;
  // hashing both sides to hide it cost more than the rest of the guard on every callback.
  const equal = (given: Buffer | undefined, expected: Buffer | null) =>
    given !== undefined && expected !== null && given.length === expected.length && timingSafeEqual(given, expected);

  /** The Basic password's UTF-8 bytes, as its decoded string would encode them. */
  function basicPassword(authorization: string | undefined): Buffer | undefined {
    const basic = authorization === undefined ? undefined : BASIC.exec(authorization)?.[1];
    if (!basic) return undefined;
    const decoded = Buffer.from(basic, 'base64');
    const colon = decoded.indexOf(COLON); // never inside a UTF-8 sequence, valid or not
    if (colon < 0) return undefined;
    const password = decoded.subarray(colon + 1);
    // Bytes that are not UTF-8 are compared as their decoding (U+FFFD for each bad sequence).
    return isUtf8(password) ? password : Buffer.from(password.toString('utf8'), 'utf8');
  }

  /**
   * null when allowed, PREVIOUS_SECRET when allowed by EXOTEL_CALLBACK_SECRET_PREVIOUS, else the status
   * and reason of the refusal. `token` reads the `token` parameter.
   */
  return function check(
    ip: string,
    authorization: string | undefined,
    token: () => string | undefined,
  ): { status: 401 | 403; reason: string } | typeof PREVIOUS_SECRET | null {
    if (allowed) {
      const v4mapped = ip.startsWith('::ffff:') ? V4_MAPPED.exec(ip)?.[1] : undefined;
      const ok = v4mapped ? allowed.check(v4mapped, 'ipv4') : allowed.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
      if (!ok) return { status: 403, reason: `source address ${ip} is not in EXOTEL_ALLOWED_CIDRS` };
    }
    if (!secret) return null;
    const password = basicPassword(authorization);
    if (equal(password, secret)) return null;
    if (previous && equal(password, previous)) return PREVIOUS_SECRET;
    // The token is read from the query string only when the Basic password does not match.
    const given = token();
    if (given === undefined) return wrongSecret();
    const bytes = Buffer.from(given, 'utf8');
    if (equal(bytes, secret)) return null;
    if (previous && equal(bytes, previous)) return PREVIOUS_SECRET;
    return wrongSecret();
  };
}
