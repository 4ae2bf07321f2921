import type { CountryCode } from 'libphonenumber-js';
import { Prisma } from '../generated/prisma/client.js';
import type { PrismaClient } from './database.js';
import { DEFAULT_PACING } from '../schemas/dial-group.js';
import type {
  Connect,
  ConnectSettings,
  DialGroupInput,
  DialGroupPatch,
  DialGroupReplace,
  MemberInput,
  MemberPatch,
  Sticky,
  Strategy,
} from '../schemas/dial-group.js';
import { InvalidFieldError, NotFoundError, UnprocessableError } from '../errors.js';
import { DEFAULT_CONNECT } from '../exotel/connect.js';
import { notANumber, toE164 } from '../exotel/phone.js';
import { byPriority } from '../routing/dial/order.js';
import type { StoredDialGroup } from '../routing/snapshot.js';
import { recordChange, unlessUnchanged, type Actor } from './audit.js';
import { assertUnreferenced, existingSlugs } from './references.js';

const ENTITY = 'dial-group';
type Tx = Prisma.TransactionClient;

const DEFAULT_LOOKBACK_DAYS = 30;

const rowSelect = {
  slug: true,
  name: true,
  strategy: true,
  sticky: true,
  connect: true,
  wrapUpSeconds: true,
  maxMissedOffers: true,
  missedPauseSeconds: true,
  createdAt: true,
  updatedAt: true,
  members: { select: { number: true, name: true, priority: true, weight: true, active: true, scheduleSlug: true } },
} as const;
/** The dial_groups row and members toDialGroup reads, as Prisma returns them (`include: { members: true }` too). */
export type DialGroupRow = Prisma.DialGroupGetPayload<{ select: typeof rowSelect }>;

