import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import { isSupportedCountry } from 'libphonenumber-js';
import { parse as parseConnectionString } from 'pg-connection-string';
import { count } from './lib/count.js';

/**
 * The part of DECISION_BUDGET_MS kept back for a callback's CDR: its commit may run until this long
 * before the budget ends, and then the CDR is fsynced to the local spool instead, so that the
 * answer still leaves within the budget (src/routes/exotel/index.ts).
 */
export const SPOOL_RESERVE_MS = 100;
/** The smallest DECISION_BUDGET_MS: the spool's reserve, and time for a decision and the CDR's commit. */
export const MIN_DECISION_BUDGET_MS = SPOOL_RESERVE_MS + 150;

/**
 * Default of ADMIN_STATEMENT_TIMEOUT_MS: the longest Postgres runs one statement of the admin API's
 * pool (its `statement_timeout`), waiting for a lock included, before it cancels it (57014). Without
 * it, an admin request behind a lock another transaction held (a stuck session, a long migration)
 * waited for as long as that lock was held, and its client or load balancer gave up first with no
 * word of why. A VIP list's writes set their own (ADMIN_BULK_STATEMENT_TIMEOUT_MS), and a CSV export
 * none (src/store/cdrs.ts). Set on each connection of that pool (src/store/database.ts).
 */
export const ADMIN_STATEMENT_TIMEOUT_MS = 15_000;
/**
 * Default of ADMIN_BULK_STATEMENT_TIMEOUT_MS: a VIP list's writes, which take turns on the list's
 * lock (src/store/vip-lists.ts). With the dead-connection grace (src/store/database.ts) it stays
 * under 60 s, AWS ALB's idle timeout, so that behind one the client reads this 503 and its reason,
 * not the balancer's bare 504 (a bulk import of 10,000 entries takes about a second).
 */
export const ADMIN_BULK_STATEMENT_TIMEOUT_MS = 50_000;

/**
 * The whole configuration, from environment variables only (docs/contract.md §5). Read once at start;
 * nothing else in the code reads process.env.
 */
export const ConfigSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATA_DIR: Type.String({ minLength: 1, default: '.data' }),
  ADMIN_API_KEY: Type.Optional(Type.String({ minLength: 16, maxLength: 200 })),
  EXOTEL_CALLBACK_SECRET: Type.Optional(Type.String({ minLength: 16, maxLength: 200 })),
  // During a rotation, the secret the applets' URLs still carry: accepted too, never handed out (README,
  // "Rotating the callback secret"). A variable of its own, not a list in EXOTEL_CALLBACK_SECRET: a secret may hold a comma.
  EXOTEL_CALLBACK_SECRET_PREVIOUS: Type.Optional(Type.String({ minLength: 16, maxLength: 200 })),
  // Set by the deployment files (Dockerfile, docker-compose.yml, systemd unit): there, a missing
  // EXOTEL_CALLBACK_SECRET stops the start unless EXOTEL_CALLBACKS_OPEN=true says it is meant.
  EXOTEL_REQUIRE_CALLBACK_SECRET: Type.Boolean({ default: false }),
  EXOTEL_CALLBACKS_OPEN: Type.Boolean({ default: false }),
  EXOTEL_ALLOWED_CIDRS: Type.Optional(Type.String()),
  PUBLIC_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s]+$' })),
  DEFAULT_COUNTRY: Type.String({ pattern: '^[A-Z]{2}$', default: 'IN' }),
  DECISION_BUDGET_MS: Type.Integer({ minimum: MIN_DECISION_BUDGET_MS, maximum: 30000, default: 1500 }),
  CDR_WRITE_TIMEOUT_MS: Type.Integer({ minimum: 10, maximum: 30000, default: 500 }),
  // At most 100 years: far past that, the cut-off is before Postgres' earliest timestamp and every prune fails.
  CDR_RETENTION_DAYS: Type.Integer({ minimum: 0, maximum: 36500, default: 0 }),
  // Its own setting, not CDR_RETENTION_DAYS': who changed the rules is often kept longer than the calls.
  AUDIT_RETENTION_DAYS: Type.Integer({ minimum: 0, maximum: 36500, default: 0 }),
  AGENT_BUSY_TTL_SECONDS: Type.Integer({ minimum: 10, maximum: 86400, default: 3600 }),
  // Longest a request may take to arrive whole (headers and body), then 408 (src/app.ts).
  REQUEST_TIMEOUT_SECONDS: Type.Integer({ minimum: 1, maximum: 3600, default: 300 }),
  // Longest Postgres runs an admin request's statement, lock waits included (src/store/database.ts).
  ADMIN_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: ADMIN_STATEMENT_TIMEOUT_MS }),
  // The same for a VIP list's writes, which take turns on the list's lock (an import of 10,000 entries).
  ADMIN_BULK_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: ADMIN_BULK_STATEMENT_TIMEOUT_MS }),
  // Admin API protection (src/plugins/auth.ts). Callbacks and ops routes are never limited.
  ADMIN_RATE_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 600 }),
  ADMIN_AUTH_FAILURES_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 10_000, default: 20 }),
  ADMIN_BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, maximum: 16 * 1024 * 1024, default: 1024 * 1024 }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, maxLength: 200 })),
  TRUST_PROXY: Type.Optional(Type.String()),
  // How far V8 lets its heap grow past what survived the last full collection (src/server.ts).
  HEAP_GROWTH_PERCENT: Type.Integer({ minimum: 0, maximum: 1000, default: 25 }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
});
type Env = Static<typeof ConfigSchema>;

