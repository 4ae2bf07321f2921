import { Type, type TSchema } from '@sinclair/typebox';

export const SlugSchema = Type.String({
  pattern: '^[a-z0-9-]{1,64}$',
  minLength: 1,
  maxLength: 64,
  description: 'Lowercase letters, digits and -, 1–64 characters',
  examples: ['support'],
});

export const SlugParamsSchema = Type.Object({ slug: SlugSchema });

/** A phone number as an admin writes it; stored as E.164 (src/exotel/phone.ts). */
export const PhoneInputSchema = Type.String({ minLength: 1, maxLength: 32, description: 'Phone number in any form; stored as E.164' });

/** Items per page when a list is asked without `limit`. */
export const DEFAULT_PAGE_LIMIT = 100;

/**
 * A list's `limit`: optional in the API document (Swagger UI and generated clients need not send it),
 * and Ajv fills in the default before a handler runs.
 */
export const PageLimitSchema = Type.Optional(
  Type.Integer({ minimum: 1, maximum: 1000, default: DEFAULT_PAGE_LIMIT, description: `Items per page, 1 to 1000 (default ${DEFAULT_PAGE_LIMIT})` }),
);

export const NumericCursorSchema = Type.String({ pattern: '^[0-9]{1,19}$', description: 'Opaque cursor: `nextCursor` of the previous page' });

/** An instant in answers: a Date in code, an ISO 8601 string on the wire (fast-json-stringify converts). */
export const InstantSchema = Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' });
export const NullableInstantSchema = Type.Unsafe<Date | string | null>({ type: ['string', 'null'], format: 'date-time' });

export const TimestampsSchema = Type.Object({ createdAt: InstantSchema, updatedAt: InstantSchema });

export const ErrorSchema = Type.Object(
  { statusCode: Type.Integer(), error: Type.String(), message: Type.String(), code: Type.Optional(Type.String()) },
  { description: 'Fastify error shape; message names the field and the problem' },
);

/**
 * The `Retry-After` header every 429 and 503 answer of the admin API carries, as a response
 * schema's `headers` (documented by @fastify/swagger; fast-json-stringify ignores it): a generated
 * client then knows how long to wait.
 */
export const RETRY_AFTER_HEADERS = {
  'Retry-After': Type.Integer({ minimum: 0, description: 'Seconds to wait before trying again' }),
};

/**
 * A request body schema with examples for the OpenAPI document: Swagger UI's "Try it out" starts
 * from the first. test/openapi-examples.test.ts checks each one against its schema.
 */
export function withExamples<T extends TSchema>(schema: T, ...examples: unknown[]): T {
  return { ...schema, examples };
}

/** An example without its `slug`: the body of a PUT to the object's own URL. */
export function withoutSlug<T extends { slug: string }>(example: T): Omit<T, 'slug'> {
  const { slug: _slug, ...rest } = example;
  return rest;
}
