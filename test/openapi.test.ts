import t from 'tap';
import { readFile } from 'node:fs/promises';
import { renderOpenApiYaml } from '../src/openapi-document.js';
import { buildTestApp } from './helper.js';

t.test('openapi.yaml at the repo root is what the app generates (run `npm run openapi` to refresh)', async (t) => {
  const committed = await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8');
  t.equal(committed, await renderOpenApiYaml());
});

t.test('every route has an operationId, tags and response schemas', async (t) => {
  const yaml = await renderOpenApiYaml();
  const { parse } = await import('yaml');
  const doc = parse(yaml) as { paths: Record<string, Record<string, { operationId?: string; tags?: string[]; responses?: object }>> };
  const ops = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([m, op]) => ({ path, m, op })));
  t.ok(ops.length > 10, `${ops.length} operations`);
  for (const { path, m, op } of ops) {
    t.ok(op.operationId, `${m} ${path} has an operationId`);
    t.ok(op.tags?.length, `${m} ${path} has tags`);
    t.ok(op.responses && Object.keys(op.responses).length > 0, `${m} ${path} declares responses`);
  }
});

t.test('Swagger UI is served at /docs and the document at /openapi.json', async (t) => {
  const { app } = await buildTestApp(t);
  const docs = await app.inject({ method: 'GET', url: '/docs/' });
  t.equal(docs.statusCode, 200);
  t.match(docs.headers['content-type'], /text\/html/);
  const json = await app.inject({ method: 'GET', url: '/openapi.json' });
  t.equal(json.statusCode, 200);
  t.equal(json.json().info.title, 'exoroute');
  t.ok(json.json().paths['/admin/vip-lists/{slug}/entries'], 'admin routes are documented');
});

t.test("the service's own address, opened in a browser, leads to Swagger UI rather than a 404", async (t) => {
  const { app } = await buildTestApp(t);
  for (const method of ['GET', 'HEAD'] as const) {
    const root = await app.inject({ method, url: '/' });
    t.equal(root.statusCode, 302, `${method} /`);
    t.equal(root.headers.location, '/docs', `${method} /: to Swagger UI`);
  }
  const page = await app.inject({ method: 'GET', url: '/docs' });
  t.equal(page.statusCode, 200, 'where the redirect leads is the page');
  t.match(page.headers['content-type'], /text\/html/);
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 404, 'only a GET (or HEAD) is led there');
});

t.test('a parameter with a default is not marked required: Swagger UI and generated clients may leave it out', async (t) => {
  const { parse } = await import('yaml');
  const doc = parse(await renderOpenApiYaml()) as {
    paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string; required?: boolean; schema?: { default?: unknown } }> }>>;
  };
  let withDefault = 0;
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(methods)) {
      for (const p of op.parameters ?? []) {
        if (p.schema?.default === undefined) continue;
        withDefault++;
        t.notOk(p.required, `${m} ${path} ${p.in} ${p.name} (default ${JSON.stringify(p.schema.default)})`);
      }
    }
  }
  t.ok(withDefault >= 4, `${withDefault} parameters with a default, the lists' limit among them`);
});