export interface Config extends Omit<Env, 'EXOTEL_ALLOWED_CIDRS' | 'PUBLIC_URL' | 'DEFAULT_COUNTRY' | 'TRUST_PROXY'> {
  PUBLIC_URL: string;
  DEFAULT_COUNTRY: import('libphonenumber-js').CountryCode;
  EXOTEL_ALLOWED_CIDRS: string[];
  /** Fastify's `trustProxy`: false, true (any proxy), or the proxies' addresses/CIDR ranges. */
  TRUST_PROXY: boolean | string[];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

function checkCidr(cidr: string): boolean {
  const [addr, bits, extra] = cidr.split('/');
  if (extra !== undefined || !addr) return false;
  const max = isIPv4(addr) ? 32 : isIPv6(addr) ? 128 : -1;
  if (max < 0) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= max;
}

/** Names proxy-addr (Fastify's trustProxy) accepts in place of addresses. */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * TRUST_PROXY: `true`/`false`, or comma-separated proxy addresses, CIDR ranges and range names.
 * No hop counts: Fastify 5 ignores them (a hop count cannot tell a proxy from a spoofing client).
 */
function parseTrustProxy(value: string | undefined, problems: string[]): boolean | string[] {
  const v = (value ?? '').trim();
  if (v === '' || v === 'false') return false;
  if (v === 'true') return true;
  const entries = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const e of entries) {
    if (!PROXY_RANGE_NAMES.has(e) && !checkCidr(e)) {
      problems.push(`TRUST_PROXY: ${JSON.stringify(e)} is not true/false, an IP address, a CIDR range or loopback/linklocal/uniquelocal`);
    }
  }
  return entries;
}

/** Variables whose value is a secret: a problem with one names it, never shows it. */
const SECRET_VARIABLES = new Set(['ADMIN_API_KEY', 'EXOTEL_CALLBACK_SECRET', 'EXOTEL_CALLBACK_SECRET_PREVIOUS', 'METRICS_TOKEN']);

/** A variable's value as a configuration error may print it: secrets by length only, a URL without its password. */
export function shown(name: string, value: unknown): string {
  if (value === undefined) return '(unset)';
  const text = String(value);
  if (SECRET_VARIABLES.has(name)) return `(${count(text.length, 'character')}, not shown)`;
  // Up to the last `@`: a password may hold `/`, `#` or `?` (not percent-encoded, the URL is broken, and still secret);
  // also after a scheme missing a slash (`postgresql:/user:pw@…`), and with no scheme at all (`user:pw@host/db`).
  // A libpq keyword string (`host=db password=pw`), which is no URL, is refused, and its `password=` is masked too.
  return JSON.stringify(
    text
      .replace(/^([^/:@\s]+:)(?!\/)\S*@/, '$1***@')
      .replace(/((?:\/\/|:\/{0,2})[^/:@\s]*:)\S*@/, '$1***@')
      .replace(/(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S*)/gi, '$1***'),
  );
}

