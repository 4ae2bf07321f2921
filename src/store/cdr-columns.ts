import { Prisma, type Cdr } from '../generated/prisma/client.js';

/** A field of Prisma's `Cdr` model (camelCase), in the order of the `cdrs` table. */
export type CdrField = keyof typeof Prisma.CdrScalarFieldEnum;
export const CDR_FIELDS = Object.keys(Prisma.CdrScalarFieldEnum) as CdrField[];

/** The column of a field: schema.prisma maps every field to its snake_case name. */
export const columnOf = (field: string): string => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * One CDR as the callback path produces it: a `cdrs` row as Prisma types it, without the id the
 * table assigns, and with the JSON columns as the writer takes them.
 */
export type CdrRecord = Omit<Cdr, 'id' | 'legs' | 'params' | 'decision'> & {
  legs: unknown;
  params: Record<string, string>;
  decision: unknown;
};
