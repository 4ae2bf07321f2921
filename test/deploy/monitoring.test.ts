/**
 * The Grafana dashboard and the Prometheus alert rules in deploy/ only use metrics exoroute really
 * exports, with the labels it gives them (checked against a real /metrics scrape of an instance with a
 * dial group, so that the per-group series are there), the dashboard uses the datasource the
 * `monitoring` profile provisions, and promtool accepts the rules and the Prometheus config.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { buildTestApp } from '../helper.js';

const execFileAsync = promisify(execFile);
interface Override {
  matcher: { id: string; options: string };
  properties: Array<{ id: string; value: unknown }>;
}
const dashboard = JSON.parse(readFileSync('deploy/grafana/dashboards/exoroute.json', 'utf8')) as {
  panels: Array<{
    title: string;
    datasource: { uid: string };
    fieldConfig: { defaults: { unit: string }; overrides: Override[] };
    targets: Array<{ refId: string; expr: string; legendFormat: string; datasource: { uid: string } }>;
  }>;
  templating: { list: Array<{ query: { query: string } }> };
};
const rules = parse(readFileSync('deploy/prometheus/alerts.yml', 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
const datasources = parse(readFileSync('deploy/grafana/provisioning/datasources/prometheus.yml', 'utf8')) as { datasources: Array<{ uid: string }> };

/** Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or durations. */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\$\w+/g, '');
  const keywords = new Set(['or', 'and', 'unless', 'bool', 'by', 'on', 'group_left', 'group_right', 'offset']);
  return [...stripped.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)].map((m) => m[1]!).filter((n) => !keywords.has(n));
}

/**
 * The label names a query relies on: those its selectors match on (`name{label="…"}`), by metric, and
 * those it groups by or its legend shows (`by (label)`, `{{label}}`), which one of its metrics must carry.
 */
function labelsUsed(expr: string, legendFormat = ''): { selectors: Array<{ metric: string; labels: string[] }>; kept: string[] } {
  const plain = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const selectors = [...plain.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)].map((m) => ({
    metric: m[1]!,
    labels: [...m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!),
  }));
  const grouped = [...plain.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((l) => l.trim()));
  const shown = [...legendFormat.matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
  return { selectors, kept: [...grouped, ...shown].filter(Boolean) };
}

const used = new Map<string, string>();
/** Each query with where it is: its metrics must be in a scrape with the labels it uses. */
const queries: Array<{ expr: string; legendFormat?: string; where: string }> = [];
for (const panel of dashboard.panels)
  for (const target of panel.targets) {
    for (const n of metricNames(target.expr)) used.set(n, `dashboard panel "${panel.title}"`);
    queries.push({ expr: target.expr, legendFormat: target.legendFormat, where: `dashboard panel "${panel.title}"` });
  }
for (const v of dashboard.templating.list) {
  for (const n of metricNames(v.query.query.replace(/^label_values\((\w+),.*$/, '$1'))) used.set(n, 'dashboard variable');
  // label_values(metric, label): the label the variable lists must be one of the metric's.
  const values = /^label_values\((\w+),\s*(\w+)\)$/.exec(v.query.query);
  if (values) queries.push({ expr: `${values[1]}{${values[2]}!=""}`, where: `dashboard variable ${v.query.query}` });
}
for (const group of rules.groups)
  for (const rule of group.rules) {
    for (const n of metricNames(rule.expr)) used.set(n, `alert ${rule.alert}`);
    queries.push({ expr: rule.expr, where: `alert ${rule.alert}` });
  }

t.test('every metric the dashboard and the alert rules use is in a real /metrics scrape, with the labels they use', async (t) => {
  const ctx = await buildTestApp(t);
  // A dial group, so that the per-group metrics have series to check the queries against.
  const group = await ctx.admin({
    method: 'POST',
    url: '/admin/dial-groups',
    payload: { slug: 'sales', name: 'Sales', strategy: 'sequential', members: [{ number: '09811100001' }] },
  });
  t.equal(group.statusCode, 201);
  const flow = await ctx.admin({
    method: 'POST',
    url: '/admin/flows',
    payload: { slug: 'm', name: 'M', type: 'passthru', rules: [], otherwise: { branch: 'A' }, onError: { branch: 'A' } },
  });
  t.equal(flow.statusCode, 201);
  for (let i = 0; i < 200 && !(ctx.app.rules.current?.flows.has('m') && ctx.app.rules.current.dialGroups.has('sales')); i++)
    await new Promise((r) => setTimeout(r, 10));
  t.equal(
    (await ctx.app.inject({ method: 'GET', url: '/exotel/passthru/m?CallSid=metrics-1' })).statusCode,
    200,
    'one callback, so the labelled histograms have samples',
  );
  const scrape = await ctx.app.inject({ method: 'GET', url: '/metrics' });
  t.equal(scrape.statusCode, 200);
  const families = new Set([...scrape.body.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
  const samples = new Set([...scrape.body.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1]!));
  t.ok(used.size >= 8, `${used.size} metric names found in the dashboard and the rules`);
  for (const [name, where] of used) {
    // `up` is Prometheus' own: 1 when the scrape of the target succeeded.
    if (name === 'up') continue;
    t.ok(samples.has(name) && families.has(name.replace(/_(bucket|count|sum)$/, '')), `${name} (${where}) is in the scrape`);
  }
  // The label names each scraped metric's samples carry; Prometheus adds instance and job to all.
  const labelsOf = new Map<string, Set<string>>();
  for (const m of scrape.body.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} /gm)) {
    const labels = labelsOf.get(m[1]!) ?? labelsOf.set(m[1]!, new Set(['instance', 'job'])).get(m[1]!)!;
    for (const l of m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) labels.add(l[1]!);
  }
  const scraped = (metric: string) => labelsOf.get(metric) ?? new Set(['instance', 'job']);
  t.ok(scraped('exoroute_dial_group_agents').has('group'), 'the dial group has its series');
  for (const { expr, legendFormat, where } of queries) {
    const { selectors, kept } = labelsUsed(expr, legendFormat);
    for (const { metric, labels } of selectors) for (const l of labels) t.ok(scraped(metric).has(l), `${where}: ${metric} has the label ${l}`);
    const carried = new Set(selectors.flatMap(({ metric }) => [...scraped(metric)]).concat(metricNames(expr).flatMap((n) => [...scraped(n)])));
    for (const l of kept) t.ok(carried.has(l), `${where}: the label ${l} it keeps is one of its metrics'`);
  }
});

