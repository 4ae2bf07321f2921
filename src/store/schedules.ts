import type { PrismaClient } from './database.js';
import type { Prisma } from '../generated/prisma/client.js';
import type {
  Schedule,
  ScheduleException,
  ScheduleInput,
  ScheduleOverride,
  ScheduleOverrideInput,
  SchedulePatch,
  ScheduleRules,
  WeeklyWindow,
} from '../schemas/schedule.js';
import { InvalidFieldError, NotFoundError } from '../errors.js';
import { recordChange, unlessUnchanged, type Actor } from './audit.js';
import { assertUnreferenced } from './references.js';
import { overrideAt } from '../routing/schedule.js';

const ENTITY = 'schedule';
export const DEFAULT_TIMEZONE = 'Asia/Kolkata';

/** A schedules row's override columns (Prisma's names; the rules snapshot's SQL aliases them alike). */
export type OverrideColumns = { overrideOpen: boolean | null; overrideReason: string | null; overrideUntil: Date | null; overrideSetAt: Date | null };
type Row = { slug: string; name: string; timezone: string; weekly: unknown; exceptions: unknown; createdAt: Date; updatedAt: Date } & OverrideColumns;
const select = {
  slug: true,
  name: true,
  timezone: true,
  weekly: true,
  exceptions: true,
  createdAt: true,
  updatedAt: true,
  overrideOpen: true,
  overrideReason: true,
  overrideUntil: true,
  overrideSetAt: true,
} as const;

export function toOverride(row: OverrideColumns): ScheduleOverride | null {
  if (row.overrideOpen === null) return null;
  return { open: row.overrideOpen, reason: row.overrideReason ?? '', until: row.overrideUntil, setAt: row.overrideSetAt ?? new Date(0) };
}

