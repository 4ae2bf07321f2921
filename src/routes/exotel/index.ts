import { performance } from 'node:perf_hooks';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Type, type TSchema } from '@sinclair/typebox';
import { CALLBACK_SECURITY, CallbackParamsSchema, DialEventParamsSchema } from '../../schemas/exotel-params.js';
import { collectParams, parseExotelCall, SIP_USER, type ExotelCall } from '../../exotel/params.js';
import { answerCallback, CALL_SID_MISSING, callSidProblem, rejected, type CallbackResult } from '../../routing/callback.js';
import { errorAnswer, type CallbackAnswer } from '../../exotel/responses.js';
import { newIdempotencyKey, type CdrRecord } from '../../store/cdr-writer.js';
import { ErrorSchema, RETRY_AFTER_HEADERS } from '../../schemas/common.js';
import { callbackGuard, PREVIOUS_SECRET } from './guard.js';
import { AttemptCounter } from './attempts.js';
import { agentEvent, eventPacing } from '../../routing/dial/event.js';
import { busyExpiredAt } from '../../routing/agents.js';
import { DeadlineExceeded, withDeadline } from '../../lib/deadline.js';
import { Tally } from '../../lib/tally.js';
import { recordDialEvent } from '../../store/dial-state.js';
import { CONNECT_VERSION } from '../../exotel/connect.js';
import { applyOwnAvailability } from '../../routing/own-availability.js';
import { writeAvailability } from '../../store/agents.js';
import {
  CALLBACK_PREFIX,
  FLOW_ENDPOINTS,
  LOWERCASE_URLS,
  endpointNamed,
  isDialEndpoint,
  type CallbackEndpoint,
  type FlowEndpoint,
} from '../../exotel/endpoints.js';
import { ConfigSchema, SPOOL_RESERVE_MS } from '../../config.js';
import { parserRefusal } from '../../plugins/error-handler.js';
import { bodyText, type BodyText, type UnknownCharsetError } from '../../exotel/body-text.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Refuses a request under /exotel with its CDR, like any refused callback (see `callbacks`). */
    refuseCallback(request: FastifyRequest, reply: FastifyReply, status: number, message: string): FastifyReply | Promise<FastifyReply>;
    /** The same for a callback Node's HTTP parser refused, of which only the request line (and maybe headers) could be read. */
    refuseUnparsedCallback(
      log: FastifyBaseLogger,
      request: UnparsedCallback,
      status: number,
      message: string,
    ): Promise<CallbackAnswer & { retryAfter?: number }>;
  }
}

/** What can be read of a request Node's HTTP parser refused: the source address, the request target, and `Authorization` if it came whole. */
export interface UnparsedCallback {
  ip: string;
  url: string;
  authorization: string | undefined;
}

const SECRET_KEYS = ['token'];
/** The methods Exotel calls back with; any other on an endpoint's path is 405. */
const CALLBACK_METHODS = ['GET', 'POST'] as const;
/** An endpoint's path, as the routes below serve it: `/exotel/<endpoint>/<flow>` or `/exotel/dial-events`. */
const ENDPOINT_PATH = new RegExp(`^${CALLBACK_PREFIX}/(?:(?:${FLOW_ENDPOINTS.join('|')})/[^/]+|dial-events)$`);
/** A 401's `WWW-Authenticate`: the secret is the HTTP Basic password (or the `token` parameter, which no scheme names). */
const CALLBACK_CHALLENGE = 'Basic realm="exoroute callbacks", charset="UTF-8"';
const CALLBACK_BODY_LIMIT = 64 * 1024;
/**
 * Longest text kept in an indexed CDR column (call_sid, flow_slug, dial_whom_number). Postgres
 * refuses an index entry over ~2.7 kB, and a refused row holds back the CDRs batched with it; any
 * caller, refused ones too, can send such a value. Exotel's are far shorter; `params` keeps the whole.
 */
const MAX_INDEXED_CHARS = 200;
/** Why a callback URL that ends in '/' is refused: the flow's `exotelUrls` have none. */
const TRAILING_SLASH = `the URL ends in '/': remove it (${CALLBACK_PREFIX}/<endpoint>/<flow>, as the flow's exotelUrls give it)`;
/** A callback's CDR warning, and its flow's log line, when it carried EXOTEL_CALLBACK_SECRET_PREVIOUS. */
const PREVIOUS_SECRET_USED =
  "authenticated with EXOTEL_CALLBACK_SECRET_PREVIOUS: give this flow's applet in Exotel the URL in its exotelUrls, which carries EXOTEL_CALLBACK_SECRET";
/** Most unknown Exotel-Version values logged once each per process: a caller could send any number. */
const MAX_VERSIONS_WARNED = 20;
/** Whether `key` is new to `seen` (and now in it), up to MAX_VERSIONS_WARNED keys: a caller could send any number. */
const firstOf = (seen: Set<string>, key: string) => !seen.has(key) && seen.size < MAX_VERSIONS_WARNED && seen.add(key) !== undefined;

function indexable(s: string | null): string | null {
  if (s === null || s.length <= MAX_INDEXED_CHARS) return s;
  const cut = s.slice(0, MAX_INDEXED_CHARS);
  return `${/[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut}…`;
}

