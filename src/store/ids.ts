/** The largest value of each Postgres integer type that serves as a row id. */
const MAX = { int4: 2147483647n, int8: 9223372036854775807n } as const;

/**
 * A row id or cursor as the API takes it (a digit string of up to 19 characters, by its schema)
 * read for a column of the given type: null when it is past the type's largest value, where no
 * row can be. A lookup by such an id is a 404; a cursor past it ends the paging (an empty page),
 * as for a cursor whose row retention deleted. Passing it on would make Postgres (or Prisma)
 * refuse the value, a 500.
 */
export function parseId(id: string, type: keyof typeof MAX = 'int8'): bigint | null {
  const n = BigInt(id);
  return n > MAX[type] ? null : n;
}
