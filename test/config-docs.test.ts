/**
 * README's Configuration table and docker-compose.yml's exoroute service against src/config.ts's
 * schema, both ways: the names, the defaults (as loadConfig gives them) and the bounds a reader is
 * told, so that a variable added, renamed or re-bounded in the code fails here until the docs say so.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ConfigSchema, loadConfig } from '../src/config.js';

interface Row {
  name: string;
  /** One of two variables sharing the row (`PORT` / `HOST`): the other's bounds may be stated there. */
  shared: boolean;
  default: string;
  meaning: string;
}

/** The rows of README's table under "## Configuration", one per variable (`PORT` / `HOST` is two). */
function configurationTable(readme: string): Row[] {
  const section = readme.slice(readme.indexOf('\n## Configuration\n'));
  const body = section.slice(0, section.indexOf('\n## ', 1));
  const rows: Row[] = [];
  for (const line of body.split('\n')) {
    const cells = /^\| (`.*?) \| (.*?) \| (.*) \|$/.exec(line);
    if (!cells) continue;
    const names = cells[1]!.split(' / ').map((n) => n.replace(/`/g, ''));
    const defaults = names.length > 1 ? cells[2]!.split(' / ') : [cells[2]!];
    for (const [i, name] of names.entries()) rows.push({ name, shared: names.length > 1, default: defaults[i] ?? '', meaning: cells[3]! });
  }
  return rows;
}

const properties = ConfigSchema.properties as Record<string, { minimum?: number; maximum?: number; minLength?: number; maxLength?: number }>;
const rows = configurationTable(readFileSync('README.md', 'utf8'));
const defaults = loadConfig({}) as unknown as Record<string, unknown>;

t.test("README's Configuration table names every variable src/config.ts reads, and no other", async (t) => {
  t.ok(rows.length > 20, `${rows.length} rows read`);
  t.same(rows.map((r) => r.name).sort(), Object.keys(properties).sort());
});

t.test("each row's default is the one loadConfig gives when the variable is unset", async (t) => {
  for (const row of rows) {
    const value = defaults[row.name];
    if (value === undefined || (Array.isArray(value) && value.length === 0)) {
      t.match(row.default, /^(unset|generated)\b/, `${row.name}: unset by default, and the table says so`);
      continue;
    }
    // PUBLIC_URL's default is written in terms of HOST and PORT.
    const shown = /^`([^`]*)`/.exec(row.default)?.[1]?.replace('HOST', String(defaults.HOST)).replace('PORT', String(defaults.PORT));
    t.equal(shown, String(value), `${row.name}: default ${String(value)}`);
  }
});

t.test('each bounded variable states its bounds, as the start checks them', async (t) => {
  for (const row of rows) {
    const s = properties[row.name]!;
    const [lo, hi] = s.maximum !== undefined ? [s.minimum, s.maximum] : s.maxLength !== undefined ? [s.minLength, s.maxLength] : [];
    const stated = [...`${row.default} ${row.meaning}`.matchAll(/\b(\d+) to (\d+)\b/g)].map((m) => `${m[1]} to ${m[2]}`);
    if (hi === undefined) {
      if (!row.shared) t.same(stated, [], `${row.name}: no bounds, none stated`);
    } else {
      const bounds = `${lo ?? 0} to ${hi}`;
      if (row.shared) t.ok(stated.includes(bounds), `${row.name}: ${bounds}`);
      else t.same([...new Set(stated)], [bounds], `${row.name}: ${bounds}`);
    }
  }
});

t.test("docker-compose.yml passes every variable to exoroute's container, and sets none exoroute does not read", async (t) => {
  const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, { environment: Record<string, string> }> };
  // EXOROUTE_DOMAIN makes PUBLIC_URL in the service's command; PGPASSWORD is node-postgres' own.
  const passed = Object.keys(compose.services.exoroute!.environment).filter((n) => n !== 'EXOROUTE_DOMAIN' && n !== 'PGPASSWORD');
  t.same(passed.sort(), Object.keys(properties).sort());
});

/** The variables a deployment file sets, with their values: compose's `${NAME:-value}` gives value. */
function deploymentSettings(): Array<{ file: string; name: string; value: string }> {
  const settings: Array<{ file: string; name: string; value: string }> = [];
  const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, { environment: Record<string, string> }> };
  for (const [name, raw] of Object.entries(compose.services.exoroute!.environment)) {
    settings.push({ file: 'docker-compose.yml', name, value: /^\$\{\w+:-(.*)\}$/.exec(raw)?.[1] ?? raw });
  }
  const assignments = (file: string, line: RegExp) => {
    for (const [, list] of readFileSync(file, 'utf8').matchAll(line)) {
      for (const [, name, value] of list!.matchAll(/(\w+)=(\S+)/g)) settings.push({ file, name: name!, value: value! });
    }
  };
  assignments('Dockerfile', /^ENV (.*)$/gm);
  assignments('deploy/exoroute.service', /^Environment=(.*)$/gm);
  return settings;
}

t.test("each value a deployment file sets in place of a variable's default is in the table's row", async (t) => {
  const settings = deploymentSettings().filter(({ name, value }) => name in properties && value !== '' && value !== String(defaults[name]));
  t.ok(settings.length >= 8, `${settings.length} settings read`);
  for (const { file, name, value } of settings) {
    const row = rows.find((r) => r.name === name)!;
    t.ok(`${row.default} ${row.meaning}`.includes(`\`${value}\``), `${name}=${value} (${file}) is in its row`);
  }
});
