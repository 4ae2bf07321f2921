import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIPv6 } from 'node:net';
import type { Config } from '../../config.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Who may call back: the `EXOTEL_CALLBACK_SECRET` as HTTP Basic password (any user) or as the
 * `token` query parameter, from an address in `EXOTEL_ALLOWED_CIDRS` (SPEC §3).
 */
export function callbackGuard(config: Pick<Config, 'EXOTEL_CALLBACK_SECRET' | 'EXOTEL_ALLOWED_CIDRS'>) {
  const secret = config.EXOTEL_CALLBACK_SECRET ? digest(config.EXOTEL_CALLBACK_SECRET) : null;
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
  const matches = (given: string | undefined) => given !== undefined && secret !== null && timingSafeEqual(digest(given), secret);

  /** null when allowed, else the status and reason of the refusal. `token` reads the `token` parameter. */
  return function check(ip: string, authorization: string | undefined, token: () => string | undefined): { status: 401 | 403; reason: string } | null {
    if (allowed) {
      const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(ip)?.[1];
      const ok = v4mapped ? allowed.check(v4mapped, 'ipv4') : allowed.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
      if (!ok) return { status: 403, reason: `source address ${ip} is not in EXOTEL_ALLOWED_CIDRS` };
    }
    if (!secret) return null;
    let password: string | undefined;
    const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization ?? '')?.[1];
    if (basic) {
      const decoded = Buffer.from(basic, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      password = colon >= 0 ? decoded.slice(colon + 1) : undefined;
    }
    // The token is read from the query string only when the Basic password does not match.
    if (matches(password) || matches(token())) return null;
    return { status: 401, reason: 'callback secret missing or wrong (HTTP Basic password or token parameter)' };
  };
}
