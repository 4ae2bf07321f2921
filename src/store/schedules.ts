import type { PrismaClient } from './database.js';
import type { Prisma } from '../generated/prisma/client.js';
import type { Schedule, ScheduleException, ScheduleInput, SchedulePatch, WeeklyWindow } from '../schemas/schedule.js';
import { InvalidFieldError, NotFoundError } from '../errors.js';
import { recordChange, type Actor } from './audit.js';
import { assertUnreferenced } from './references.js';

const ENTITY = 'schedule';
export const DEFAULT_TIMEZONE = 'Asia/Kolkata';

type Row = { slug: string; name: string; timezone: string; weekly: unknown; exceptions: unknown; createdAt: Date; updatedAt: Date };
const select = { slug: true, name: true, timezone: true, weekly: true, exceptions: true, createdAt: true, updatedAt: true } as const;

function toSchedule(row: Row): Schedule {
  return {
    ...row,
    weekly: row.weekly as WeeklyWindow[],
    exceptions: row.exceptions as ScheduleException[],
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
  return (await prisma.schedule.findMany({ select, orderBy: { slug: 'asc' } })).map(toSchedule);
}

export async function getSchedule(prisma: PrismaClient, slug: string): Promise<Schedule> {
  const row = await prisma.schedule.findUnique({ where: { slug }, select });
  if (!row) throw new NotFoundError(ENTITY, slug);
  return toSchedule(row);
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

/** PUT (replace: absent fields get their defaults) and PATCH (merge) share this. */
export async function updateSchedule(
  prisma: PrismaClient,
  actor: Actor,
  slug: string,
  change: SchedulePatch,
  mode: 'replace' | 'merge',
): Promise<Schedule> {
  return prisma.$transaction(async (tx) => {
    const found = await tx.schedule.findUnique({ where: { slug }, select });
    if (!found) throw new NotFoundError(ENTITY, slug);
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
    await recordChange(tx, actor, mode === 'replace' ? 'replace' : 'update', ENTITY, slug, before, after);
    return after;
  });
}

export async function deleteSchedule(prisma: PrismaClient, actor: Actor, slug: string): Promise<void> {
  await prisma.$transaction(async (tx) => {
    const found = await tx.schedule.findUnique({ where: { slug }, select });
    if (!found) throw new NotFoundError(ENTITY, slug);
    await assertUnreferenced(tx, ENTITY, slug);
    await tx.schedule.delete({ where: { slug } });
    await recordChange(tx, actor, 'delete', ENTITY, slug, toSchedule(found), null);
  });
}