/** Row → API and rules-snapshot shape: members by priority then number, settings complete. */
export function toDialGroup(row: DialGroupRow): StoredDialGroup {
  return {
    slug: row.slug,
    name: row.name,
    strategy: row.strategy as Strategy,
    sticky: completeSticky(row.sticky as Sticky | null),
    members: row.members
      .map((m) => ({ number: m.number, name: m.name, priority: m.priority, weight: m.weight, active: m.active, schedule: m.scheduleSlug }))
      .sort(byPriority),
    wrapUpSeconds: row.wrapUpSeconds,
    maxMissedOffers: row.maxMissedOffers,
    missedPauseSeconds: row.missedPauseSeconds,
    // Rows are written complete; the spread keeps older rows whole should a setting be added later.
    connect: { ...DEFAULT_CONNECT, ...(row.connect as ConnectSettings) },
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

const include = { members: true } as const;

type MemberData = Omit<Prisma.DialGroupMemberCreateManyInput, 'groupId'> & { scheduleSlug: string | null };

/** E.164 numbers, defaults filled; 400 naming the member on a bad or repeated number. */
function normaliseMembers(members: MemberInput[], country: CountryCode): MemberData[] {
  const seen = new Map<string, number>();
  return members.map((m, i) => {
    const number = toE164(m.number, country);
    if (!number) throw new InvalidFieldError(`body/members/${i}/number`, notANumber(m.number, country));
    const first = seen.get(number);
    if (first !== undefined) throw new InvalidFieldError(`body/members/${i}/number`, `${number} is already member ${first}; a number appears once in a group`);
    seen.set(number, i);
    return { number, name: m.name ?? null, priority: m.priority ?? 0, weight: m.weight ?? 1, active: m.active ?? true, scheduleSlug: m.schedule ?? null };
  });
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** Every setting filled with Exotel's default when absent; what the schema cannot check, checked. */
function completeConnect(given: ConnectSettings | undefined, country: CountryCode): Connect {
  const connect: Connect = { ...DEFAULT_CONNECT, ...given };
  // The schema checks only the shape (+ and digits). Exotel dials nobody when the ExoPhone is no
  // valid E.164 number: one is kept as its E.164 (+91 before the national form, +9108047115777, is
  // +918047115777), one that is no number (a digit missing) is a 400.
  if (connect.outgoingPhoneNumber) {
    const e164 = toE164(connect.outgoingPhoneNumber, country);
    if (!e164) throw new InvalidFieldError('body/connect/outgoingPhoneNumber', notANumber(connect.outgoingPhoneNumber, country));
    connect.outgoingPhoneNumber = e164;
  }
  const playback = connect.startCallPlayback;
  // Exotel falls back (or dials nobody) when an audio_url does not answer over HTTP(S).
  if (playback?.type === 'audio_url' && !isHttpUrl(playback.value)) {
    throw new InvalidFieldError(
      'body/connect/startCallPlayback/value',
      `an audio_url playback needs an http(s) URL; '${playback.value.slice(0, 100)}' is not one`,
    );
  }
  return connect;
}

function completeSticky(sticky: Sticky | null | undefined): Required<Sticky> | null {
  return sticky ? { enabled: sticky.enabled, lookbackDays: sticky.lookbackDays ?? DEFAULT_LOOKBACK_DAYS } : null;
}

/** 422 naming each shift schedule that does not exist; those that do are held until commit (existingSlugs). */
async function checkShifts(tx: Tx, shifts: Array<{ field: string; slug: string | null }>): Promise<void> {
  const have = await existingSlugs(
    tx,
    'schedule',
    shifts.flatMap((s) => (s.slug === null ? [] : [s.slug])),
  );
  const missing = shifts.filter((s) => s.slug !== null && !have.has(s.slug));
  if (missing.length > 0) {
    throw new UnprocessableError(missing.map((s) => `${s.field}: schedule '${s.slug}' does not exist`).join('; '));
  }
}

const memberShifts = (members: MemberData[]) => members.map((m, i) => ({ field: `body/members/${i}/schedule`, slug: m.scheduleSlug }));

/** Locks the group's row for the rest of the transaction, so concurrent edits of one group queue. */
async function lockGroup(tx: Tx, slug: string): Promise<{ id: number; before: StoredDialGroup }> {
  const locked = await tx.$queryRaw<Array<{ id: number }>>`SELECT id FROM dial_groups WHERE slug = ${slug} FOR UPDATE`;
  if (locked.length === 0) throw new NotFoundError(ENTITY, slug);
  const row = await tx.dialGroup.findUniqueOrThrow({ where: { slug }, include });
  return { id: row.id, before: toDialGroup(row) };
}

const toJson = (v: unknown) => v as Prisma.InputJsonValue;

/** Wrap-up and missed-offer settings: given ones, and for a create or PUT the defaults of the rest. */
type Pacing = { [K in keyof typeof DEFAULT_PACING]: number };
function pacing(given: Partial<Pacing>, mode: 'replace' | 'merge'): Partial<Pacing> {
  const keys = Object.keys(DEFAULT_PACING) as Array<keyof typeof DEFAULT_PACING>;
  return Object.fromEntries(keys.flatMap((k) => (given[k] !== undefined ? [[k, given[k]]] : mode === 'replace' ? [[k, DEFAULT_PACING[k]]] : [])));
}
/** Prisma writes SQL NULL to a nullable Json column only when told so with DbNull. */
const stickyJson = (sticky: Required<Sticky> | null) => (sticky ? toJson(sticky) : Prisma.DbNull);

export async function listDialGroups(prisma: PrismaClient): Promise<StoredDialGroup[]> {
  return (await prisma.dialGroup.findMany({ include, orderBy: { slug: 'asc' } })).map(toDialGroup);
}

export async function getDialGroup(prisma: PrismaClient, slug: string): Promise<StoredDialGroup> {
  const row = await prisma.dialGroup.findUnique({ where: { slug }, include });
  if (!row) throw new NotFoundError(ENTITY, slug);
  return toDialGroup(row);
}

export async function createDialGroup(prisma: PrismaClient, actor: Actor, input: DialGroupInput, country: CountryCode): Promise<StoredDialGroup> {
  const members = normaliseMembers(input.members, country);
  const connect = completeConnect(input.connect, country);
  const sticky = completeSticky(input.sticky);
  return prisma.$transaction(async (tx) => {
    await checkShifts(tx, memberShifts(members));
    const row = toDialGroup(
      await tx.dialGroup.create({
        data: {
          slug: input.slug,
          name: input.name,
          strategy: input.strategy,
          sticky: stickyJson(sticky),
          connect: toJson(connect),
          ...pacing(input, 'replace'),
          members: { createMany: { data: members } },
        },
        include,
      }),
    );
    await recordChange(tx, actor, 'create', ENTITY, input.slug, null, row);
    return row;
  });
}

/**
 * PUT (`replace`: every field, absent ones reset to their defaults) and PATCH (`merge`: the fields
 * given replace the stored ones; `members` and `connect` are replaced whole). One that leaves the
 * group as it is changes nothing: no new updatedAt, no audit entry, no reload (unlessUnchanged).
 */
export async function updateDialGroup(
  prisma: PrismaClient,
  actor: Actor,
  slug: string,
  change: DialGroupReplace | DialGroupPatch,
  mode: 'replace' | 'merge',
  country: CountryCode,
): Promise<StoredDialGroup> {
  const members = change.members && normaliseMembers(change.members, country);
  const connect = mode === 'replace' || change.connect ? completeConnect(change.connect, country) : undefined;
  const sticky = mode === 'replace' || change.sticky !== undefined ? completeSticky(change.sticky) : undefined;
  return unlessUnchanged((same) =>
    prisma.$transaction(async (tx) => {
      const { id, before } = await lockGroup(tx, slug);
      if (members) await checkShifts(tx, memberShifts(members));
      const row = await tx.dialGroup.update({
        where: { id },
        data: {
          ...(change.name !== undefined ? { name: change.name } : {}),
          ...(change.strategy !== undefined ? { strategy: change.strategy } : {}),
          ...(sticky !== undefined ? { sticky: stickyJson(sticky) } : {}),
          ...(connect ? { connect: toJson(connect) } : {}),
          ...pacing(change, mode),
          ...(members ? { members: { deleteMany: {}, createMany: { data: members } } } : {}),
          updatedAt: new Date(),
        },
        include,
      });
      const after = toDialGroup(row);
      same(before, after);
      await recordChange(tx, actor, mode === 'replace' ? 'replace' : 'update', ENTITY, slug, before, after);
      return after;
    }),
  );
}

/** Changes one member (found by its number in any format); answers the whole group. */
export async function updateDialGroupMember(
  prisma: PrismaClient,
  actor: Actor,
  slug: string,
  rawNumber: string,
  patch: MemberPatch,
  country: CountryCode,
): Promise<StoredDialGroup> {
  const number = toE164(rawNumber, country);
  if (!number) throw new InvalidFieldError('params/number', notANumber(rawNumber, country));
  return prisma.$transaction(async (tx) => {
    const { id, before } = await lockGroup(tx, slug);
    const member = before.members.find((m) => m.number === number);
    if (!member) throw new NotFoundError(`member of ${ENTITY} ${slug}`, number);
    if (patch.schedule !== undefined) await checkShifts(tx, [{ field: 'body/schedule', slug: patch.schedule }]);
    const { schedule, ...fields } = patch;
    const row = await tx.dialGroup.update({
      where: { id },
      data: {
        updatedAt: new Date(),
        members: {
          update: {
            where: { groupId_number: { groupId: id, number } },
            data: { ...fields, ...(schedule !== undefined ? { scheduleSlug: schedule } : {}) },
          },
        },
      },
      include,
    });
    const after = toDialGroup(row);
    await recordChange(
      tx,
      actor,
      'update-member',
      ENTITY,
      slug,
      member,
      after.members.find((m) => m.number === number),
    );
    return after;
  });
}

export async function deleteDialGroup(prisma: PrismaClient, actor: Actor, slug: string): Promise<void> {
  await prisma.$transaction(async (tx) => {
    const { id, before } = await lockGroup(tx, slug);
    await assertUnreferenced(tx, ENTITY, slug);
    await tx.dialGroup.delete({ where: { id } });
    await recordChange(tx, actor, 'delete', ENTITY, slug, before, null);
  });
}
