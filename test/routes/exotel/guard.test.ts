import t from 'tap';
import fc from 'fast-check';
import { callbackGuard, PREVIOUS_SECRET } from '../../../src/routes/exotel/guard.js';

const SECRET = 's3cret-callback-value';
const SEED = Number(process.env.FUZZ_SEED) || 20261107;
const basic = (userPass: string | Buffer) => `Basic ${Buffer.from(userPass).toString('base64')}`;
const noToken = () => undefined;
const guardFor = (secret: string | undefined, cidrs: string[] = []) => callbackGuard({ EXOTEL_CALLBACK_SECRET: secret, EXOTEL_ALLOWED_CIDRS: cidrs });
const WRONG_SECRET = { status: 401, reason: 'callback secret missing or wrong (HTTP Basic password or token parameter)' };

t.test('the Basic password is the secret, with any user; the scheme is case-insensitive', async (t) => {
  const check = guardFor(SECRET);
  for (const user of ['exotel', '', 'someone else']) t.equal(check('127.0.0.1', basic(`${user}:${SECRET}`), noToken), null, `user '${user}'`);
  t.equal(check('127.0.0.1', `basic   ${Buffer.from(`u:${SECRET}`).toString('base64')}  `, noToken), null, 'lower-case scheme, extra spaces');
  const colons = guardFor('pa:ss:word');
  t.equal(colons('127.0.0.1', basic('u:pa:ss:word'), noToken), null, 'the password is everything after the first colon');
});

t.test('a wrong password is refused, whatever its length, and so is a header without one', async (t) => {
  const check = guardFor(SECRET);
  const sameLength = `${SECRET.slice(0, -1)}X`;
  t.equal(sameLength.length, SECRET.length);
  for (const password of [sameLength, `X${SECRET.slice(1)}`, SECRET.toUpperCase(), SECRET.slice(0, -1), `${SECRET}x`, '', `${SECRET}\u0000`]) {
    t.same(check('127.0.0.1', basic(`exotel:${password}`), noToken), WRONG_SECRET, JSON.stringify(password));
  }
  for (const header of [
    undefined,
    '',
    `Bearer ${SECRET}`,
    basic(SECRET),
    `Basic ${Buffer.from(`u:${SECRET}`).toString('base64')}!`,
    `Digest ${basic(`u:${SECRET}`).slice(6)}`,
  ]) {
    t.same(check('127.0.0.1', header, noToken), WRONG_SECRET, String(header));
  }
});

t.test('the token parameter is read only when the Basic password does not match', async (t) => {
  const check = guardFor(SECRET);
  let reads = 0;
  const token = (value: string | undefined) => () => {
    reads++;
    return value;
  };
  t.equal(check('127.0.0.1', basic(`u:${SECRET}`), token('ignored')), null);
  t.equal(reads, 0, 'a matching Basic password does not read the token');
  t.equal(check('127.0.0.1', basic('u:wrong'), token(SECRET)), null, 'a wrong Basic password, the right token');
  t.equal(check('127.0.0.1', undefined, token(SECRET)), null, 'no header, the right token');
  t.same(check('127.0.0.1', undefined, token(`${SECRET.slice(0, -1)}X`)), WRONG_SECRET, 'a wrong token of the same length');
  t.same(check('127.0.0.1', undefined, token(undefined)), WRONG_SECRET, 'neither');
  t.equal(reads, 4);
});

t.test('EXOTEL_CALLBACK_SECRET_PREVIOUS is accepted too, as Basic password or token, and answers PREVIOUS_SECRET', async (t) => {
  const PREVIOUS = 'the-old-callback-secret';
  const check = callbackGuard({ EXOTEL_CALLBACK_SECRET: SECRET, EXOTEL_CALLBACK_SECRET_PREVIOUS: PREVIOUS, EXOTEL_ALLOWED_CIDRS: [] });
  let reads = 0;
  const token = (value: string | undefined) => () => {
    reads++;
    return value;
  };
  t.equal(check('127.0.0.1', basic(`u:${SECRET}`), token(PREVIOUS)), null, 'the current one: null, the token not read');
  t.equal(check('127.0.0.1', undefined, token(SECRET)), null, 'the current one as token');
  t.equal(check('127.0.0.1', basic(`u:${PREVIOUS}`), token('ignored')), PREVIOUS_SECRET, 'the previous one as Basic password');
  t.equal(reads, 1, 'a matching previous Basic password does not read the token');
  t.equal(check('127.0.0.1', basic('u:wrong'), token(PREVIOUS)), PREVIOUS_SECRET, 'the previous one as token');
  t.equal(check('127.0.0.1', basic(`u:${PREVIOUS}`), token(SECRET)), PREVIOUS_SECRET, 'the Basic password is taken first, as for the current one');
  for (const wrong of [`${PREVIOUS.slice(0, -1)}X`, 'a-third-secret-value', `${PREVIOUS}x`]) {
    t.same(check('127.0.0.1', basic(`u:${wrong}`), token(wrong)), WRONG_SECRET, wrong);
  }
  const withoutCurrent = callbackGuard({ EXOTEL_CALLBACK_SECRET: undefined, EXOTEL_CALLBACK_SECRET_PREVIOUS: PREVIOUS, EXOTEL_ALLOWED_CIDRS: [] });
  t.equal(withoutCurrent('127.0.0.1', undefined, noToken), null, 'no current secret: open, the previous one meaningless');
});

