import { Type, type Static, type TSchema } from '@sinclair/typebox';

export const SlugSchema = Type.String({
  pattern: '^[a-z0-9-]{1,64}$',
  minLength: 1,
  maxLength: 64,
  description: 'Lowercase letters, digits and -, 1–64 characters',
  examples: ['support'],
});

export const SlugParamsSchema = Type.Object({ slug: SlugSchema });
export type SlugParams = Static<typeof SlugParamsSchema>;

/** An instant in answers: a Date in code, an ISO 8601 string on the wire (fast-json-stringify converts). */
export const InstantSchema = Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' });
export const NullableInstantSchema = Type.Unsafe<Date | string | null>({ type: ['string', 'null'], format: 'date-time' });

export const TimestampsSchema = Type.Object({ createdAt: InstantSchema, updatedAt: InstantSchema });

export const ErrorSchema = Type.Object(
  { statusCode: Type.Integer(), error: Type.String(), message: Type.String(), code: Type.Optional(Type.String()) },
  { description: 'Fastify error shape; message names the field and the problem' },
);

export const PageQuerySchema = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'Opaque cursor from `nextCursor` of the previous page' })),
});

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