/**
 * The flow a callback's path names, as it is looked up, stored, logged and echoed in a refusal: a
 * secret pasted into the path (`…/passthru/inbound&token=…` instead of `?token=`) is not kept.
 */
function flowOfPath(raw: string, secrets: Secrets): string {
  let flow = raw.replace(/(token=)[^&?]*/gi, '$1[redacted]');
  for (let i = 0; i < secrets.plain.length; i++) flow = flow.replaceAll(secrets.plain[i]!, '[redacted]').replaceAll(secrets.encoded[i]!, '[redacted]');
  return indexable(flow)!;
}

/** EXOTEL_CALLBACK_SECRET (first) and EXOTEL_CALLBACK_SECRET_PREVIOUS, as sent and URL-encoded (encoded once, not per callback). */
interface Secrets {
  plain: string[];
  encoded: string[];
}

/**
 * The parameters as a CDR stores them: `token` is already gone (parseExotelCall), and here the
 * secret is cut out wherever else it is, in a key or a value: a caller that sends it under another
 * name (`secret=…`, `key=…`, a bare `?<secret>`) is refused, and its CDR keeps its parameters.
 */
function paramsWithoutSecret(raw: Record<string, string>, secrets: string[]): Record<string, string> {
  if (secrets.length === 0 || !holdsSecret(raw, secrets)) return raw;
  const redact = (text: string) => secrets.reduce((shown, secret) => shown.replaceAll(secret, '[redacted]'), text);
  const clean: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [key, value] of Object.entries(raw)) clean[redact(key)] = redact(value);
  return clean;
}

/** Whether a key or value holds a secret: a plain loop, as every CDR asks it (no entries array or closure per parameter). */
function holdsSecret(raw: Record<string, string>, secrets: string[]): boolean {
  for (const key in raw) {
    const value = raw[key]!;
    for (const secret of secrets) if (key.includes(secret) || value.includes(secret)) return true;
  }
  return false;
}

function cdrOf(opts: {
  endpoint: CallbackEndpoint | 'unknown';
  flowSlug: string | null;
  call: ExotelCall;
  result: CallbackResult;
  receivedAt: Date;
  handlingMs: number;
  attempt: number;
  /** EXOTEL_CALLBACK_SECRET, and EXOTEL_CALLBACK_SECRET_PREVIOUS during a rotation. */
  secrets: Secrets;
}): CdrRecord {
  const { call, result } = opts;
  // Connect answers carry the (current) secret in dial_passthru_event_url; it is never stored.
  const current = opts.secrets.encoded[0];
  const body = current ? result.answer.body.replaceAll(current, '[redacted]') : result.answer.body;
  const d = result.decision;
  return {
    receivedAt: opts.receivedAt,
    endpoint: opts.endpoint,
    flowSlug: opts.flowSlug, // as flowOfPath made it
    callSid: indexable(call.callSid),
    callFrom: call.callFrom?.e164 ?? null,
    callFromRaw: call.callFrom?.raw ?? null,
    callTo: call.callTo?.e164 ?? null,
    callToRaw: call.callTo?.raw ?? null,
    direction: call.direction,
    callStatus: call.callStatus,
    callType: call.callType,
    digits: call.digits,
    customField: call.customField,
    dialCallStatus: call.dialCallStatus,
    dialWhomNumber: indexable(call.dialWhomNumber?.e164 ?? call.dialWhomNumber?.raw ?? null),
    legs: call.legs.length > 0 ? call.legs : null,
    params: paramsWithoutSecret(call.raw, opts.secrets.plain),
    decision: d
      ? {
          action: d.action,
          decidedBy: d.decidedBy,
          trace: d.trace,
          ...(d.availability ? { availability: d.availability } : {}),
          ...(d.dial ? { dial: d.dial } : {}),
          ...(call.warnings.length ? { warnings: call.warnings } : {}),
        }
      : call.warnings.length
        ? { warnings: call.warnings }
        : null,
    matchedRule: d?.matchedRule ?? null,
    outcome: result.outcome,
    reason: result.reason,
    httpStatus: result.answer.statusCode,
    responseBody: body,
    handlingMs: opts.handlingMs,
    attempt: opts.attempt,
    idempotencyKey: newIdempotencyKey(),
  };
}

function queryOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q + 1);
}

/**
 * Why a request's body gave none of its parameters, when it plainly carried some: a multipart body
 * (Postman's form-data, `curl -F`), or JSON sent without its content type (`curl -d '{…}'`). Said
 * in a refusal for a missing parameter; Exotel itself sends a query string or a form.
 */
