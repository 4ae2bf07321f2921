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
