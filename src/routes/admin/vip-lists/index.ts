import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyError, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, SlugParamsSchema, withExamples } from '../../../schemas/common.js';
import {
  VIP_ENTRIES_CSV_EXAMPLE,
  VIP_ENTRY_EXAMPLES,
  VIP_LIST_EXAMPLE,
  VIP_LIST_PATCH_EXAMPLE,
  BulkUpsertResultSchema,
  VipEntriesBodySchema,
  VipEntriesPageSchema,
  VipEntriesQuerySchema,
  VipEntriesWriteQuerySchema,
  VipEntryInputSchema,
  VipEntryParamsSchema,
  VipEntrySchema,
  VipListInputSchema,
  VipListPatchSchema,
  VipListSchema,
} from '../../../schemas/vip-list.js';
import {
  createVipList,
  deleteVipEntry,
  deleteVipList,
  getVipList,
  listVipEntries,
  listVipLists,
  updateVipList,
  upsertVipEntries,
} from '../../../store/vip-lists.js';
import { actorOf } from '../../../plugins/auth.js';
import { InvalidFieldError } from '../../../errors.js';
import { csvText, onCsvLine, parseCsvEntries } from './csv-body.js';

const tags = ['vip-lists'];

/** The key of a body that is an object holding an array alone under no entry field: `{"entries": [...]}`. */
function wrappedArrayKey(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const [key, ...more] = Object.keys(body);
  if (key === undefined || more.length > 0 || key in VipEntryInputSchema.properties) return undefined;
  return Array.isArray((body as Record<string, unknown>)[key]) ? key : undefined;
}
const security = [{ bearer: [] }];
const errors = { 400: ErrorSchema, 404: ErrorSchema };
/** The bulk upsert's body limit: 10,000 entries of typical size fit well within it. */
const BULK_BODY_LIMIT = 16 * 1024 * 1024;

/**
 * What to do with a body over BULK_BODY_LIMIT. A merge is split over requests (a CSV by rows, each
 * part with its header row); a replace cannot be (each part would remove what the others sent). The
 * query is read as sent: a 413 comes before it is validated.
 */
function bulkTooLargeHint(request: FastifyRequest): string {
  const { mode } = (request.query ?? {}) as { mode?: unknown };
  if ([mode].flat().includes('replace')) {
    return 'a list is replaced by one request (split over several, each would remove what the others sent): leave out what the list does not need (long notes), or send the entries in parts without mode=replace and remove those no longer wanted with DELETE /admin/vip-lists/{slug}/entries/{number}';
  }
  if (/^\s*text\/csv\b/i.test(request.headers['content-type'] ?? ''))
    return 'split the export over several requests by rows, each part starting with the header row';
  return 'split the array over several requests';
}

/**
 * The route's body in the OpenAPI document: JSON as validated, and the CSV export the text/csv parser
 * reads (into that same array) as the text it is sent as, so Swagger UI and generated clients can
 * send one. Only the document changes: the parsed CSV is validated by the JSON body's schema.
 */
