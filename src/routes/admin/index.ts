import type { FastifyPluginAsync } from 'fastify';
import auth from '../../plugins/auth.js';
import rulesWritten from '../../plugins/rules-written.js';
import { DomainError } from '../../errors.js';
import { ErrorSchema } from '../../schemas/common.js';
import apiKeys from './api-keys/index.js';
import audit from './audit/index.js';
import vipLists from './vip-lists/index.js';
import schedules from './schedules/index.js';
import flows from './flows/index.js';
import dialGroups from './dial-groups/index.js';
import cdrs from './cdrs/index.js';
import agents from './agents/index.js';
import refusals from './refusals/index.js';
import { InvalidFieldError } from '../../errors.js';

/**
 * Where the first character Postgres cannot store is in a request part (`body/rules/0/name`), and
 * which: a NUL, which text and jsonb cannot hold, or a lone surrogate (JSON `"\ud800"`), which
 * jsonb refuses and text turns into U+FFFD; either would fail the write or query as a 500, or
 * store another text than sent. A loop, not recursion: a body may be nested deeper than the stack
 * allows.
 */
function unstorableAt(value: unknown, part: string): { at: string; nul: boolean } | null {
  const stack: Array<[unknown, string]> = [[value, part]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return { at: path, nul: true };
      if (!v.isWellFormed()) return { at: path, nul: false };
    } else if (typeof v === 'object' && v !== null) {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i]!;
        if (key.includes('\u0000')) return { at: `${path}/${key.replaceAll('\u0000', '\\u0000')}`, nul: true };
        if (!key.isWellFormed()) return { at: `${path}/${key.toWellFormed()}`, nul: false };
        stack.push([child, `${path}/${key}`]);
      }
    }
  }
  return null;
}

/** A NUL or a surrogate, which JSON can only carry escaped (raw, they are not UTF-8). */
const UNSTORABLE_ESCAPE = /\\u(0000|d[89a-f])/i;
/** Requests whose JSON body has no NUL nor lone surrogate (a 10,000-entry VIP import is not walked for one). */
const nulFree = new WeakSet<object>();

/**
 * A body that is no JSON, said as a 400 with where (line, column) and the likely fix, instead of
 * Fastify's bare "Body is not valid JSON". The body itself is not echoed (it may hold anything).
 */
function invalidJson(text: string, original: Error): Error {
  let reason: string;
  try {
    JSON.parse(text);
    return original; // parsed, so refused for another reason (prototype poisoning): Fastify's word
  } catch (e) {
    reason = (e as Error).message;
  }
  const position = /at position (\d+)/.exec(reason)?.[1];
  // Node's wording without the body it quotes or the position, said below as line and column.
  const what = reason
    .replace(/, ".*" is not valid JSON$/s, '')
    .replace(/ in JSON at position \d+.*$/s, '')
    .replace(/ is not valid JSON$/, '');
  let where = '';
  let fix = 'check for a trailing comma, single quotes instead of double quotes, or a missing comma, quote or bracket';
  if (position !== undefined) {
    const at = Number(position);
    const before = text.slice(0, at).split('\n');
    where = ` at line ${before.length}, column ${before.at(-1)!.length + 1}`;
    if (/^\s*[}\]]/.test(text.slice(at)) && /,\s*$/.test(text.slice(0, at))) fix = 'remove the trailing comma before it';
    else if (text[at] === "'") fix = 'JSON takes names and strings in double quotes ("slug"), not single quotes';
  }
  return new DomainError(400, `body: is not valid JSON${where}: ${what}; ${fix}`);
}

/** JSON's one encoding (RFC 8259), read strictly: a byte that is not UTF-8 is refused, not replaced. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A JSON body that is not UTF-8 (a file saved by Excel or Notepad as Windows-1252, Latin-1): read
 * loosely, `José` became `Jos\uFFFD` and was stored so, without a word. Said by its first line that
 * is not, without echoing the body.
 */
