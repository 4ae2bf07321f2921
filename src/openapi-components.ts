import type { TSchema } from '@sinclair/typebox';
import * as agent from './schemas/agent.js';
import * as apiKey from './schemas/api-key.js';
import * as audit from './schemas/audit.js';
import * as cdr from './schemas/cdr.js';
import * as common from './schemas/common.js';
import * as dialGroup from './schemas/dial-group.js';
import * as exotelParams from './schemas/exotel-params.js';
import * as flow from './schemas/flow.js';
import * as refusal from './schemas/refusal.js';
import * as schedule from './schemas/schedule.js';
import * as vipList from './schemas/vip-list.js';

/**
 * The OpenAPI document's named schemas. Routes declare their schemas inline (TypeBox objects, which
 * Fastify validates and serializes with), so @fastify/swagger writes each one out wherever a route
 * uses it: a flow's schema some twenty times. Here every object schema of src/schemas is a component
 * named after its export (`FlowViewSchema` → `FlowView`), and each place the document repeats one is
 * a `$ref` to it: one definition per model for Swagger UI's list and for generated clients. Only the
 * document changes; what routes validate and send does not.
 */
const modules = [common, flow, dialGroup, schedule, vipList, agent, cdr, apiKey, audit, refusal, exotelParams];

/**
 * Object schemas (and unions of them) by component name. Those a route takes as its query string or
 * path are parameters in OpenAPI, not schemas: unless a body has their shape, no `$ref` names them
 * and they are left out.
 */
export function componentSchemas(): Record<string, TSchema> {
  const named: Record<string, TSchema> = {};
  for (const mod of modules) {
    for (const [key, value] of Object.entries(mod)) {
      const name = /^([A-Z]\w*)Schema$/.exec(key)?.[1];
      if (!name || !isModel(value as TSchema)) continue;
      named[name] = value as TSchema;
    }
  }
  return named;
}

function isModel(schema: TSchema): boolean {
  if (schema.type === 'object') return true;
  const members = (schema.anyOf ?? schema.oneOf) as TSchema[] | undefined;
  return Array.isArray(members) && members.length > 0 && members.every(isModel);
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Keys a use may set on its own without being another schema: swagger moves a body's examples to its media object. */
const OWN_KEYS = new Set(['description', 'example', 'examples', 'title']);

/** A schema's structure as a string, keys sorted, without the keys a use may set on its own. */
function shape(schema: Json): string {
  const structure = Object.fromEntries(Object.entries(schema).filter(([key]) => !OWN_KEYS.has(key)));
  return JSON.stringify(structure, (_key, value: unknown) =>
    isObject(value)
      ? Object.fromEntries(
          Object.keys(value)
            .sort()
            .map((k) => [k, value[k]]),
        )
      : value,
  );
}

const REF = '#/components/schemas/';
const RESPONSE_REF = '#/components/responses/';

/** Answers many routes give alike, by their description: see sharedResponse. */
const sharedResponses = new Map<string, string>();

/**
 * `schema` (a route's answer, with its description) as one the document names `name` under
 * `components.responses`: each operation that gives it says `$ref` to it, so a generated client
 * has one definition of, say, the admin API's 503 and its Retry-After, not one per route.
 */
export function sharedResponse<T extends { description: string }>(name: string, schema: T): T {
  sharedResponses.set(schema.description, name);
  return schema;
}

/** Each operation's answers that sharedResponse named as `$ref`s to `components.responses`. */
function refResponses(paths: Json): { paths: Json; responses: Json } {
  const responses: Json = {};
  const refs = (answers: Json): Json =>
    Object.fromEntries(
      Object.entries(answers).map(([status, answer]) => {
        const name = isObject(answer) && typeof answer.description === 'string' ? sharedResponses.get(answer.description) : undefined;
        if (!name) return [status, answer];
        // The same description with another body would be a second answer under one name.
        responses[name] ??= answer;
        return shape(responses[name] as Json) === shape(answer as Json) && JSON.stringify(responses[name]) === JSON.stringify(answer)
          ? [status, { $ref: RESPONSE_REF + name }]
          : [status, answer];
      }),
    );
  const out = Object.fromEntries(
    Object.entries(paths).map(([path, methods]) => [
      path,
      Object.fromEntries(
        Object.entries(methods as Json).map(([method, op]) => [method, isObject(op) && isObject(op.responses) ? { ...op, responses: refs(op.responses) } : op]),
      ),
    ]),
  );
  return { paths: out, responses };
}

/**
 * `transformObject` of @fastify/swagger: the document with each inline copy of a component replaced
 * by a `$ref` to it (its own description kept beside the `$ref`, as OpenAPI 3.1 allows), and the
 * components no operation uses removed.
 */
export function refComponents(document: { openapiObject: object } | { swaggerObject: object }): Json {
  const doc = ('openapiObject' in document ? document.openapiObject : document.swaggerObject) as Json & {
    paths: Json;
    components: { schemas: Record<string, Json> };
  };
  const schemas = doc.components.schemas;
  const names = Object.keys(componentSchemas());
  const byShape = new Map<string, string>();
  for (const name of names) if (schemas[name]) byShape.set(shape(schemas[name]), name);

  const refsIn = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(refsIn);
    if (!isObject(node)) return node;
    const name = byShape.get(shape(node));
    if (name) {
      const own = typeof node.description === 'string' && node.description !== schemas[name]!.description;
      return own ? { $ref: REF + name, description: node.description } : { $ref: REF + name };
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, refsIn(v)]));
  };
  // A component's own body is not a use of itself; the schemas inside it are.
  const bodyOf = (body: Json): Json => Object.fromEntries(Object.entries(body).map(([k, v]) => [k, refsIn(v)]));

  const paths = refsIn(doc.paths) as Json;
  const bodies = Object.fromEntries(Object.entries(schemas).map(([name, body]) => [name, names.includes(name) ? bodyOf(body) : body]));
  // Keep the components reached from the operations, directly or through other components.
  const used = new Set<string>();
  const visit = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (isObject(node)) {
      const ref = typeof node.$ref === 'string' && node.$ref.startsWith(REF) ? node.$ref.slice(REF.length) : undefined;
      if (ref && !used.has(ref)) {
        used.add(ref);
        visit(bodies[ref]);
      }
      Object.values(node).forEach(visit);
    }
  };
  visit(paths);
  const kept = Object.fromEntries(Object.entries(bodies).filter(([name]) => !names.includes(name) || used.has(name)));
  const shared = refResponses(paths);
  const responses = Object.keys(shared.responses).length > 0 ? { responses: shared.responses } : {};
  return { ...doc, paths: shared.paths, components: { ...doc.components, schemas: kept, ...responses } };
}
