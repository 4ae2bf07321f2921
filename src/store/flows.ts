import type { CountryCode } from 'libphonenumber-js';
import type { Prisma } from '../generated/prisma/client.js';
import type { PrismaClient } from './database.js';
import { referencesOf, type Action, type Flow, type FlowInput, type FlowReplace, type FlowType, type Rule } from '../schemas/flow.js';
import { InvalidFieldError, NotFoundError, UnprocessableError } from '../errors.js';
import { notANumber, toE164 } from '../exotel/phone.js';
import { enumValue } from '../exotel/params.js';
import { recordChange, unlessUnchanged, type Actor } from './audit.js';
import { existingSlugs } from './references.js';

const ENTITY = 'flow';
type Tx = Prisma.TransactionClient;
const select = { slug: true, name: true, type: true, mode: true, rules: true, otherwise: true, onError: true, createdAt: true, updatedAt: true } as const;
/** A flows row as Prisma returns it (and loadSnapshot's SQL, aliased alike). */
export type FlowRow = Prisma.FlowGetPayload<{ select: typeof select }>;

export function toFlow(row: FlowRow): Flow {
  return {
    ...row,
    type: row.type as FlowType,
    mode: row.mode as Flow['mode'],
    rules: row.rules as Rule[],
    otherwise: row.otherwise as Action,
    onError: row.onError as Action,
  };
}

const ACTION_KEYS: Record<FlowType, string[][]> = {
  passthru: [['branch', 'url'], ['branch'], ['availability'], ['availability', 'reason']],
  switch: [['select']],
  dial: [['dialGroup'], ['dialGroups'], ['numbers']],
};
const ACTION_HELP: Record<FlowType, string> = {
  passthru: '{"branch":"A"|"B","url"?} or {"availability":"toggle"|"available"|"away","reason"?}',
  switch: '{"select":"<case>"}',
  dial: '{"dialGroup":"<slug>"}, {"dialGroups":["<slug>",...]} or {"numbers":[...]}',
};

/** The action fits the flow's type; dial numbers become E.164. 400 naming the field otherwise. */
function checkAction(type: FlowType, action: Action, field: string, country: CountryCode): Action {
  const keys = Object.keys(action).sort().join(',');
  if (!ACTION_KEYS[type].some((k) => [...k].sort().join(',') === keys)) {
    throw new InvalidFieldError(field, `a ${type} flow's action is ${ACTION_HELP[type]}`);
  }
  // Exotel continues at a URL answered with 200; a 302 (branch B) carries none.
  if ('url' in action && action.url !== undefined && action.branch === 'B') {
    throw new InvalidFieldError(
      `${field}/branch`,
      "with a url the answer is 200 with the URL as its body (Exotel continues there), never branch B's 302: give branch A with the url, or branch B without one",
    );
  }
  // Answered as it is ({"select":" sales "}): a case of Exotel's Switch-case applet with spaces around its name is not what anyone typed.
  if ('select' in action && action.select.trim() !== action.select) {
    const name = action.select.trim();
    throw new InvalidFieldError(
      `${field}/select`,
      `'${action.select}' ${name ? 'has spaces around it' : 'is blank'}, so the Switch-case applet would match none of its cases: the case's name is answered exactly as given${name ? `; write '${name}'` : ''}`,
    );
  }
  if ('dialGroups' in action) {
    action.dialGroups.forEach((slug, i) => {
      const first = action.dialGroups.indexOf(slug);
      if (first < i) throw new InvalidFieldError(`${field}/dialGroups/${i}`, `'${slug}' is already tier ${first}; a group appears once in the tiers`);
    });
  }
  if ('numbers' in action) {
    const seen = new Map<string, number>();
    return {
      numbers: action.numbers.map((n, i) => {
        const e164 = toE164(n, country);
        if (!e164) throw new InvalidFieldError(`${field}/numbers/${i}`, notANumber(n, country));
        // As in a dial group: the same agent twice (written in two forms) would be offered twice.
        const first = seen.get(e164);
        if (first !== undefined) throw new InvalidFieldError(`${field}/numbers/${i}`, `${e164} is already number ${first}; a number appears once in the list`);
        seen.set(e164, i);
        return e164;
      }),
    };
  }
  return action;
}