t.test('each model is one named schema: its uses are $refs, never copies, and every $ref resolves', async (t) => {
  const { parse } = await import('yaml');
  const doc = parse(await renderOpenApiYaml()) as {
    paths: object;
    components: { schemas: Record<string, Record<string, unknown>>; responses?: Record<string, Record<string, unknown>> };
  };
  const schemas = doc.components.schemas;
  const responses = doc.components.responses ?? {};
  // The models a user meets, by the names Swagger UI lists and generated clients take.
  for (const name of ['Error', 'FlowView', 'FlowInput', 'DialGroup', 'Schedule', 'VipList', 'VipEntry', 'Agent', 'Cdr', 'ApiKey', 'AuditEntry']) {
    t.ok(schemas[name], `components.schemas.${name}`);
  }
  const flowGet = parse(await renderOpenApiYaml()).paths['/admin/flows/{slug}'].get.responses['200'].content['application/json'].schema;
  t.same(flowGet, { $ref: '#/components/schemas/FlowView' }, 'GET /admin/flows/{slug} answers a FlowView');

  // A copy: an object with the same keys and values as a component, but for its own description or examples.
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
          )
        : v;
  const shape = (o: Record<string, unknown>) =>
    JSON.stringify(sorted(Object.fromEntries(Object.entries(o).filter(([k]) => !['description', 'example', 'examples', 'title'].includes(k)))));
  const components = new Map(Object.entries(schemas).map(([name, s]) => [shape(s), name]));
  const copies: string[] = [];
  const refs = new Set<string>();
  const walk = (node: unknown, where: string, root: boolean) => {
    if (Array.isArray(node)) {
      for (const [i, v] of node.entries()) walk(v, `${where}/${i}`, false);
    } else if (node && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (typeof o.$ref === 'string') refs.add(o.$ref);
      const copy = components.get(shape(o));
      if (copy && !root) copies.push(`${where} is a copy of ${copy}`);
      for (const [k, v] of Object.entries(o)) walk(v, `${where}/${k}`, false);
    }
  };
  walk(doc.paths, '#/paths', false);
  for (const [name, s] of Object.entries(schemas)) walk(s, `#/components/schemas/${name}`, true);
  for (const [name, r] of Object.entries(responses)) walk(r, `#/components/responses/${name}`, false);
  t.same(copies, [], 'no component written out again');
  t.ok(refs.size > 40, `${refs.size} components referenced`);
  t.same(
    [...refs].filter((r) =>
      r.startsWith('#/components/responses/') ? !responses[r.replace('#/components/responses/', '')] : !schemas[r.replace('#/components/schemas/', '')],
    ),
    [],
    'every $ref names a component',
  );
  // Every admin route can answer 503 (its key is looked up in Postgres): one named answer, with its Retry-After.
  const paths = doc.paths as Record<string, Record<string, { responses: Record<string, { $ref?: string }> }>>;
  const admin = Object.entries(paths).filter(([path]) => path.startsWith('/admin/'));
  t.same(
    admin.flatMap(([path, methods]) =>
      Object.entries(methods)
        .filter(([, op]) => op.responses['503']?.$ref !== '#/components/responses/AdminUnavailable')
        .map(([method]) => `${method.toUpperCase()} ${path}`),
    ),
    [],
    "every admin route's 503 is components.responses.AdminUnavailable",
  );
  t.ok((responses.AdminUnavailable?.headers as Record<string, unknown> | undefined)?.['Retry-After'], 'which declares Retry-After');
});

t.test("docs/contract.md §4's table names every admin path the API serves", async (t) => {
  const { parse } = await import('yaml');
  const doc = parse(await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8')) as { paths: Record<string, unknown> };
  const contract = await readFile(new URL('../docs/contract.md', import.meta.url), 'utf8');
  const start = contract.indexOf('## 4. The admin API');
  const section = contract.slice(start, contract.indexOf('\n## ', start + 4));
  // The table writes a route's last segments after a slash once (`GET/PATCH/DELETE /admin/vip-lists/{slug}`).
  const named = new Set([...section.matchAll(/`[A-Z/]+ (\/admin\/[^`\s?]+)/g)].map((m) => m[1]!));
  for (const path of Object.keys(doc.paths).filter((p) => p.startsWith('/admin/'))) {
    t.ok(named.has(path), `${path} is in the table`);
  }
});

t.test("createFlow's description names every action a flow takes (Swagger UI is where a support lead reads it)", async (t) => {
  const { ActionSchema } = await import('../src/schemas/flow.js');
  const { parse } = await import('yaml');
  const doc = parse(await renderOpenApiYaml()) as { paths: Record<string, Record<string, { operationId?: string; description?: string }>> };
  const createFlow = Object.values(doc.paths)
    .flatMap((p) => Object.values(p))
    .find((op) => op.operationId === 'createFlow');
  const forms = (ActionSchema.anyOf as Array<{ properties: Record<string, unknown>; required?: string[] }>).map(
    (s) => s.required?.[0] ?? Object.keys(s.properties)[0]!,
  );
  t.same(forms.sort(), ['availability', 'branch', 'dialGroup', 'dialGroups', 'numbers', 'select'], 'the action forms the schema takes');
  for (const key of forms) t.match(createFlow?.description, `{"${key}":`, `it names {"${key}": …}`);
});