function withCsvBody({ schema, url }: { schema: { body?: unknown }; url: string }) {
  const csv = Type.String({
    description:
      'A CSV export: a header row naming the columns as the JSON fields (`number` required; `name`, `tier`, `note`, `expiresAt`, in any order), then one entry a row, an empty cell a field left out. UTF-8, or the charset named (`text/csv; charset=windows-1252`).',
    examples: [VIP_ENTRIES_CSV_EXAMPLE],
  });
  return { url, schema: { ...schema, body: { content: { 'application/json': { schema: schema.body }, 'text/csv': { schema: csv } } } } };
}

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const country = app.config.DEFAULT_COUNTRY;
  // A list's writes take turns on its lock: they may wait longer than the admin API's other statements.
  const bulkMs = app.config.ADMIN_BULK_STATEMENT_TIMEOUT_MS;

  app.get(
    '/vip-lists',
    {
      schema: {
        tags,
        security,
        operationId: 'listVipLists',
        summary: 'List VIP lists',
        description: 'Every VIP list with its number of entries. Flows refer to a list by slug in `callerIn` / `callerNotIn`.',
        response: { 200: Type.Array(VipListSchema) },
      },
    },
    async () => listVipLists(app.db.prisma),
  );

  app.post(
    '/vip-lists',
    {
      schema: {
        tags,
        security,
        operationId: 'createVipList',
        summary: 'Create a VIP list',
        description:
          'An empty list; add numbers with POST /admin/vip-lists/{slug}/entries. The slug is lowercase letters, digits and `-` (1–64 characters), unique among VIP lists (409 otherwise).',
        body: withExamples(VipListInputSchema, VIP_LIST_EXAMPLE),
        response: { 201: VipListSchema, 400: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (request, reply) => reply.status(201).send(await createVipList(app.db.prisma, actorOf(request), request.body)),
  );

  app.get(
    '/vip-lists/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'getVipList',
        summary: 'One VIP list',
        description: "The list's name, description and number of entries. The entries themselves: GET /admin/vip-lists/{slug}/entries.",
        params: SlugParamsSchema,
        response: { 200: VipListSchema, ...errors },
      },
    },
    async (request) => getVipList(app.db.prisma, request.params.slug),
  );

  app.patch(
    '/vip-lists/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'updateVipList',
        summary: 'Change name or description',
        description: 'Only `name` and `description` can change; the slug is fixed (a flow refers to it).',
        params: SlugParamsSchema,
        body: withExamples(VipListPatchSchema, VIP_LIST_PATCH_EXAMPLE),
        response: { 200: VipListSchema, ...errors },
      },
    },
    async (request) => updateVipList(app.db.prisma, actorOf(request), request.params.slug, request.body, bulkMs),
  );

  app.delete(
    '/vip-lists/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'deleteVipList',
        summary: 'Delete a VIP list and its entries (refused while a flow uses it)',
        description:
          'Deletes the list and every entry. While a flow refers to it (callerIn / callerNotIn) the answer is 409 naming those flows: change the flows first.',
        params: SlugParamsSchema,
        response: { 204: Type.Null(), ...errors, 409: ErrorSchema },
      },
    },
    async (request, reply) => {
      await deleteVipList(app.db.prisma, actorOf(request), request.params.slug, bulkMs);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/vip-lists/:slug/entries',
    {
      schema: {
        tags,
        security,
        operationId: 'listVipEntries',
        summary: 'Entries, oldest first; search by number or name; cursor paging',
        description:
          "`q` matches a number — a whole number in any form (`09812345678`, `919812345678`, `+919812345678`) or any run of its digits (a leading trunk `0` is dropped) — or part of a name, any case (`%` and `_` are plain characters, not wildcards); `limit` up to 1000; the answer's `nextCursor` goes in `cursor` for the next page. Expired entries are listed (they no longer count for `callerIn`).",
        params: SlugParamsSchema,
        querystring: VipEntriesQuerySchema,
        response: { 200: VipEntriesPageSchema, ...errors },
      },
    },
    async (request) => listVipEntries(app.db.prisma, request.params.slug, request.query, country),
  );

  // A CRM's CSV export, sent as it is (Content-Type: text/csv), is the same array of entries; an
  // error about one of them names its line and column. Only this route reads CSV.
  const entriesWrite: FastifyPluginAsyncTypebox = async (app) => {
    app.addContentTypeParser('text/csv', { parseAs: 'buffer' }, (request, body, done) => {
      try {
        done(null, parseCsvEntries(request, csvText(body as Buffer, request.headers['content-type'])));
      } catch (e) {
        done(e as Error, undefined);
      }
    });
    // Thrown on to the app's error handler, which answers it.
    app.setErrorHandler((err: FastifyError, request) => {
      throw onCsvLine(request, err);
    });

    app.post(
      '/vip-lists/:slug/entries',
      {
        schema: {
          tags,
          security,
          operationId: 'upsertVipEntries',
          summary:
            'Add or update entries by number: one entry (answers the entry) or an array of up to 10,000 (answers counts); with mode=replace, the list becomes exactly the array',
          description:
            'The body is one entry or the array itself (an array wrapped in an object, `{"entries": […]}`, is a 400 saying so). Numbers are normalised to E.164; national numbers use DEFAULT_COUNTRY. An entry sent as it is stored is left as it is (counted neither inserted nor updated, its updatedAt kept); a request that changes nothing leaves no audit entry. An array is written in one statement. The body may be up to 16 MiB (16,777,216 bytes) of JSON: 10,000 entries with long notes can be more, which is 413 saying what to do: split such an array (or a CSV export, by rows, each part with the header row) over several requests; a replace cannot be split (each part would remove what the others sent): leave out what the list does not need, or send the parts without `mode=replace` and DELETE the entries no longer wanted.\n\n`?mode=replace` (for a list kept in step with a CRM export): the body must be an array, and afterwards the list holds exactly its entries; the others are removed, in the same transaction (a callback meanwhile decides by the list as it was or as it is after, never by half of it). The answer adds `removed`; the audit entry is `replace-entries`. An empty array is a 400 unless `allowEmpty=true` is also given; a request with any invalid entry changes nothing. A list of more than 10,000 entries cannot be replaced in one request. Against a truncated export, `maxRemoved=N` refuses a replace that would remove more than N entries (409 naming how many, nothing changed), and `dryRun=true` answers what a write would do (its counts, or its 400, 404 or 409) without changing anything or leaving an audit entry.\n\nA CSV export is taken too, with `Content-Type: text/csv` (UTF-8, or the charset named: `text/csv; charset=windows-1252` for Excel\'s CSV (Comma delimited); a body not in it is a 400 naming the line): a header row naming the columns as the JSON fields (`number` required; `name`, `tier`, `note`, `expiresAt`, in any order), then one entry a row, an empty cell a field left out. It is the array of those entries, with the same limits and query parameters; an error about a row names its line and column (`body: line 4, column number: …`).',
          params: SlugParamsSchema,
          querystring: VipEntriesWriteQuerySchema,
          body: withExamples(VipEntriesBodySchema, ...VIP_ENTRY_EXAMPLES),
          response: { 200: Type.Union([VipEntrySchema, BulkUpsertResultSchema]), 201: VipEntrySchema, ...errors, 409: ErrorSchema, 413: ErrorSchema },
        },
        bodyLimit: BULK_BODY_LIMIT,
        config: { bodyTooLargeHint: bulkTooLargeHint, takesCsv: true, swaggerTransform: withCsvBody },
        // An import script wrapping its array as many APIs do would otherwise read `body/number: is required`.
        preValidation: async (request) => {
          const key = wrappedArrayKey(request.body);
          if (key) throw new InvalidFieldError(`body/${key}`, `send the array itself as the body ([{"number": …}, …]), not inside {"${key}": …}`);
        },
      },
      async (request, reply) => {
        const out = await upsertVipEntries(app.db.prisma, actorOf(request), request.params.slug, request.body, country, bulkMs, request.query);
        if (out.many) return reply.status(200).send(out.result);
        return reply.status(out.inserted ? 201 : 200).send(out.entry);
      },
    );
  };
  await app.register(entriesWrite);

  app.delete(
    '/vip-lists/:slug/entries/:number',
    {
      schema: {
        tags,
        security,
        operationId: 'deleteVipEntry',
        summary: 'Remove a number (any format) from the list',
        description:
          'The number may be written in any form (`09812345678`, `919812345678`, `+919812345678`): it is normalised to E.164 as entries are. 404 when it is not in the list.',
        params: VipEntryParamsSchema,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await deleteVipEntry(app.db.prisma, actorOf(request), request.params.slug, request.params.number, country, bulkMs);
      return reply.status(204).send(null);
    },
  );
};
export default routes;
