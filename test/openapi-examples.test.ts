/**
 * Swagger UI that teaches: every operation described, every request body with an example that its
 * own schema accepts (so "Try it out" starts from a request that works), and the callback
 * endpoints documented with the Exotel parameters they read and the `token`.
 */
import t from 'tap';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { IANAZone } from 'luxon';
import { parse } from 'yaml';
import { renderOpenApiYaml } from '../src/openapi-document.js';

interface Media {
  schema: object;
  example?: unknown;
  examples?: Record<string, { value: unknown }>;
}
interface Operation {
  operationId: string;
  description?: string;
  security?: Array<Record<string, string[]>>;
  parameters?: Array<{ in: string; name: string; required?: boolean; description?: string }>;
  requestBody?: { content: Record<string, Media> };
}

const doc = parse(await renderOpenApiYaml()) as {
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, { in?: string; name?: string }>; schemas: Record<string, object> };
};
const ops = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method: method.toUpperCase(), op })));

// As the app's own Ajv for request bodies (src/plugins/validation.ts): every format it knows, the
// IANA timezone one included, and no type coercion (an example must have its values' types as sent).
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.addFormat('iana-timezone', { type: 'string', validate: (s: string) => IANAZone.isValidZone(s) });
/** A schema of the document, its `$ref`s (#/components/schemas/…) compiled beside the components. */
const compile = (schema: object) => ajv.compile({ ...schema, components: doc.components });
/** The component a schema names by `$ref`, or the schema itself. */
const resolved = (schema: object | undefined) => {
  const ref = (schema as { $ref?: string } | undefined)?.$ref;
  return ref ? doc.components.schemas[ref.replace('#/components/schemas/', '')] : schema;
};

t.test('every operation has a description', async (t) => {
  t.same(
    ops.filter(({ op }) => !op.description?.trim()).map(({ method, path }) => `${method} ${path}`),
    [],
  );
});

t.test('every admin request body has an example, and each example passes its schema', async (t) => {
  const bodies = ops.filter(({ path, op }) => path.startsWith('/admin/') && op.requestBody);
  t.ok(bodies.length >= 14, `${bodies.length} admin operations take a body`);
  for (const { method, path, op } of bodies) {
    const media = op.requestBody!.content['application/json']!;
    const examples = media.example !== undefined ? [media.example] : Object.values(media.examples ?? {}).map((e) => e.value);
    t.ok(examples.length > 0, `${method} ${path} has an example`);
    const validate = compile(media.schema);
    for (const example of examples) {
      const ok = validate(structuredClone(example));
      t.ok(ok, `${method} ${path}: example passes its schema`, { errors: validate.errors, example });
    }
  }
});

t.test('an example that breaks its schema is caught (the check can fail)', async (t) => {
  const create = doc.paths['/admin/flows']!.post!.requestBody!.content['application/json']!;
  t.notOk(compile(create.schema)({ ...(create.example as object), type: 'fax' }));
});

t.test('callbacks: the Exotel parameters they read, and the secret as Basic password or token', async (t) => {
  const token = Object.entries(doc.components.securitySchemes).find(([, s]) => s.in === 'query' && s.name === 'token')?.[0];
  t.ok(token, 'a security scheme for the token parameter');
  const callbacks = ops.filter(({ path }) => path.startsWith('/exotel/'));
  t.equal(callbacks.length, 10, 'five endpoints, GET and POST');
  for (const { method, path, op } of callbacks) {
    t.ok(
      op.security?.some((s) => token! in s),
      `${method} ${path} names the token`,
    );
    t.match(op.description, /token/, `${method} ${path} says how the secret is sent`);
    const names =
      method === 'GET'
        ? (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name)
        : Object.keys(
            (resolved(op.requestBody?.content['application/x-www-form-urlencoded']?.schema) as { properties?: object } | undefined)?.properties ?? {},
          );
    const wanted =
      path === '/exotel/dial-events'
        ? ['CallSid', 'DialWhomNumber', 'Status', 'EventType']
        : ['CallSid', 'CallFrom', 'CallTo', 'digits', 'DialCallStatus', 'DialWhomNumber'];
    t.same(
      wanted.filter((n) => !names.includes(n)),
      [],
      `${method} ${path} documents ${wanted.join(', ')}`,
    );
  }
});