t.test('the dashboard queries the datasource the monitoring profile provisions', async (t) => {
  const uids = new Set(datasources.datasources.map((d) => d.uid));
  for (const panel of dashboard.panels) {
    t.ok(uids.has(panel.datasource.uid) && panel.targets.every((x) => uids.has(x.datasource.uid)), `panel "${panel.title}"`);
  }
  const titles = dashboard.panels.map((p) => p.title).join(' | ');
  for (const topic of [
    /per second by endpoint and outcome/,
    /percentiles against the budget/,
    /onError/,
    /spool depth/,
    /commit latency/,
    /snapshot age/,
    /Agents by state, per queue/,
    /Agents by state \(each agent once\)/,
  ])
    t.match(titles, topic);
  // Every reason /readyz is 503 for, as the ExorouteNotReady alert names them.
  const notReady = dashboard.panels.find((p) => p.title === 'Instances not ready, by reason');
  t.same(
    notReady?.targets.flatMap((x) => metricNames(x.expr)),
    ['exoroute_not_ready'],
    'the "not ready" panel draws exoroute_not_ready',
  );
  // Each agent once, by state: exoroute_agents itself, not a sum over groups of exoroute_dial_group_agents.
  const allAgents = dashboard.panels.find((p) => p.title === 'Agents by state (each agent once)');
  t.same(
    allAgents?.targets.flatMap((x) => metricNames(x.expr)),
    ['exoroute_agents'],
    'the "agents by state" panel draws exoroute_agents',
  );
  t.same(rules.groups[0]!.rules.map((r) => r.alert).sort(), [
    'ExorouteDown',
    'ExorouteLatencyNearBudget',
    'ExorouteNotReady',
    'ExorouteOnErrorAnswers',
    'ExorouteSpoolNotDraining',
  ]);
});

t.test('every panel draws each series in its own unit: seconds only for durations', async (t) => {
  for (const panel of dashboard.panels) {
    for (const target of panel.targets) {
      // The unit Grafana gives the query's series: an override for its query or its name, else the panel's.
      const override = panel.fieldConfig.overrides.find(
        (o) =>
          (o.matcher.id === 'byFrameRefID' && o.matcher.options === target.refId) || (o.matcher.id === 'byName' && o.matcher.options === target.legendFormat),
      );
      const unit = (override?.properties.find((p) => p.id === 'unit')?.value as string | undefined) ?? panel.fieldConfig.defaults.unit;
      // A duration: a quantile of a _seconds histogram, or a _seconds gauge; not a rate, not a 0/1 gauge.
      const duration = /^histogram_quantile\(/.test(target.expr) || (/_seconds\b/.test(target.expr) && !/\brate\(/.test(target.expr));
      const perSecond = !duration && /\brate\(/.test(target.expr);
      const what = `panel "${panel.title}", ${target.legendFormat} (${unit})`;
      if (duration) t.equal(unit, 's', what);
      else if (perSecond) t.ok(['reqps', 'ops', 'rps', 'wps'].includes(unit), what);
      else t.not(unit, 's', what);
    }
  }
});

const promtool = await execFileAsync('promtool', ['--version']).then(
  () => true,
  () => false,
);
t.test(
  'promtool accepts the alert rules and the Prometheus config',
  { skip: promtool ? false : 'promtool is not installed (Debian package prometheus; .ci/run installs it)' },
  async (t) => {
    const checked = await execFileAsync('promtool', ['check', 'rules', 'deploy/prometheus/alerts.yml']);
    t.match(checked.stdout, /SUCCESS: 5 rules found/);
    // --syntax-only: the scrape's token file only exists in the container.
    const config = await execFileAsync('promtool', ['check', 'config', '--syntax-only', 'deploy/prometheus/prometheus.yml']);
    t.match(config.stdout + config.stderr, /SUCCESS/);
  },
);

t.test(
  'the alert rules fire and resolve when they should (promtool test rules, test/deploy/alerts.promtool.yml)',
  { skip: promtool ? false : 'promtool is not installed (Debian package prometheus; .ci/run installs it)' },
  async (t) => {
    const tested = await execFileAsync('promtool', ['test', 'rules', 'test/deploy/alerts.promtool.yml']).then(
      (r) => ({ ok: true, output: r.stdout + r.stderr }),
      (err: { stdout?: string; stderr?: string }) => ({ ok: false, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
    );
    t.ok(tested.ok, tested.output);
    t.match(tested.output, /SUCCESS/);
  },
);
