import type { FastifyServerOptions } from 'fastify';
import type { ErrorObject } from 'ajv';
import { AjvCompiler, type BuildCompilerFromPool } from '@fastify/ajv-compiler';
import { IANAZone } from 'luxon';
import { whatToFix } from '../schemas/what-to-fix.js';

/** Keywords that only summarise their branches' errors. */
const SUMMARIES = ['anyOf', 'oneOf', 'if'];
/** Errors about the shape rather than a value: at equal depth, a wrong value is named first. */
const SHAPE_KEYWORDS = ['required', 'additionalProperties', 'const', 'type'];

/**
 * How many errors the `anyOf` branch an error comes from has for the same value (0 outside a branch):
 * the branch with the fewest is the shape that was meant (special hours missing `close` are one
 * error away from special hours, two from a closed date: `closed` missing, `open` unknown).
 */
function branchErrors(e: ErrorObject, errors: ErrorObject[]): number {
  const branch = /^(.*)\/anyOf\/\d+(?=\/|$)/.exec(e.schemaPath);
  if (!branch) return 0;
  // the anyOf's own summary error says which value the branch was tried on
  const value = errors
    .filter((s) => s.keyword === 'anyOf' && s.schemaPath === `${branch[1]}/anyOf` && e.instancePath.startsWith(s.instancePath))
    .sort((a, b) => b.instancePath.length - a.instancePath.length)[0]?.instancePath;
  if (value === undefined) return 0;
  const prefix = branch[0];
  return errors.filter(
    (o) => (o.schemaPath === prefix || o.schemaPath.startsWith(`${prefix}/`)) && (o.instancePath === value || o.instancePath.startsWith(`${value}/`)),
  ).length;
}

/**
 * The most specific error: the deepest path, not the summary an `anyOf` adds; worded as what to
 * fix (src/schemas/what-to-fix.ts): allowed values, formats spelled out, the fields an object has.
 */
export function describeSchemaError(errors: ErrorObject[], dataVar: string): string {
  const located = errors
    .filter((e) => !SUMMARIES.includes(e.keyword))
    .map((e) => {
      const params = e.params as { additionalProperty?: string; missingProperty?: string };
      const shape = SHAPE_KEYWORDS.includes(e.keyword) ? 1 : 0;
      const text = whatToFix(e, errors) ?? e.message ?? 'is invalid';
      const branch = shape ? branchErrors(e, errors) : 0;
      if (e.keyword === 'additionalProperties') return { error: e, path: `${e.instancePath}/${params.additionalProperty}`, text, shape, branch };
      if (e.keyword === 'required') return { error: e, path: `${e.instancePath}/${params.missingProperty}`, text: 'is required', shape, branch };
      return { error: e, path: e.instancePath, text, shape, branch };
    });
  // Deepest first; at equal depth, a wrong value beats a wrong shape (the shape errors of an
  // `anyOf` branch that was not meant, e.g. a missing `closed` when special hours were given), and
  // among shape errors, those of the branch nearest to what was sent.
  const best = located.sort((a, b) => b.path.split('/').length - a.path.split('/').length || a.shape - b.shape || a.branch - b.branch)[0];
  if (!best) return `${dataVar}: ${errors[0]?.message ?? 'is invalid'}`;
  const union = best.shape ? unfitShapes(best.error, errors) : undefined;
  if (union) return `${dataVar}${union.instancePath}: must be: ${(union.parentSchema as { description: string }).description}`;
  // Several unknown fields in one object (a GET's answer sent back with its read-only fields:
  // slug, createdAt, updatedAt, …): every one is named, so one fix removes them all.
  if (best.error.keyword === 'additionalProperties') {
    // of the same object schema: a field unknown to one shape of a union may be another's
    const others = located
      .filter((l) => l !== best && l.error.schemaPath === best.error.schemaPath && l.error.instancePath === best.error.instancePath)
      .map((l) => (l.error.params as { additionalProperty: string }).additionalProperty);
    if (others.length > 0) return `${dataVar}${best.path}: ${best.text}; remove ${[...new Set(others)].join(', ')} too`;
  }
  return `${dataVar}${best.path}: ${best.text}`;
}

/** Errors about which fields an object has (or whether it is one), rather than a field's value. */
const OBJECT_SHAPE = ['required', 'additionalProperties', 'type'];

/**
 * The described union of object shapes (a flow's action, a digits match) that `chosen` comes from,
 * when no shape fits for its fields alone: nothing inside it has a wrong value. Then a missing field
 * of whichever shape comes first (`branch` for a dial flow's misspelt `dialgroup`) is no fix; the
 * union's description, which names every shape, is.
 */
function unfitShapes(chosen: ErrorObject, errors: readonly ErrorObject[]): ErrorObject | undefined {
  return errors
    .filter((u) => {
      if (u.keyword !== 'anyOf' || !chosen.schemaPath.startsWith(`${u.schemaPath}/`)) return false;
      const schema = u.parentSchema as { description?: string; anyOf?: Array<{ type?: unknown }> } | undefined;
      if (!schema?.description || !schema.anyOf?.every((s) => s.type === 'object')) return false;
      return errors
        .filter((e) => e.schemaPath.startsWith(`${u.schemaPath}/`))
        .every((e) => e.instancePath === u.instancePath && OBJECT_SHAPE.includes(e.keyword));
    })
    .sort((a, b) => b.schemaPath.length - a.schemaPath.length)[0];
}

type Ajv = import('ajv').default;

