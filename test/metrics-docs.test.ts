/**
 * README's Metrics table against a real /metrics scrape, both ways: every exoroute metric a scrape
 * exports is in the table, every one the table names is exported, and each with the labels the
 * table gives it, so that an operator writing a query from the README writes one that matches.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { buildTestApp } from './helper.js';

/** The table's metrics, name → label names (`_idle_connections` after a full name shares its prefix). */
function documented(readme: string): Map<string, string[]> {
  const section = readme.slice(readme.indexOf('\n## Metrics\n'));
  const body = section.slice(0, section.indexOf('\n## ', 1));
  const metrics = new Map<string, string[]>();
  for (const line of body.split('\n')) {
    const cell = /^\| (`exoroute_.*?) \|/.exec(line)?.[1];
    if (!cell) continue;
    let prefix = '';
    for (const [, name, labels] of cell.matchAll(/`(\w+)(?:\{([\w,]*)\})?`/g)) {
      const full = name!.startsWith('_') ? prefix + name : name!;
      // `exoroute_db_pool_connections`, `_idle_connections`: the pool's prefix.
      if (!name!.startsWith('_')) prefix = full.replace(/_connections$/, '');
      metrics.set(full, labels ? labels.split(',') : []);
    }
  }
  return metrics;
}

t.test("README's Metrics table names every exoroute metric a scrape exports, with its labels, and no other", async (t) => {
  const ctx = await buildTestApp(t);
  // A dial group and a callback, so that the labelled series have samples.
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/dial-groups',
        payload: { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09811100001' }] },
      })
    ).statusCode,
    201,
  );
  t.equal(
    (
      await ctx.admin({
        method: 'POST',
        url: '/admin/flows',
        payload: { slug: 'm', name: 'M', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } },
      })
    ).statusCode,
    201,
  );
  for (let i = 0; i < 200 && !(ctx.app.rules.current?.flows.has('m') && ctx.app.rules.current.dialGroups.has('sales')); i++)
    await new Promise((r) => setTimeout(r, 10));
  t.equal((await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/m?CallSid=metrics-docs-1' })).statusCode, 200);
  const scrape = await ctx.app.inject({ method: 'GET', url: '/metrics' });
  t.equal(scrape.statusCode, 200);

  const exported = new Map<string, Set<string>>();
  for (const [, name] of scrape.body.matchAll(/^# TYPE (exoroute_\w+) /gm)) exported.set(name!, new Set());
  // A counter with labels has no series before its first count (an offer to an agent): its labels are not seen.
  const sampled = new Set<string>();
  for (const [, sample, labels = ''] of scrape.body.matchAll(/^(exoroute_\w+)(?:\{(.*)\})? /gm)) {
    const family = exported.has(sample!) ? sample! : sample!.replace(/_(bucket|count|sum)$/, '');
    sampled.add(family);
    for (const [, l] of labels!.matchAll(/(\w+)="(?:[^"\\]|\\.)*"/g)) if (l !== 'le') exported.get(family)?.add(l!);
  }
  const table = documented(readFileSync('README.md', 'utf8'));
  t.ok(exported.size > 20, `${exported.size} exoroute metrics exported`);
  t.ok(sampled.size > 15, `${sampled.size} of them with samples`);
  t.same([...table.keys()].sort(), [...exported.keys()].sort(), 'the same metric names');
  for (const [name, labels] of table) {
    if (sampled.has(name)) t.same(labels.sort(), [...exported.get(name)!].sort(), `${name}: labels ${labels.join(',') || '(none)'}`);
  }
});