/** What a valid value looks like, from the schema's bounds; undefined when TypeBox's own message says it best. */
function whatToFix(schema: {
  type?: unknown;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  pattern?: string;
  anyOf?: Array<{ const?: unknown }>;
}): string | undefined {
  if (schema.anyOf?.every((s) => s.const !== undefined)) return `must be one of ${schema.anyOf.map((s) => String(s.const)).join(', ')}`;
  if (schema.type === 'boolean') return 'must be true or false';
  if (schema.type === 'integer') {
    const range = schema.maximum !== undefined ? `from ${schema.minimum ?? 0} to ${schema.maximum}` : `of at least ${schema.minimum ?? 0}`;
    return `must be a whole number ${range}`;
  }
  if (schema.type === 'string' && schema.minLength !== undefined && schema.minLength > 1) {
    return `must be ${schema.minLength} to ${schema.maxLength ?? 'any number of'} characters long`;
  }
  if (schema.type === 'string' && schema.pattern === '^postgres(ql)?://') return 'must be a Postgres URL, postgresql://user:password@host:5432/database';
  if (schema.type === 'string' && schema.pattern === '^https?://[^\\s]+$')
    return 'must be an http:// or https:// URL without spaces, e.g. https://exoroute.example.com';
  if (schema.type === 'string' && schema.pattern === '^[A-Z]{2}$') return 'must be a two-letter country code in capitals, e.g. IN';
  return undefined;
}

/** Whether node-postgres can read `url` as a connection string (asked of its own parser). */
function pgCanParse(url: string): boolean {
  try {
    parseConnectionString(url);
    return true;
  } catch {
    return false;
  }
}

/** What is wrong with a PUBLIC_URL that has the right prefix: exoroute appends paths to it and logs it. */
function publicUrlProblem(url: string): string | undefined {
  if (!URL.canParse(url)) return 'must be an http:// or https:// URL, e.g. https://exoroute.example.com (check the host and port)';
  const u = new URL(url);
  if (u.search || u.hash || url.includes('?') || url.includes('#')) return 'must have no query string or fragment: exoroute appends its paths to it';
  if (u.username || u.password) {
    return 'must not carry a user or password: set the callback secret in EXOTEL_CALLBACK_SECRET, which exoroute adds to the URLs it hands out';
  }
  return undefined;
}

