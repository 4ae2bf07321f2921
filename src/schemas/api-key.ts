import { InstantSchema, NullableInstantSchema } from './common.js';
import { Type, type Static } from '@sinclair/typebox';

export const ApiKeyRoleSchema = Type.Union([Type.Literal('admin'), Type.Literal('viewer')], {
  description: '`admin` reads and writes; `viewer` only reads',
});
export type ApiKeyRole = Static<typeof ApiKeyRoleSchema>;

export const ApiKeyInputSchema = Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }), role: ApiKeyRoleSchema }, { additionalProperties: false });

export const API_KEY_EXAMPLE = { name: 'support lead', role: 'viewer' };

export const ApiKeySchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  role: ApiKeyRoleSchema,
  prefix: Type.String({
    description:
      'First characters of the key, to recognise it: 10 of a generated key (`exr_` and 6 random ones), only 4 of any other (an `ADMIN_API_KEY` chosen by the operator), since every key, a viewer key too, lists all keys',
  }),
  createdAt: InstantSchema,
  revokedAt: NullableInstantSchema,
  lastUsedAt: Type.Unsafe<Date | string | null>({
    ...NullableInstantSchema,
    description: 'When the key last authenticated a request (null: never); written at most once a minute per key, so up to about a minute behind',
  }),
});

export const CreatedApiKeySchema = Type.Composite([
  ApiKeySchema,
  Type.Object({ key: Type.String({ description: 'The key itself. Shown only in this answer; only its hash is stored.' }) }),
]);

export const ApiKeyIdParamsSchema = Type.Object({ id: Type.String({ format: 'uuid' }) });