t.test('non-ASCII secrets; a password that is not UTF-8 is compared as its decoding, as before', async (t) => {
  const check = guardFor('pässwörd-ॐ-😀');
  t.equal(check('127.0.0.1', basic('u:pässwörd-ॐ-😀'), noToken), null);
  t.equal(
    check('127.0.0.1', undefined, () => 'pässwörd-ॐ-😀'),
    null,
  );
  t.same(check('127.0.0.1', basic('u:passwoerd-x-ab'), noToken), WRONG_SECRET);
  // Undecodable bytes read as U+FFFD, so they match a secret that has U+FFFD in their place.
  const replaced = guardFor('pass\ufffdword');
  const bytes = Buffer.concat([Buffer.from('u:pass'), Buffer.from([0xff]), Buffer.from('word')]);
  t.equal(replaced('127.0.0.1', basic(bytes), noToken), null);
  t.same(guardFor('pass\u00ffword')('127.0.0.1', basic(bytes), noToken), WRONG_SECRET);
});

t.test('property: a Basic header is accepted exactly when its decoded password equals the secret', async (t) => {
  const secrets = ['s3cret-callback-value', 'pässwörd-ॐ-😀', 'pass\ufffdword', 'x'.repeat(200)];
  // The definition the guard implements: decode the header as UTF-8, take what follows the first colon.
  const expected = (secret: string, payload: Buffer) => {
    const decoded = payload.toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 && decoded.slice(colon + 1) === secret;
  };
  const payload = fc.oneof(
    fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
    fc
      .tuple(fc.string({ maxLength: 8 }), fc.constantFrom(...secrets), fc.uint8Array({ maxLength: 3 }), fc.boolean())
      .map(([user, s, noise, exact]) =>
        Buffer.concat([Buffer.from(`${user.replaceAll(':', '')}:`), Buffer.from(s), exact ? Buffer.alloc(0) : Buffer.from(noise)]),
      ),
  );
  let accepted = 0;
  fc.assert(
    fc.property(fc.constantFrom(...secrets), payload, (secret, bytes) => {
      const ok = guardFor(secret)('127.0.0.1', basic(bytes), noToken) === null;
      if (ok) accepted++;
      return ok === expected(secret, bytes);
    }),
    { seed: SEED, numRuns: 2000 },
  );
  t.ok(accepted > 0, `${accepted} of the generated headers were accepted`);
});

t.test('EXOTEL_ALLOWED_CIDRS: 403 outside, IPv4-mapped addresses checked as IPv4; no secret, no 401', async (t) => {
  const check = guardFor(undefined, ['10.1.0.0/16', '2001:db8::/32', '192.0.2.7']);
  for (const ip of ['10.1.2.3', '::ffff:10.1.2.3', '2001:db8::1', '192.0.2.7', '::ffff:192.0.2.7']) t.equal(check(ip, undefined, noToken), null, ip);
  for (const ip of ['127.0.0.1', '::ffff:127.0.0.1', '::1', '10.2.0.1', '192.0.2.8']) {
    t.same(check(ip, undefined, noToken), { status: 403, reason: `source address ${ip} is not in EXOTEL_ALLOWED_CIDRS` }, ip);
  }
  const both = guardFor(SECRET, ['10.1.0.0/16']);
  t.match(both('127.0.0.1', basic(`u:${SECRET}`), noToken), { status: 403 }, 'the address is checked first');
  t.same(both('10.1.0.9', undefined, noToken), WRONG_SECRET);
  t.equal(guardFor(undefined)('203.0.113.1', undefined, noToken), null, 'neither configured: open');
});