/** What Exotel sends as DialCallStatus after a Connect attempt (docs/exotel.md). */
const DIAL_CALL_STATUSES = ['completed', 'busy', 'no-answer', 'failed', 'canceled'];

/** Keys a caller can press: Exotel's `digits` hold only these (sent as `"42"`, compared without the quotes). */
const KEYPAD = /^[0-9*#]*$/;

/** Every value of a digits or customField condition, with its path below `when/<condition>`. */
function textValues(m: NonNullable<Rule['when']['digits']>): Array<[string, string]> {
  if ('equals' in m) return [['equals', m.equals]];
  if ('in' in m) return m.in.map((v, j): [string, string] => [`in/${j}`, v]);
  return [['prefix', m.prefix]];
}

/** The name of an unnamed rule: its position, counted from 1 as a person reads the list. */
export const ruleNameAt = (index: number) => `rule ${index + 1}`;

/** onError is answered when the database cannot be used: it may not need it. */
function onErrorAction(type: FlowType, action: Action, country: CountryCode): Action {
  if ('availability' in action)
    throw new InvalidFieldError('body/onError', 'is answered when the database cannot be reached, so it cannot set availability; give {"branch":…}');
  return checkAction(type, action, 'body/onError', country);
}

/** Validates what the schema cannot, names unnamed rules, and normalises numbers. */
function normalise(input: FlowReplace, country: CountryCode): FlowReplace & { mode: 'sync' | 'async' } {
  if (input.mode === 'async' && input.type !== 'passthru') throw new InvalidFieldError('body/mode', 'only passthru flows can be async');
  const names = new Set<string>();
  const rules = input.rules.map((rule, i): Rule => {
    const name = rule.name ?? ruleNameAt(i);
    if (names.has(name)) {
      throw new InvalidFieldError(
        `body/rules/${i}/name`,
        `'${name}' is used by an earlier rule; rule names are unique in a flow${rule.name === undefined ? ' (an unnamed rule is named by its position): give this rule a name' : ''}`,
      );
    }
    names.add(name);
    const when = { ...rule.when };
    // Compared with the call's as the parser reads both ('No Answer' → 'no-answer'): another word never matches.
    when.dialCallStatus?.forEach((status, j) => {
      if (!DIAL_CALL_STATUSES.includes(enumValue(status) ?? '')) {
        throw new InvalidFieldError(
          `body/rules/${i}/when/dialCallStatus/${j}`,
          `'${status}' is no DialCallStatus of Exotel's, so the rule would never hold; give one of ${DIAL_CALL_STATUSES.join(', ')}`,
        );
      }
    });
    for (const [path, value] of when.digits ? textValues(when.digits) : []) {
      if (!KEYPAD.test(value)) {
        const keys = value.replace(/[^0-9*#]/g, '');
        throw new InvalidFieldError(
          `body/rules/${i}/when/digits/${path}`,
          `'${value}' is not keys of a phone keypad, so the rule would never hold: digits are 0-9, * and #, compared without the double quotes Exotel wraps them in${keys ? `; write '${keys}'` : ''}`,
        );
      }
    }
    // As the call's is read: trimmed, and an empty CustomField is none (src/exotel/params.ts).
    for (const [path, value] of when.customField ? textValues(when.customField) : []) {
      if (value === '' || value.trim() !== value) {
        throw new InvalidFieldError(
          `body/rules/${i}/when/customField/${path}`,
          `'${value}' ${value.trim() === '' ? 'is empty' : 'has spaces around it'}, so the rule would never hold: a call's CustomField is compared trimmed, and an empty one counts as not sent${value.trim() ? `; write '${value.trim()}'` : ''}`,
        );
      }
    }
    if (when.calledNumber) {
      when.calledNumber = when.calledNumber.map((n, j) => {
        const e164 = toE164(n, country);
        if (!e164) throw new InvalidFieldError(`body/rules/${i}/when/calledNumber/${j}`, notANumber(n, country));
        return e164;
      });
    }
    return { name, when, then: checkAction(input.type, rule.then, `body/rules/${i}/then`, country) };
  });
  return {
    ...input,
    mode: input.mode ?? 'sync',
    rules,
    otherwise: checkAction(input.type, input.otherwise, 'body/otherwise', country),
    onError: onErrorAction(input.type, input.onError, country),
  };
}

/**
 * 422 naming every VIP list, schedule or dial group the flow refers to that does not exist. Those
 * that do are held until commit (existingSlugs), so none can be deleted in between.
 */
async function checkReferences(tx: Tx, flow: FlowReplace): Promise<void> {
  const want = referencesOf(flow);
  const problems: string[] = [];
  for (const kind of ['vip-list', 'schedule', 'dial-group'] as const) {
    const have = await existingSlugs(tx, kind, want[kind]);
    for (const s of want[kind]) if (!have.has(s)) problems.push(`${kind} '${s}'`);
  }
  if (problems.length > 0) throw new UnprocessableError(`the flow refers to ${problems.join(', ')}, which ${problems.length > 1 ? 'do' : 'does'} not exist`);
}

const toJson = (v: unknown) => v as Prisma.InputJsonValue;

export async function listFlows(prisma: PrismaClient): Promise<Flow[]> {
  return (await prisma.flow.findMany({ select, orderBy: { slug: 'asc' } })).map(toFlow);
}

export async function getFlow(prisma: PrismaClient, slug: string): Promise<Flow> {
  const row = await prisma.flow.findUnique({ where: { slug }, select });
  if (!row) throw new NotFoundError(ENTITY, slug);
  return toFlow(row);
}

export async function createFlow(prisma: PrismaClient, actor: Actor, input: FlowInput, country: CountryCode): Promise<Flow> {
  const { slug, ...rest } = input;
  const flow = normalise(rest, country);
  return prisma.$transaction(async (tx) => {
    await checkReferences(tx, flow);
    const row = toFlow(
      await tx.flow.create({
        data: { slug, ...flow, rules: toJson(flow.rules), otherwise: toJson(flow.otherwise), onError: toJson(flow.onError) },
        select,
      }),
    );
    await recordChange(tx, actor, 'create', ENTITY, slug, null, row);
    return row;
  });
}

/**
 * Locks the flow's row for the rest of the transaction and reads it: concurrent changes of one flow
 * queue, and each audits as its `before` what the one before it left (as lockGroup does for groups).
 */
async function lockFlow(tx: Tx, slug: string): Promise<FlowRow> {
  const locked = await tx.$queryRaw<Array<{ id: number }>>`SELECT id FROM flows WHERE slug = ${slug} FOR UPDATE`;
  if (locked.length === 0) throw new NotFoundError(ENTITY, slug);
  return tx.flow.findUniqueOrThrow({ where: { slug }, select });
}

/** A PUT of the flow as it is stored changes nothing: no new updatedAt, no audit entry, no reload (unlessUnchanged). */
export async function replaceFlow(prisma: PrismaClient, actor: Actor, slug: string, input: FlowReplace, country: CountryCode): Promise<Flow> {
  const flow = normalise(input, country);
  return unlessUnchanged((same) =>
    prisma.$transaction(async (tx) => {
      const found = await lockFlow(tx, slug);
      await checkReferences(tx, flow);
      const after = toFlow(
        await tx.flow.update({
          where: { slug },
          data: { ...flow, rules: toJson(flow.rules), otherwise: toJson(flow.otherwise), onError: toJson(flow.onError) },
          select,
        }),
      );
      same(toFlow(found), after);
      await recordChange(tx, actor, 'replace', ENTITY, slug, toFlow(found), after);
      return after;
    }),
  );
}

export async function deleteFlow(prisma: PrismaClient, actor: Actor, slug: string): Promise<void> {
  await prisma.$transaction(async (tx) => {
    const found = await lockFlow(tx, slug);
    await tx.flow.delete({ where: { slug } });
    await recordChange(tx, actor, 'delete', ENTITY, slug, toFlow(found), null);
  });
}