/** A host name as Node resolves it for listen(): dot-separated labels of letters, digits and hyphens. */
const HOST_NAME = /^(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/** A host and port as a URL or a log line writes them: an IPv6 address goes in brackets (`::`, 3000 → `[::]:3000`). */
export const hostAndPort = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;

/** The URL exoroute hands out when PUBLIC_URL is unset (`HOST=::` → http://[::]:3000). */
const defaultPublicUrl = (host: string, port: number) => `http://${hostAndPort(host, port)}`;

/**
 * What is wrong with HOST: it is what the service listens on and, without PUBLIC_URL, the host of
 * every URL handed to Exotel, so it is an address or a name, without a scheme, port or brackets.
 */
function hostProblem(host: string, publicUrlSet: boolean, port: number): string | undefined {
  if (isIP(host) === 0 && !HOST_NAME.test(host)) {
    return 'must be an IP address or host name to listen on, without scheme, port or brackets (127.0.0.1, 0.0.0.0 for every interface, :: for IPv6); the port goes in PORT';
  }
  if (!publicUrlSet && !URL.canParse(defaultPublicUrl(host, port))) {
    return 'makes no URL for Exotel (an IPv6 address with a zone): set PUBLIC_URL to the address Exotel reaches this service at';
  }
  return undefined;
}

/** Turns an environment into a typed Config, or throws ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = env[key];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  const converted = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, { ...raw })) as Record<string, unknown>;
  // TypeBox converts "1e3" and "1.5" to 1 and "0x10" to 16: a whole number is decimal digits, else it stays text, an error.
  for (const [key, schema] of Object.entries(ConfigSchema.properties)) {
    const value = raw[key];
    if ((schema as { type?: string }).type === 'integer' && typeof value === 'string' && !/^\s*\+?\d+\s*$/.test(value)) converted[key] = value;
  }
  const problems = [...Value.Errors(ConfigSchema, converted)].map((e) => {
    const name = e.path.slice(1) || '(root)';
    return `${name}=${shown(name, raw[name])}: ${whatToFix(e.schema as Parameters<typeof whatToFix>[0]) ?? e.message}`;
  });
  const c = converted as Env;
  const failed = new Set(problems.map((p) => p.slice(0, p.indexOf('='))));
  if (c.PUBLIC_URL !== undefined && !failed.has('PUBLIC_URL')) {
    const problem = publicUrlProblem(c.PUBLIC_URL);
    if (problem) problems.push(`PUBLIC_URL=${shown('PUBLIC_URL', c.PUBLIC_URL)}: ${problem}`);
  }
  // Both are sent as `Authorization: Bearer <token>`, a single run of visible ASCII characters: a space
  // ends the token, and a header's non-ASCII bytes arrive as other characters. Such a value passed,
  // and then no request could present it: every admin call, or every scrape, answered 401.
  for (const name of ['ADMIN_API_KEY', 'METRICS_TOKEN'] as const) {
    const value = c[name];
    if (value !== undefined && !failed.has(name) && !/^[\x21-\x7e]+$/.test(value)) {
      problems.push(
        `${name}=${shown(name, value)}: must be letters, digits and punctuation only, without spaces or other characters, as it is sent as Authorization: Bearer <${name}> (e.g. openssl rand -hex 24)`,
      );
    }
  }
  if (!failed.has('HOST') && !failed.has('PORT')) {
    const problem = hostProblem(c.HOST, c.PUBLIC_URL !== undefined, c.PORT);
    if (problem) problems.push(`HOST=${shown('HOST', c.HOST)}: ${problem}`);
  }
  if (c.DATABASE_URL !== undefined && !failed.has('DATABASE_URL') && !pgCanParse(c.DATABASE_URL)) {
    problems.push(
      `DATABASE_URL=${shown('DATABASE_URL', c.DATABASE_URL)}: is not a valid URL: percent-encode special characters in the user and password (/ as %2F, # as %23, ? as %3F)`,
    );
  }
  if (c.EXOTEL_REQUIRE_CALLBACK_SECRET === true && !c.EXOTEL_CALLBACK_SECRET && c.EXOTEL_CALLBACKS_OPEN !== true) {
    problems.push(
      'EXOTEL_CALLBACK_SECRET is unset, and this deployment requires it (EXOTEL_REQUIRE_CALLBACK_SECRET=true): set it to a ' +
        'secret of 16 to 200 characters and put it in the URLs Exotel calls, or set EXOTEL_CALLBACKS_OPEN=true to let anyone call back',
    );
  }
  if (c.EXOTEL_CALLBACKS_OPEN === true && c.EXOTEL_CALLBACK_SECRET) {
    problems.push('EXOTEL_CALLBACKS_OPEN=true contradicts EXOTEL_CALLBACK_SECRET, which is set: unset one of them');
  }
  if (c.EXOTEL_CALLBACK_SECRET_PREVIOUS !== undefined && !failed.has('EXOTEL_CALLBACK_SECRET_PREVIOUS')) {
    const previous = `EXOTEL_CALLBACK_SECRET_PREVIOUS=${shown('EXOTEL_CALLBACK_SECRET_PREVIOUS', c.EXOTEL_CALLBACK_SECRET_PREVIOUS)}`;
    if (!c.EXOTEL_CALLBACK_SECRET) {
      problems.push(`${previous}: is the old secret during a rotation, and EXOTEL_CALLBACK_SECRET, the new one, is unset: set it, or unset this one`);
    } else if (c.EXOTEL_CALLBACK_SECRET_PREVIOUS === c.EXOTEL_CALLBACK_SECRET) {
      problems.push(
        `${previous}: is the same as EXOTEL_CALLBACK_SECRET: set EXOTEL_CALLBACK_SECRET to the new secret and this one to the old, or unset this one`,
      );
    }
  }
  if (!failed.has('DEFAULT_COUNTRY') && !isSupportedCountry(c.DEFAULT_COUNTRY)) {
    problems.push(`DEFAULT_COUNTRY=${JSON.stringify(c.DEFAULT_COUNTRY)}: not a country libphonenumber knows`);
  }
  const cidrs = (c.EXOTEL_ALLOWED_CIDRS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const cidr of cidrs) {
    if (!checkCidr(cidr)) problems.push(`EXOTEL_ALLOWED_CIDRS: ${JSON.stringify(cidr)} is not an IP address or CIDR range`);
  }
  const trustProxy = parseTrustProxy(c.TRUST_PROXY, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    ...c,
    DEFAULT_COUNTRY: c.DEFAULT_COUNTRY as Config['DEFAULT_COUNTRY'],
    EXOTEL_ALLOWED_CIDRS: cidrs,
    TRUST_PROXY: trustProxy,
    PUBLIC_URL: (c.PUBLIC_URL ?? defaultPublicUrl(c.HOST, c.PORT)).replace(/\/+$/, ''),
  };
}

/**
 * Addresses Exotel cannot reach: loopback, private (RFC 1918, RFC 4193), link-local, carrier-grade
 * NAT and unspecified. Connect answers hand PUBLIC_URL to Exotel, so such a URL silently loses
 * every agent busy/free event.
 */
const UNREACHABLE_FROM_EXOTEL = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const) {
  UNREACHABLE_FROM_EXOTEL.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
] as const)
  UNREACHABLE_FROM_EXOTEL.addSubnet(net, bits, 'ipv6');

