import { parse as fastParse } from 'fast-querystring';

/**
 * Fastify's querystring parser, made lazy: the router parses every query string before the route
 * is known, but the callback routes never read `request.query` (src/exotel/params.ts reads the raw
 * query string, bounded and case-insensitively), and a callback's ~15 parameters cost ~2 µs to
 * parse for nothing. The admin routes get what Fastify would have given them (fast-querystring's
 * object, validated and coerced by ajv in place), parsed at their first look.
 */
export function lazyQuerystring(text: string): Record<string, unknown> {
  return lazily(text, fastParse);
}

/** An object that is `parse(text)`, parsed at its first use. */
export function lazily(text: string, parse: (text: string) => unknown): Record<string, unknown> {
  if (text.length === 0) return {};
  let parsed: Record<string, unknown> | null = null;
  const query = () => (parsed ??= parse(text) as Record<string, unknown>);
  return new Proxy({} as Record<string, unknown>, {
    get: (_, key) => Reflect.get(query(), key),
    set: (_, key, value) => Reflect.set(query(), key, value),
    has: (_, key) => Reflect.has(query(), key),
    deleteProperty: (_, key) => Reflect.deleteProperty(query(), key),
    ownKeys: () => Reflect.ownKeys(query()),
    getOwnPropertyDescriptor: (_, key) => Reflect.getOwnPropertyDescriptor(query(), key),
    defineProperty: (_, key, descriptor) => Reflect.defineProperty(query(), key, descriptor),
    getPrototypeOf: () => Reflect.getPrototypeOf(query()),
  });
}
