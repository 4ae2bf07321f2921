import { Type } from '@sinclair/typebox';

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

export const NumericCursorSchema = Type.String({ pattern: '^[0-9]{1,19}$', description: 'Opaque cursor: `nextCursor` of the previous page' });

/** An instant in answers: a Date in code, an ISO 8601 string on the wire (fast-json-stringify converts). */
export const InstantSchema = Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' });
export const NullableInstantSchema = Type.Unsafe<Date | string | null>({ type: ['string', 'null'], format: 'date-time' });

export const TimestampsSchema = Type.Object({ createdAt: InstantSchema, updatedAt: InstantSchema });

export const ErrorSchema = Type.Object(
  { statusCode: Type.Integer(), error: Type.String(), message: Type.String(), code: Type.Optional(Type.String()) },
  { description: 'Fastify error shape; message names the field and the problem' },
);