/** How long Exotel waits for a Connect applet's answer before its fallback URL (docs/exotel.md). */
const EXOTEL_CONNECT_TIMEOUT_MS = 5000;

/** What a running service should be told about its configuration at start: each entry is one warning line. */
export function startupWarnings(config: Config): string[] {
  const warnings: string[] = [];
  const url = new URL(config.PUBLIC_URL);
  if (url.protocol !== 'https:') {
    warnings.push(
      `PUBLIC_URL=${config.PUBLIC_URL} is not https://: Exotel calls only HTTPS URLs, so the dial events URL in Connect answers will never be called (README, "HTTPS: from a bare server to Exotel calling exoroute")`,
    );
  }
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const family = isIP(host);
  const mapped = family === 6 && /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host)?.[1];
  const unreachable =
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    (mapped ? UNREACHABLE_FROM_EXOTEL.check(mapped, 'ipv4') : family !== 0 && UNREACHABLE_FROM_EXOTEL.check(host, family === 4 ? 'ipv4' : 'ipv6'));
  if (unreachable) {
    warnings.push(
      `PUBLIC_URL=${config.PUBLIC_URL} points at a loopback or private address, which Exotel cannot reach: set it to this service's public https:// address`,
    );
  }
  if (config.DECISION_BUDGET_MS > EXOTEL_CONNECT_TIMEOUT_MS) {
    warnings.push(
      `DECISION_BUDGET_MS=${config.DECISION_BUDGET_MS} is longer than the ${EXOTEL_CONNECT_TIMEOUT_MS / 1000} s Exotel waits for a Connect answer (10 s for Dial Whom) before it asks the fallback URL: an onError answered that late reaches no caller`,
    );
  }
  if (!config.EXOTEL_CALLBACK_SECRET) {
    warnings.push(
      config.EXOTEL_CALLBACKS_OPEN
        ? 'callback URLs are open to anyone (EXOTEL_CALLBACKS_OPEN=true)'
        : 'EXOTEL_CALLBACK_SECRET is unset: callback URLs are open to anyone',
    );
  }
  return warnings;
}