function unreadBody(request: FastifyRequest): string | null {
  const body = bodyOf(request);
  if (body === undefined) return null;
  const type = shownType((request.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase());
  if (type.startsWith('multipart/')) {
    return `a ${type} body is not read; send the parameters as application/x-www-form-urlencoded (as Exotel does), JSON or in the query string`;
  }
  if (!/json/.test(type) && body.trimStart().startsWith('{')) {
    return `the body is JSON but its Content-Type is ${type || 'missing'}; send Content-Type: application/json (or a form, as Exotel does)`;
  }
  if (/json/.test(type) && !body.trimStart().startsWith('{')) {
    return `the body is not JSON but its Content-Type is ${type}; send a form as application/x-www-form-urlencoded (as Exotel does), or a JSON object`;
  }
  return null;
}

/** A POST body's text (src/exotel/body-text.ts), when it has one. */
function bodyOf(request: FastifyRequest): string | undefined {
  const text = (request.body as BodyText | undefined)?.text;
  return text ? text : undefined;
}

/** Longest part of a request's Content-Type a refusal repeats: the header may be up to Node's 16 KiB. */
const MAX_SHOWN_TYPE = 100;
const shownType = (type: string) => (type.length > MAX_SHOWN_TYPE ? `${type.slice(0, MAX_SHOWN_TYPE)}…` : type);

/** The 415 for a body whose Content-Type Fastify cannot read as a media type (empty, or no `type/subtype`). */
function unsupportedType(request: FastifyRequest): string {
  const type = String(request.headers['content-type'] ?? '').trim();
  const what = type ? `${JSON.stringify(shownType(type))} is no media type` : 'is empty';
  return `the body's Content-Type ${what}; send the parameters as application/x-www-form-urlencoded (as Exotel does), JSON or in the query string`;
}

/** What the flow endpoints read, for their descriptions in the OpenAPI document. */
const decides =
  "The flow decides from CallFrom (VIP lists, caller prefixes), CallTo, Direction, digits, CustomField and DialCallStatus, at exoroute's own clock (schedules).";
const dials = `${decides} On a re-fetch, DialWhomNumber and Legs[i][Number] say who was tried: they are not offered again.`;
/**
 * The parameters, in the OpenAPI document only: for GET as the query string, for POST as the
 * body. No route validates them (src/exotel/params.ts reads whatever comes).
 */
const documented = (method: 'GET' | 'POST', params: TSchema) => ({
  swaggerTransform: ({ schema, url }: { schema: object; url: string }) => ({
    url,
    schema:
      method === 'GET' ? { ...schema, querystring: params } : { ...schema, body: params, consumes: ['application/x-www-form-urlencoded', 'application/json'] },
  }),
});

/** An answer sent as `text/plain`, for the OpenAPI document (the body goes out as it is, unserialized). */
const plainText = (description: string) => ({ description, content: { 'text/plain': { schema: Type.String({ description }) } } });

/** What each callback endpoint answers with 200 (and 302), its summary and what it reads, for the OpenAPI document. */
const ANSWERS: Record<FlowEndpoint, { summary: string; reads: string; ok: Record<number, TSchema | ReturnType<typeof plainText>> }> = {
  passthru: {
    summary: 'Passthru applet: branch A (200), branch B (302), or a URL (200 text/plain)',
    reads: `${decides} In the applet choose sync; an async flow answers 200 at once.`,
    ok: { 200: plainText('Branch A (empty body), or the URL to continue with'), 302: plainText('Branch B (empty body)') },
  },
  switch: {
    summary: 'Switch-case applet: 200 text/plain {"select":"<case>"}',
    reads: `${decides} Point a Passthru applet here and follow it with a Switch-case applet whose cases are the flow's \`select\` values.`,
    ok: { 200: plainText('{"select":"<case>"}') },
  },
  'dial-whom': {
    summary: 'Connect applet Dial Whom: 200 text/plain, comma-separated E.164 numbers (empty: nobody left)',
    reads: `${dials} Check "fetch numbers after every attempt" in the applet.`,
    ok: { 200: plainText('e.g. +919812345678,+919812345679') },
  },
  connect: {
    summary: 'Connect applet dynamic parameters: 200 application/json, version 1.0',
    reads: `${dials} The Exotel-Version header (1.0) is read; another version is logged and answered as 1.0.`,
    ok: {
      200: Type.Object(
        {},
        {
          additionalProperties: true,
          description: 'Connect parameters v1.0: destination.numbers, record, recording_channels, max_ringing_duration, …, dial_passthru_event_url',
        },
      ),
    },
  },
};

/** A POST body over CALLBACK_BODY_LIMIT: refused, with its CDR. */
const TOO_LARGE = { ...ErrorSchema, description: `The body is larger than ${CALLBACK_BODY_LIMIT / 1024} KiB (still a CDR)` };

/** A request line and headers over Node's limit (a long query string): refused before any route, still a CDR. */
const HEADERS_TOO_LARGE = {
  ...ErrorSchema,
  description: "The request line and headers, the query string included, are larger than Node's 16 KiB limit: send the parameters in a POST body (still a CDR)",
};

/** A request that did not arrive whole within REQUEST_TIMEOUT_SECONDS (src/app.ts): refused by Node, still a CDR. */
const TOO_SLOW = {
  ...ErrorSchema,
  description: `The request did not arrive whole within REQUEST_TIMEOUT_SECONDS (default ${ConfigSchema.properties.REQUEST_TIMEOUT_SECONDS.default}): the connection is closed (still a CDR)`,
};

/** A body whose Content-Type is no media type, or names a charset no decoder knows: refused, still a CDR. */
const UNSUPPORTED_TYPE = {
  ...ErrorSchema,
  description: 'A body whose Content-Type is empty, no media type, or names an unknown charset: send a form in UTF-8, as Exotel does (still a CDR)',
};

/** An address past the refusals it may make a minute: answered without a CDR (counted in GET /admin/refusals). */
const THROTTLED = {
  ...ErrorSchema,
  description:
    'Too many refused callbacks (a missing or wrong secret, an address outside EXOTEL_ALLOWED_CIDRS) from this address this minute: retry after `Retry-After` seconds. Counted (GET /admin/refusals), without a CDR',
  headers: RETRY_AFTER_HEADERS,
};

/** Right after a start, before the first rules snapshot is loaded (GET /readyz is 503 until then). */
const NOT_READY = { ...ErrorSchema, description: 'The routing rules are not loaded yet, just after a start (GET /readyz is 503 meanwhile); still a CDR' };

/** `dial-whom` → `dialWhom`, for operation ids. */
const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * Exotel's callback endpoints, in their own context under /exotel: no security headers, query
 * parsing or request log line of the admin context. Each one: parse → snapshot lookup → decide →
 * CDR (committed before the answer leaves) → answer. Every callback that passes the guard leaves
 * exactly one CDR; of the ones the guard refuses, only a few per source address and minute do, and
 * all are counted. `app.refuseCallback` does the same for the refusals app.ts's `frameworkErrors`
 * makes outside any context.
 */
export default fp(
  async function callbacks(app: FastifyInstance) {
    const { config, cdrWriter, rules, refusals } = app;
    const check = callbackGuard(config);
    /** The guard's verdict: `refused` (null: let in), and whether EXOTEL_CALLBACK_SECRET_PREVIOUS let it in. */
    const guard = (ip: string, authorization: string | undefined, token: () => string | undefined) => {
      const checked = check(ip, authorization, token);
      return checked === PREVIOUS_SECRET ? { refused: null, previous: true } : { refused: checked, previous: false };
    };
    /** What is redacted from a CDR and a log line: the secret, and during a rotation the previous one too (never both unset and one set). */
    const plain = [config.EXOTEL_CALLBACK_SECRET, config.EXOTEL_CALLBACK_SECRET_PREVIOUS].filter((s): s is string => s !== undefined);
    const secrets: Secrets = { plain, encoded: plain.map((s) => encodeURIComponent(s)) };
    const attempts = new AttemptCounter(100_000);
    // Every wait on a callback's way (the availability write, a dial event's write, the CDR's commit;
    // the dial state's in answerDial) ends this long after receipt, less the time already spent: the
    // rest of the budget is kept for the CDR's fsync to the spool.
    const beforeReserveMs = config.DECISION_BUDGET_MS - SPOOL_RESERVE_MS;
    // Dial events Postgres did not take: every event's CDR says so; the log, during an outage, one
    // line a second (with how many since the last), not one per event.
    const agentStateFailures = new Tally();
    /** The unknown Exotel-Version values already logged (a caller could send any number of them: bounded). */
    const versionsWarned = new Set<string>();
    /** The flows whose Dial Whom URL Connect's dynamic URL field was given, already logged (only flows that exist: bounded by them). */
    const dialWhomAsConnectWarned = new Set<string>();
    /** The flows called back with EXOTEL_CALLBACK_SECRET_PREVIOUS, already logged (only flows that exist: bounded by them). */
    const previousSecretWarned = new Set<string>();
    function agentStateNotUpdated(request: FastifyRequest, err: unknown, callSid: string | null) {
      const eventsFailed = agentStateFailures.add();
      if (eventsFailed > 0) request.log.error({ err, callSid, eventsFailed }, 'agent state not updated');
    }

    /**
     * Stores a callback's CDR (before its answer leaves), logs its line and observes it in the
     * metrics. `loggedFlow`: the flow the log line names, when the CDR has none (a dial event's URL names it).
     */
    async function record(
      log: FastifyBaseLogger,
      endpoint: CallbackEndpoint | 'unknown',
      flowSlug: string | null,
      call: ExotelCall,
      result: CallbackResult,
      t0: number,
      receivedAt: Date,
      loggedFlow = flowSlug,
    ) {
      const attempt = call.callSid ? attempts.next(`${endpoint}|${flowSlug}|${call.callSid}`) : 1;
      const cdr = cdrOf({ endpoint, flowSlug, call, result, receivedAt, handlingMs: performance.now() - t0, attempt, secrets });
      // Committed, or fsynced to the local spool when Postgres does not take it in time; either way
      // before the answer leaves, and early enough that the answer stays within the budget.
      const deadline = Math.min(config.CDR_WRITE_TIMEOUT_MS, beforeReserveMs - (performance.now() - t0));
      try {
        await cdrWriter.write(cdr, deadline);
      } catch (err) {
        // Neither Postgres nor the spool took it (disk full?): the caller is waiting, answer anyway.
        log.error({ err, callSid: call.callSid }, 'CDR not stored');
      }
      const latencyMs = performance.now() - t0;
      const line: Record<string, unknown> = {
        callSid: call.callSid,
        endpoint,
        flow: loggedFlow,
        outcome: result.outcome,
        status: result.answer.statusCode,
        rule: cdr.matchedRule,
        latencyMs: Math.round(latencyMs * 100) / 100,
      };
      // Why it was refused or answered onError (a wrong secret, a missing CallSid, an unknown flow), as its CDR says.
      if (result.reason !== null) line.reason = result.reason;
      log.info(line, 'callback');
      app.metrics.observeCallback(endpoint, result.outcome, latencyMs / 1000);
    }

    /** Sends a callback's answer; a 401 with the challenge for the secret, as RFC 9110 requires of every 401. */
    function answerWith(reply: FastifyReply, answer: CallbackAnswer) {
      reply.code(answer.statusCode);
      if (answer.contentType) reply.type(answer.contentType);
      // Some HTTP clients send the password of a URL (`https://exotel:SECRET@host/…`) only once challenged.
      if (answer.statusCode === 401) reply.header('www-authenticate', CALLBACK_CHALLENGE);
      return reply.send(answer.body);
    }

    function parse(request: FastifyRequest): ExotelCall {
      const body = bodyOf(request);
      let json: unknown;
      let form: string | undefined;
      const warnings: string[] = [];
      const notUtf8 = (request.body as BodyText | undefined)?.warning;
      if (notUtf8) warnings.push(notUtf8);
      if (body !== undefined) {
        if (/json/i.test(request.headers['content-type'] ?? '')) {
          try {
            json = JSON.parse(body);
          } catch {
            warnings.push('request body is not valid JSON; ignored');
          }
        } else {
          form = body;
        }
      }
      const collected = collectParams({ query: queryOf(request.url), ...(form !== undefined ? { form } : {}), ...(json !== undefined ? { json } : {}) });
      return parseExotelCall(collected.params, {
        defaultCountry: config.DEFAULT_COUNTRY,
        secretKeys: SECRET_KEYS,
        warnings: [...warnings, ...collected.warnings],
      });
    }

    /**
     * Counts a refusal by the guard (src/store/refusals.ts). Its address's first ones of the minute
     * are stored as CDRs like any callback (null: carry on); past that the refusal is answered here,
     * without a CDR or a log line, and with 429 once the address is throttled. Callbacks the guard
     * lets through never come here.
     */
    function countedOnly(request: FastifyRequest, reply: FastifyReply, refused: { status: number }, answer: CallbackAnswer) {
      const handling = refusals.note(request.ip, refused.status === 403 ? 'address' : 'secret');
      if (handling === 'cdr') return null;
      if (handling === 'throttled') {
        answer = errorAnswer(429, 'too many refused callbacks from this address; retry after Retry-After seconds');
        reply.header('retry-after', String(refusals.retryAfterSeconds()));
      }
      return answerWith(reply, answer);
    }

    /**
     * The guard's verdict on a request, and `counted`: the reply already sent when its refusal is only
     * counted (countedOnly), with `answer` (the guard's refusal when absent).
     */
    function admit(request: FastifyRequest, reply: FastifyReply, answer?: () => CallbackAnswer) {
      const { refused, previous } = guard(request.ip, request.headers.authorization, () => tokenOf(request));
      const counted = refused && countedOnly(request, reply, refused, answer?.() ?? errorAnswer(refused.status, refused.reason));
      return { refused, previous, counted };
    }

    /**
     * Answers a refusal made before (or instead of) a callback handler, with its CDR: Fastify's own
     * (body too large, broken stream), an unknown path, a URL the router cannot decode.
     */
    function refuse(request: FastifyRequest, reply: FastifyReply, status: number, message: string) {
      const t0 = performance.now();
      // From a caller the guard refuses, it is unauthenticated traffic like any other: bounded.
      const { counted } = admit(request, reply, () => errorAnswer(status, message));
      if (counted) return counted;
      const call = parseExotelCall(collectParams({ query: queryOf(request.url) }).params, { defaultCountry: config.DEFAULT_COUNTRY, secretKeys: SECRET_KEYS });
      // From the route when one matched, else from the raw path (/exotel/<endpoint>/<flow>).
      const segments = request.url.split('?', 1)[0]!.split('/');
      const routed = request.routeOptions.url?.split('/')[2];
      const endpoint = endpointNamed(routed ?? segments[2]);
      const named = (request.params as { flow?: string } | undefined)?.flow ?? (routed ? null : segments[3] || null);
      const flow = named === null ? null : flowOfPath(named, secrets);
      const result = rejected(status, message);
      return record(request.log, endpoint, flow, call, result, t0, new Date()).then(() => answerWith(reply, result.answer));
    }

    app.decorate('refuseCallback', refuse);

    /**
     * A callback Node's HTTP parser refused, of which the request line was read (app.ts's
     * `clientErrors`): its CDR, as for any refusal (from a caller the guard refuses, bounded and
     * counted), and the answer to write; 429 with `retryAfter` once the address is throttled.
     */
    async function refuseUnparsed(log: FastifyBaseLogger, request: UnparsedCallback, status: number, message: string) {
      const t0 = performance.now();
      const receivedAt = new Date();
      const answer: CallbackAnswer & { retryAfter?: number } = errorAnswer(status, message);
      const query = queryOf(request.url);
      const { refused } = guard(request.ip, request.authorization, () => new URLSearchParams(query).get('token') ?? undefined);
      if (refused) {
        const handling = refusals.note(request.ip, refused.status === 403 ? 'address' : 'secret');
        if (handling === 'throttled') {
          return {
            ...errorAnswer(429, 'too many refused callbacks from this address; retry after Retry-After seconds'),
            retryAfter: refusals.retryAfterSeconds(),
          };
        }
        if (handling === 'counted') return answer;
      }
      const call = parseExotelCall(collectParams({ query }).params, { defaultCountry: config.DEFAULT_COUNTRY, secretKeys: SECRET_KEYS });
      const segments = request.url.split('?', 1)[0]!.split('/');
      const flow = segments[3] ? flowOfPath(segments[3], secrets) : null;
      await record(log, endpointNamed(segments[2]), flow, call, rejected(status, message), t0, receivedAt);
      return answer;
    }

    app.decorate('refuseUnparsedCallback', refuseUnparsed);

    const { answerDial } = app;
    const handler = (endpoint: FlowEndpoint) =>
      async function callback(request: FastifyRequest<{ Params: { flow: string } }>, reply: FastifyReply) {
        const t0 = performance.now();
        const receivedAt = new Date();
        const { refused, previous, counted } = admit(request, reply);
        if (counted) return counted;
        const call = parse(request);
        const flowSlug = flowOfPath(request.params.flow, secrets);
        if (previous) {
          // Mid-rotation: this applet's URL still has the old secret. Its CDR says so; the log, once per
          // flow, for every flow there is (the operator edits each: none may go unnamed, so no cap but
          // the flows themselves); a path that names none is a 404, which its own line and CDR say.
          if (rules.current?.flows.has(flowSlug) && !previousSecretWarned.has(flowSlug)) {
            previousSecretWarned.add(flowSlug);
            request.log.warn({ callSid: call.callSid, flow: flowSlug }, `${PREVIOUS_SECRET_USED} (logged once per flow)`);
          }
          call.warnings.push(PREVIOUS_SECRET_USED);
          app.metrics.observePreviousSecret(endpoint);
        }
        const version = request.headers['exotel-version'];
        if (endpoint === 'connect' && version !== undefined && version !== CONNECT_VERSION) {
          const shown = String(version).slice(0, 20);
          // Every Connect callback of an account sends the same header: logged once per value, not per
          // call (each CDR says it); only from a caller the guard let through, who cannot fill the set with junk.
          if (!refused && firstOf(versionsWarned, shown)) {
            request.log.warn(
              { exotelVersion: shown, callSid: call.callSid, flow: flowSlug },
              'unknown Exotel-Version; answering version 1.0 (logged once per value)',
            );
          }
          call.warnings.push(`Exotel-Version ${shown} is not ${CONNECT_VERSION}`);
        } else if (endpoint === 'dial-whom' && version !== undefined) {
          // Only Connect's dynamic URL sends the header: the Dial Whom URL was pasted into that field,
          // whose answer Exotel reads as Connect JSON: it cannot act on a list of numbers.
          const problem = `Exotel-Version is sent by Connect's dynamic URL, which cannot read this Dial Whom answer: give that field ${CALLBACK_PREFIX}/connect/${flowSlug}`;
          // Once per flow that exists, every one (bounded by the flows, as the previous secret's warning).
          if (!refused && rules.current?.flows.has(flowSlug) && !dialWhomAsConnectWarned.has(flowSlug)) {
            dialWhomAsConnectWarned.add(flowSlug);
            request.log.warn({ callSid: call.callSid, flow: flowSlug }, `${problem} (logged once per flow)`);
          }
          call.warnings.push(problem);
        }
        const elapsedMs = () => performance.now() - t0;
        let result = refused
          ? rejected(refused.status, refused.reason)
          : isDialEndpoint(endpoint)
            ? await answerDial({ endpoint, flowSlug, call, at: receivedAt, elapsedMs })
            : answerCallback({ snapshot: rules.current, endpoint, flowSlug, call, at: receivedAt, budgetMs: config.DECISION_BUDGET_MS, elapsedMs });
        if (result.reason === CALL_SID_MISSING) {
          const unread = unreadBody(request);
          if (unread) result = { ...rejected(400, `${CALL_SID_MISSING}: ${unread}`), flow: result.flow };
        }
        // An agent setting their own availability by phone: the one passthru answer that writes.
        if (result.decision?.availability?.agent) {
          result = await applyOwnAvailability(
            result,
            call,
            receivedAt,
            (change, withinMs) => writeAvailability(app.db.pool, change, withinMs),
            beforeReserveMs - elapsedMs(),
          );
        }
        await record(request.log, endpoint, flowSlug, call, result, t0, receivedAt);
        return answerWith(reply, result.answer);
      };

    async function dialEvent(request: FastifyRequest, reply: FastifyReply) {
      const t0 = performance.now();
      const receivedAt = new Date();
      // The previous secret is accepted as the current one: a call answered before a rotation's restart carries it.
      const { refused, counted } = admit(request, reply);
      if (counted) return counted;
      const call = parse(request);
      let result: CallbackResult;
      const agent = call.dialWhomNumber?.e164;
      const sidProblem = call.callSid ? callSidProblem(call.callSid) : null;
      const acknowledged: CallbackResult = {
        answer: { statusCode: 200, contentType: 'text/plain', body: '' },
        outcome: 'answered',
        reason: null,
        decision: null,
        flow: null,
      };
      if (refused) result = rejected(refused.status, refused.reason);
      else if (!agent && call.dialWhomNumber && SIP_USER.test(call.dialWhomNumber.raw)) {
        // An Exotel app user rung by a Connect: no dial group member can be one, so no agent state to keep.
        result = { ...acknowledged, reason: `DialWhomNumber ${call.dialWhomNumber.raw} is an Exotel SIP user: no agent state kept` };
      } else if (!agent) {
        // Missing, or there but no number: said apart, so the sender knows which to fix.
        const sent = call.dialWhomNumber?.raw;
        const unread = sent === undefined ? unreadBody(request) : null;
        result = rejected(
          400,
          sent === undefined
            ? `DialWhomNumber is missing${unread ? `: ${unread}` : ": send the number of the agent's leg the event is about"}`
            : `DialWhomNumber ${JSON.stringify(sent.slice(0, 40))}${sent.length > 40 ? '…' : ''} is not a phone number (nor an Exotel SIP user id, sip:…)`,
        );
      } else if (sidProblem) result = rejected(400, sidProblem);
      else {
        result = acknowledged;
        const named = typeof call.raw.group === 'string' ? call.raw.group : null;
        // Like `group`, the URL's `flow` is believed only when it names a dial flow: it tells the offers of one call apart.
        const flowNamed = typeof call.raw.flow === 'string' ? call.raw.flow : null;
        const flow = flowNamed && rules.current?.flows.get(flowNamed)?.type === 'dial' ? flowNamed : null;
        // A flow and no group: the Connect answer of a list of numbers, which rang with the default settings.
        const { member, group, ringSeconds, earlySeconds, pacing } = eventPacing(rules.current, agent, named, flow !== null && named === null);
        const recording = recordDialEvent(app.db.pool, {
          agent,
          ...agentEvent(call),
          callSid: call.callSid,
          caller: call.callFrom?.e164 ?? null,
          at: receivedAt,
          group,
          flow,
          ringSeconds,
          earlySeconds,
          pacing,
          busyExpired: busyExpiredAt(rules.current?.dialGroups ?? null, receivedAt, config.AGENT_BUSY_TTL_SECONDS * 1000),
        }).then((effect) => {
          if (member) app.metrics.observeOfferEffect(group, effect);
        });
        try {
          // Within the budget less the CDR's reserve, like any callback; a late write goes on (the event is a fact, better late than lost).
          await withDeadline(
            recording,
            beforeReserveMs - (performance.now() - t0),
            (ms) => `not recorded within the ${Math.max(0, Math.round(ms))} ms left of the budget`,
          );
        } catch (err) {
          if (err instanceof DeadlineExceeded) {
            recording.catch((late: Error) => agentStateNotUpdated(request, late, call.callSid));
            result = { ...result, reason: `agent state ${err.message}; still being recorded` };
          } else {
            agentStateNotUpdated(request, err, call.callSid);
            result = { ...result, reason: `agent state not updated: ${(err as Error).message}` };
          }
        }
      }
      // The flow the URL names (its Connect answer put it there), for the log line: the CDR keeps none.
      const urlFlow = typeof call.raw.flow === 'string' && call.raw.flow !== '' ? flowOfPath(call.raw.flow, secrets) : null;
      await record(request.log, 'dial-events', null, call, result, t0, receivedAt, urlFlow);
      return answerWith(reply, result.answer);
    }

    const schema = (endpoint: FlowEndpoint, method: 'GET' | 'POST') => ({
      tags: ['exotel'],
      operationId: `${camel(endpoint)}Callback${method === 'POST' ? 'Post' : ''}`,
      summary: ANSWERS[endpoint].summary,
      description:
        `Called by Exotel with the call parameters: query string (GET, as Exotel sends them), form or JSON body (POST). ${ANSWERS[endpoint].reads} ` +
        'With EXOTEL_CALLBACK_SECRET set, the secret is the HTTP Basic password or the `token` parameter, else 401 ' +
        '(during a rotation EXOTEL_CALLBACK_SECRET_PREVIOUS is accepted too, and flagged in the CDR). ' +
        'Every callback is logged as a CDR, except refused ones past the first few a minute from one address: those are counted ' +
        '(GET /admin/refusals), and past 600 a minute answered 429.',
      params: Type.Object({ flow: Type.String({ description: 'Flow slug: the `exotelUrls` of GET /admin/flows/{slug} give the whole URL' }) }),
      security: CALLBACK_SECURITY,
      response: {
        ...ANSWERS[endpoint].ok,
        400: ErrorSchema,
        401: ErrorSchema,
        403: ErrorSchema,
        404: ErrorSchema,
        408: TOO_SLOW,
        413: TOO_LARGE,
        415: UNSUPPORTED_TYPE,
        429: THROTTLED,
        431: HEADERS_TOO_LARGE,
        503: NOT_READY,
      },
    });

    await app.register(
      async (exotel) => {
        // Bodies are taken as text (in the charset their Content-Type names) and parsed by
        // src/exotel/params.ts (bounded, prototype-safe), whatever the content type; a body Fastify
        // would refuse, or one in an unknown charset, must still leave a CDR.
        exotel.removeAllContentTypeParsers();
        exotel.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: CALLBACK_BODY_LIMIT }, (request, body, done) => {
          try {
            done(null, bodyText(body as Buffer, request.headers['content-type']));
          } catch (err) {
            done(err as UnknownCharsetError);
          }
        });
        exotel.setErrorHandler(async (err: Error & { statusCode?: number }, request, reply) => {
          // its body cut off by the parser's answer (a 408 when it came too slowly): the CDR says that answer
          const refused = parserRefusal(request.raw.socket);
          if (refused) return refuse(request, reply, refused.status, refused.message);
          const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
          if (status === 500) request.log.error({ err }, 'callback failed');
          // Fastify's bare "Unsupported Media Type", for a body whose Content-Type is empty or no media type
          if ((err as { code?: string }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return refuse(request, reply, status, unsupportedType(request));
          return refuse(request, reply, status, status === 500 ? 'internal error' : err.message);
        });
        // A path under /exotel that is no endpoint (a trailing slash, a typo) is a callback too. An
        // endpoint asked with another method than Exotel's (a monitor's HEAD, OPTIONS, PUT) is 405:
        // it decides nothing, so a HEAD toggles no agent and takes no turn of a rotation.
        exotel.setNotFoundHandler(async (request, reply) => {
          const path = request.url.split('?', 1)[0]!;
          if (!ENDPOINT_PATH.test(path)) {
            // A URL pasted with a '/' at its end names a flow, but is no endpoint's: say what to fix.
            const slash = path.endsWith('/') && ENDPOINT_PATH.test(path.replace(/\/+$/, ''));
            // An endpoint typed with capitals (`/exotel/Passthru/…`) names one, but paths are matched as they are.
            const capitals = !slash && path !== path.toLowerCase() && ENDPOINT_PATH.test(path.toLowerCase());
            const why = slash ? `: ${TRAILING_SLASH}` : capitals ? `: ${LOWERCASE_URLS}` : '';
            return refuse(request, reply, 404, `no such callback endpoint${why}`);
          }
          reply.header('allow', CALLBACK_METHODS.join(', '));
          return refuse(request, reply, 405, `${request.method} is not allowed: Exotel calls back with GET or POST`);
        });

        for (const method of CALLBACK_METHODS) {
          for (const endpoint of FLOW_ENDPOINTS) {
            exotel.route({
              method,
              url: `/${endpoint}/:flow`,
              // Fastify would answer HEAD with the GET handler: the whole callback, its writes included.
              exposeHeadRoute: false,
              handler: handler(endpoint),
              config: documented(method, CallbackParamsSchema),
              schema: schema(endpoint, method),
            });
          }
          exotel.route({
            method,
            url: '/dial-events',
            exposeHeadRoute: false,
            handler: dialEvent,
            config: documented(method, DialEventParamsSchema),
            schema: {
              tags: ['exotel'],
              operationId: method === 'POST' ? 'dialEventPost' : 'dialEvent',
              summary: 'Agent dial events (dial_passthru_event_url): Status busy/free, EventType; keeps busy state',
              description:
                'Exotel calls this URL, which exoroute sets as `dial_passthru_event_url` (with the `token`) in its Connect answers, for ' +
                'each agent leg: DialWhomNumber with Status=busy while the agent is rung or talking, free when that ends; EventType Dial, ' +
                'Ringing, Answered or Terminal. Busy agents are skipped; an answered agent is remembered for `sticky`. An Exotel SIP user ' +
                'id (`sip:agent123`) is acknowledged and changes nothing. Every event is a CDR.',
              security: CALLBACK_SECURITY,
              response: {
                200: plainText('Empty: the event is recorded'),
                400: ErrorSchema,
                401: ErrorSchema,
                403: ErrorSchema,
                408: TOO_SLOW,
                413: TOO_LARGE,
                415: UNSUPPORTED_TYPE,
                429: THROTTLED,
                431: HEADERS_TOO_LARGE,
              },
            },
          });
        }
      },
      { prefix: CALLBACK_PREFIX },
    );
  },
  { name: 'callbacks', dependencies: ['rules', 'cdr-writer', 'refusals', 'metrics', 'dialing'] },
);

/** The `token` parameter: parse() removes secrets from `raw`, so read it from the query itself. */
function tokenOf(request: FastifyRequest): string | undefined {
  return new URLSearchParams(queryOf(request.url)).get('token') ?? undefined;
}
