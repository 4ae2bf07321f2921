/**
 * README's Flows section is where an engineer learns what a flow may say: it names every condition
 * and every action form the flow schema takes, so one added to the schema is documented there too.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { ActionSchema, ConditionsSchema } from '../src/schemas/flow.js';

const readme = readFileSync('README.md', 'utf8');
const start = readme.indexOf('\n### Flows\n');
const flows = readme.slice(start, readme.indexOf('\n## ', start + 1));

t.test("README's Flows section names every condition a rule's `when` takes", async (t) => {
  t.ok(start > 0, 'README has a Flows section');
  const conditions = Object.keys(ConditionsSchema.properties);
  t.ok(conditions.length >= 10, `${conditions.length} conditions`);
  for (const key of conditions) t.ok(flows.includes(`\`${key}\``), `it names \`${key}\``);
});

t.test("README's Flows section names every action form a flow takes", async (t) => {
  const forms = (ActionSchema.anyOf as Array<{ properties: Record<string, unknown>; required?: string[] }>).map(
    (s) => s.required?.[0] ?? Object.keys(s.properties)[0]!,
  );
  t.ok(forms.length >= 6, `${forms.length} action forms`);
  for (const key of forms) t.ok(flows.includes(`{"${key}":`), `it names {"${key}": …}`);
});