/**
 * Names ICU (so Intl and luxon) takes as zones that are no IANA names: old Java's three-letter ids,
 * most of them not the zone the abbreviation means to a person (BST is Asia/Dhaka, not British
 * Summer Time; IST Asia/Kolkata, not Irish or Israel time; CST America/Chicago, not China; NST
 * Pacific/Auckland, not Newfoundland), and the SystemV/ zones IANA has dropped. IANA's own short
 * names (UTC, EST, CET, GB, …) are not among them.
 */
const ICU_ONLY_ZONES = new Set('ACT AET AGT ART AST BET BST CAT CNT CST CTT EAT ECT IET IST JST MIT NET NST PLT PNT PRT PST SST VST'.split(' '));

/** An IANA timezone name (Asia/Kolkata; a link such as Asia/Calcutta too) that this runtime knows. */
export const isIanaTimezone = (s: string) => IANAZone.isValidZone(s) && !ICU_ONLY_ZONES.has(s.toUpperCase()) && !/^SystemV\//i.test(s);

/** The instants Prisma reads back as it wrote them: years 0001 to 9999 in UTC (…-05:00 on 9999-12-31 is already 10000). */
const EARLIEST_INSTANT_MS = Date.parse('0001-01-01T00:00:00Z');
const LATEST_INSTANT_MS = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * `date-time` as ajv-formats checks it (RFC 3339), and an instant JavaScript and Prisma can read:
 * RFC 3339 allows a leap second (…T23:59:60Z), which `new Date()` reads as Invalid Date, and a
 * year past 9999 in UTC, which Postgres stores but Prisma reads back as Invalid Date; an instant
 * that passed validation must not fail later as a 500. Run on creation, after ajv-formats is added.
 */
function readableDateTime(ajv: Ajv): void {
  const rfc3339 = ajv.formats['date-time'] as { validate: (s: string) => boolean } | undefined;
  if (!rfc3339?.validate) throw new Error('ajv-formats did not add date-time');
  const readable = (ms: number) => ms >= EARLIEST_INSTANT_MS && ms <= LATEST_INSTANT_MS;
  ajv.addFormat('date-time', { type: 'string', validate: (s: string) => rfc3339.validate(s) && readable(Date.parse(s)) });
}

/**
 * A query string, path parameters and headers are text, so they are coerced to the schema's types
 * (`?limit=10` is the number 10); a JSON body is checked with its types as sent, so `"open": null`,
 * `"until": ""` or `"false"` for a boolean is a 400 naming the field, not converted to false, null
 * or false. Both compilers are built as Fastify builds its default one, from the `ajv` options below
 * (plugins and onCreate included); only `coerceTypes` differs. With a compiler of its own, Fastify
 * passes a `headers` schema as written, not lower-cased: name headers in lower case there.
 */
const buildValidator: BuildCompilerFromPool = (externalSchemas, options) => {
  // Fastify's own compiler (@fastify/ajv-compiler), which it would otherwise build once per instance.
  const fromPool = AjvCompiler();
  const coercing = fromPool(externalSchemas, options);
  const asSent = fromPool(externalSchemas, { ...options, customOptions: { ...options?.customOptions, coerceTypes: false } } as typeof options);
  // Fastify calls a validator compiler with the route's definition, which ajv-compiler's types call a schema.
  const compile = (route: { httpPart?: string; schema?: unknown }) => {
    if (route.httpPart === 'body') return asSent(route as never);
    const validate = coercing(route as never);
    // Only a part with numbers needs the check (not the callbacks' `{flow}`: the live path is as it was).
    return /"type":\s*(\[[^\]]*)?"(integer|number)"/.test(JSON.stringify(route.schema) ?? '') ? finite(validate) : validate;
  };
  return compile as ReturnType<BuildCompilerFromPool>;
};

type Validate = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

/**
 * Ajv coerces `?limit=1e309` to Infinity and then skips `minimum`/`maximum`, which it checks on
 * finite numbers only: the value reached the handler and the database as a 500. A text part (query
 * string, params, headers; flat) with a number that is not finite is refused as Ajv would refuse one
 * out of range.
 */
function finite(validate: Validate): Validate {
  const checked: Validate = (data) => {
    const ok = validate(data);
    checked.errors = validate.errors;
    if (!ok || typeof data !== 'object' || data === null) return ok;
    for (const [key, value] of Object.entries(data)) {
      if ([value].flat().some((v) => typeof v === 'number' && !Number.isFinite(v))) {
        const error = { keyword: 'finite', instancePath: `/${key}`, schemaPath: '', params: {} };
        checked.errors = [{ ...error, message: 'must be a number in range, written in digits; this one reads as infinite' }];
        return false;
      }
    }
    return true;
  };
  return checked;
}

/**
 * The app's validator settings: unknown fields are rejected (400), never silently dropped; all
 * errors are collected so that the deepest one is named; `iana-timezone` checks schedule time zones,
 * and every `date-time` is one JavaScript can read. Types are coerced in the query string, params
 * and headers only, never in a body (`buildValidator`).
 */
export const validationOptions = {
  ajv: {
    customOptions: { removeAdditional: false, allErrors: true, verbose: true, coerceTypes: 'array' },
    plugins: [(ajv: Ajv) => ajv.addFormat('iana-timezone', { type: 'string', validate: isIanaTimezone })],
    onCreate: readableDateTime,
  },
  schemaController: { compilersFactory: { buildValidator } },
  schemaErrorFormatter: (errors, dataVar) => new Error(describeSchemaError(errors as ErrorObject[], dataVar)),
} satisfies Pick<FastifyServerOptions, 'ajv' | 'schemaController' | 'schemaErrorFormatter'>;