function notUtf8(body: Buffer): Error {
  const loose = body.toString('utf8');
  const at = loose.indexOf('\uFFFD');
  const where = at < 0 ? '' : ` (line ${loose.slice(0, at).split('\n').length})`;
  return new DomainError(
    400,
    `body: is not UTF-8${where}, the encoding JSON is sent in: convert it (a file saved as Windows-1252 or Latin-1: iconv -f WINDOWS-1252 -t UTF-8), or send the characters as \\u escapes`,
  );
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route also reads a `text/csv` body (a VIP list's entries): its 415 says so. */
    takesCsv?: boolean;
  }
}

/** Admin REST resources, mounted under /admin, every one behind the auth plugin. */
const admin: FastifyPluginAsync = async (app) => {
  // Keys, CDRs and exotelUrls (with the callback secret) must not be kept by a browser's disk cache
  // or a proxy: every answer, refusals included (set before auth, whose refusals end the request).
  app.addHook('onRequest', (_request, reply, done) => {
    reply.header('cache-control', 'no-store');
    done();
  });
  await app.register(auth);
  await app.register(rulesWritten);
  // curl users send `Content-Type: application/json` out of habit, also on a DELETE or GET without
  // a body: an empty body is no body. Anything else goes to Fastify's own parser (prototype
  // poisoning refused as before).
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string;
    try {
      text = UTF8.decode(body as Buffer);
    } catch {
      return done(notUtf8(body as Buffer), undefined);
    }
    if (text.trim() === '') return done(null, undefined);
    // JSON can only carry a NUL or a surrogate escaped: without `\u0000` or `\ud800`-`\udfff`
    // in the text, the body need not be walked.
    if (!UNSTORABLE_ESCAPE.test(text)) nulFree.add(request);
    return json(request, text, (err, value) =>
      done((err as { code?: string } | null)?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? invalidJson(text, err!) : err, value),
    );
  });
  app.addHook('preValidation', async (request) => {
    const found =
      unstorableAt(request.params, 'params') ??
      unstorableAt(request.query, 'querystring') ??
      (nulFree.has(request) ? null : unstorableAt(request.body, 'body'));
    if (found?.nul) throw new InvalidFieldError(found.at, 'must not contain a NUL character (\\u0000), which cannot be stored; remove it');
    if (found) {
      throw new InvalidFieldError(
        found.at,
        'must not contain a lone surrogate (a \\ud800-\\udfff escape without its pair), which is no character and cannot be stored; remove it, or send the character whole',
      );
    }
    // A path without query parameters ignored any sent (`?dryRun=true` on a PUT, `?force=1` on a
    // DELETE): the write was made as if it were not there. Unknown fields are a 400, here too.
    if (!request.routeOptions.schema?.querystring) {
      const [key] = Object.keys(request.query as object);
      if (key !== undefined) throw new InvalidFieldError(`querystring/${key}`, 'unknown field; remove it (this path takes no query parameters)');
    }
  });
  // Any other content type is no JSON body: curl's `-d` without the JSON header sends a form, which
  // would be read as one odd field (and answered `body/slug: is required`). An empty body is no body.
  app.removeContentTypeParser(['application/x-www-form-urlencoded', 'text/plain']);
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (String(body).trim() === '') return done(null, undefined);
    const type =
      String(request.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim() || 'no content type';
    const wanted = request.routeOptions.config.takesCsv
      ? 'JSON or CSV: send it with Content-Type: application/json or text/csv'
      : 'JSON: send it with Content-Type: application/json';
    return done(new DomainError(415, `the body must be ${wanted} (it came as ${type})`), undefined);
  });
  app.addHook('onRoute', (route) => {
    if (route.schema?.body && route.schema.response) {
      route.schema.response = {
        415: {
          ...ErrorSchema,
          description: (route.config as { takesCsv?: boolean } | undefined)?.takesCsv
            ? 'The body is not sent as JSON or CSV: send it with `Content-Type: application/json` or `text/csv`'
            : 'The body is not sent as JSON: send it with `Content-Type: application/json`',
        },
        ...route.schema.response,
      };
    }
  });
  await app.register(apiKeys);
  await app.register(audit);
  await app.register(vipLists);
  await app.register(schedules);
  await app.register(dialGroups);
  await app.register(agents);
  await app.register(flows);
  await app.register(cdrs);
  await app.register(refusals);
};
export default admin;