/** A schedule as the API shows it: an override whose `until` has passed decides nothing and is shown as none (its row is kept). */
function toSchedule(row: Row, now = new Date()): Schedule {
  const { overrideOpen: _o, overrideReason: _r, overrideUntil: _u, overrideSetAt: _s, ...rest } = row;
  return {
    ...rest,
    weekly: row.weekly as WeeklyWindow[],
    exceptions: row.exceptions as ScheduleException[],
    override: overrideAt({ override: toOverride(row) }, now.getTime()),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/** What JSON schema cannot say: one exception per date; exceptions kept in date order. */
function checkExceptions(exceptions: ScheduleException[]): ScheduleException[] {
  const seen = new Set<string>();
  exceptions.forEach((e, i) => {
    if (seen.has(e.date)) throw new InvalidFieldError(`body/exceptions/${i}/date`, `${e.date} appears twice; give one exception per date`);
    seen.add(e.date);
  });
  return [...exceptions].sort((a, b) => a.date.localeCompare(b.date));
}

export async function listSchedules(prisma: PrismaClient): Promise<Schedule[]> {
  return (await prisma.schedule.findMany({ select, orderBy: { slug: 'asc' } })).map((row) => toSchedule(row));
}

export async function getSchedule(prisma: PrismaClient, slug: string): Promise<Schedule> {
  const row = await prisma.schedule.findUnique({ where: { slug }, select });
  if (!row) throw new NotFoundError(ENTITY, slug);
  return toSchedule(row);
}

/**
 * A schedule's rules as the callbacks decide by them (the rules snapshot loads the same): its override
 * as stored, also one whose `until` has passed, which still decides what an instant while it was in
 * force was (status with `at`, as simulate and that time's CDR traces say).
 */
export async function getScheduleRules(prisma: PrismaClient, slug: string): Promise<ScheduleRules> {
  const row = await prisma.schedule.findUnique({ where: { slug }, select });
  if (!row) throw new NotFoundError(ENTITY, slug);
  return { timezone: row.timezone, weekly: row.weekly as WeeklyWindow[], exceptions: row.exceptions as ScheduleException[], override: toOverride(row) };
}

export async function createSchedule(prisma: PrismaClient, actor: Actor, input: ScheduleInput): Promise<Schedule> {
  const data = {
    slug: input.slug,
    name: input.name,
    timezone: input.timezone ?? DEFAULT_TIMEZONE,
    weekly: (input.weekly ?? []) as Prisma.InputJsonValue,
    exceptions: checkExceptions(input.exceptions ?? []) as Prisma.InputJsonValue,
  };
  return prisma.$transaction(async (tx) => {
    const row = toSchedule(await tx.schedule.create({ data, select }));
    await recordChange(tx, actor, 'create', ENTITY, input.slug, null, row);
    return row;
  });
}

/**
 * Locks the schedule's row for the rest of the transaction and reads it: concurrent changes of one
 * schedule queue, so a PATCH merges into what the one before it wrote (not a stale copy it would
 * write back over it), and each audits as its `before` what the one before it left (as lockFlow does).
 */
async function lockSchedule(tx: Prisma.TransactionClient, slug: string): Promise<Row> {
  const locked = await tx.$queryRaw<Array<{ slug: string }>>`SELECT slug FROM schedules WHERE slug = ${slug} FOR UPDATE`;
  if (locked.length === 0) throw new NotFoundError(ENTITY, slug);
  return tx.schedule.findUniqueOrThrow({ where: { slug }, select });
}

/**
 * PUT (replace: absent fields get their defaults) and PATCH (merge) share this. One that leaves the
 * schedule as it is changes nothing: no new updatedAt, no audit entry, no reload (unlessUnchanged).
 */
export async function updateSchedule(prisma: PrismaClient, actor: Actor, slug: string, change: SchedulePatch, mode: 'replace' | 'merge'): Promise<Schedule> {
  return unlessUnchanged((same) =>
    prisma.$transaction(async (tx) => {
      const found = await lockSchedule(tx, slug);
      const before = toSchedule(found);
      const base = mode === 'merge' ? before : { name: before.name, timezone: DEFAULT_TIMEZONE, weekly: [], exceptions: [] };
      const next = { ...base, ...change };
      const data = {
        name: next.name,
        timezone: next.timezone ?? DEFAULT_TIMEZONE,
        weekly: (next.weekly ?? []) as Prisma.InputJsonValue,
        exceptions: checkExceptions(next.exceptions ?? []) as Prisma.InputJsonValue,
      };
      const after = toSchedule(await tx.schedule.update({ where: { slug }, data, select }));
      same(before, after);
      await recordChange(tx, actor, mode === 'replace' ? 'replace' : 'update', ENTITY, slug, before, after);
      return after;
    }),
  );
}

export async function deleteSchedule(prisma: PrismaClient, actor: Actor, slug: string): Promise<void> {
  await prisma.$transaction(async (tx) => {
    const found = await lockSchedule(tx, slug);
    await assertUnreferenced(tx, ENTITY, slug);
    await tx.schedule.delete({ where: { slug } });
    await recordChange(tx, actor, 'delete', ENTITY, slug, toSchedule(found), null);
  });
}

/**
 * Sets the schedule's override: it decides alone, open or closed, until `until` (or until deleted).
 * Audited and announced like any rules change, so every instance follows within a second.
 */
export async function setScheduleOverride(prisma: PrismaClient, actor: Actor, slug: string, input: ScheduleOverrideInput, now: Date): Promise<Schedule> {
  const until = input.until ? new Date(input.until) : null;
  if (until && until.getTime() <= now.getTime()) {
    throw new InvalidFieldError('body/until', `${input.until} is not in the future; give a later instant, or leave it out to override until deleted`);
  }
  return prisma.$transaction(async (tx) => {
    const found = await lockSchedule(tx, slug);
    // Changing an override in force that keeps it open (or closed), e.g. a later `until`: it is the
    // same override, in force since it was first set (it decides from setAt).
    const prior = toSchedule(found, now).override;
    const continued = prior?.open === input.open;
    const setAt = continued && prior ? new Date(prior.setAt) : now;
    const after = toSchedule(
      await tx.schedule.update({
        where: { slug },
        data: { overrideOpen: input.open, overrideReason: input.reason, overrideUntil: until, overrideSetAt: setAt },
        select,
      }),
      now,
    );
    await recordChange(tx, actor, 'set-override', ENTITY, slug, prior, after.override);
    return after;
  });
}

/** Removes the override (the windows and exceptions decide again); 404 when none is in force. */
export async function deleteScheduleOverride(prisma: PrismaClient, actor: Actor, slug: string): Promise<void> {
  await prisma.$transaction(async (tx) => {
    const found = await lockSchedule(tx, slug);
    const before = toSchedule(found).override;
    if (!before) throw new NotFoundError(`override of ${ENTITY}`, slug);
    await tx.schedule.update({
      where: { slug },
      data: { overrideOpen: null, overrideReason: null, overrideUntil: null, overrideSetAt: null },
      select: { slug: true },
    });
    await recordChange(tx, actor, 'delete-override', ENTITY, slug, before, null);
  });
}
