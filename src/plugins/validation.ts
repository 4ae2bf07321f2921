import type { FastifyServerOptions } from 'fastify';
import type { ErrorObject } from 'ajv';
import { IANAZone } from 'luxon';

/** Keywords that only summarise their branches' errors. */
const SUMMARIES = ['anyOf', 'oneOf', 'if'];
/** Errors about the shape rather than a value: at equal depth, a wrong value is named first. */
const SHAPE_KEYWORDS = ['required', 'additionalProperties', 'const', 'type'];

/** The most specific error: the deepest path, not the summary an `anyOf` adds. */
export function describeSchemaError(errors: ErrorObject[], dataVar: string): string {
  const located = errors
    .filter((e) => !SUMMARIES.includes(e.keyword))
    .map((e) => {
      const params = e.params as { additionalProperty?: string; missingProperty?: string };
      const shape = SHAPE_KEYWORDS.includes(e.keyword) ? 1 : 0;
      if (e.keyword === 'additionalProperties') return { path: `${e.instancePath}/${params.additionalProperty}`, text: 'unknown field', shape };
      if (e.keyword === 'required') return { path: `${e.instancePath}/${params.missingProperty}`, text: 'is required', shape };
      const described = (e.parentSchema as { description?: string } | undefined)?.description;
      const text = e.keyword === 'pattern' && described ? `must be: ${described}` : (e.message ?? 'is invalid');
      return { path: e.instancePath, text, shape };
    });
  // Deepest first; at equal depth, a wrong value beats a wrong shape (the shape errors of an
  // `anyOf` branch that was not meant, e.g. a missing `closed` when special hours were given).
  const best = located.sort((a, b) => b.path.split('/').length - a.path.split('/').length || a.shape - b.shape)[0];
  if (!best) return `${dataVar}: ${errors[0]?.message ?? 'is invalid'}`;
  return `${dataVar}${best.path}: ${best.text}`;
}

/**
 * The app's validator settings: unknown fields are rejected (400), never silently dropped; all
 * errors are collected so that the deepest one is named; `iana-timezone` checks schedule time zones.
 */
export const validationOptions = {
  ajv: {
    customOptions: { removeAdditional: false, allErrors: true, verbose: true, coerceTypes: 'array' },
    plugins: [
      (ajv: import('ajv').default) =>
        ajv.addFormat('iana-timezone', { type: 'string', validate: (s: string) => IANAZone.isValidZone(s) }),
    ],
  },
  schemaErrorFormatter: (errors, dataVar) => new Error(describeSchemaError(errors as ErrorObject[], dataVar)),
} satisfies Pick<FastifyServerOptions, 'ajv' | 'schemaErrorFormatter'>;
