import type { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema } from '../../../schemas/common.js';
import {
  CallSidParamsSchema,
  CallTimelineSchema,
  CdrFilterQuerySchema,
  CdrIdParamsSchema,
  CdrListQuerySchema,
  CdrPageSchema,
  CdrSchema,
} from '../../../schemas/cdr.js';
import { getCallTimeline, getCdr, listCdrs, openCdrCsvStream } from '../../../store/cdrs.js';

const tags = ['cdrs'];
const security = [{ bearer: [] }];
const errors = { 400: ErrorSchema, 404: ErrorSchema };
// A string on the wire; in code the handler answers with the stream that produces it.
const CsvStreamSchema = Type.Unsafe<Readable>({ type: 'string' });
const filterHelp =
  'Filters combine with AND. `number` takes any format and matches the caller, the called number or the dialed agent; ' +
  '`from` is inclusive and `to` exclusive, on the time exoroute received the callback.';
const orderHelp =
  'Newest first: by the time exoroute received the callback, then by id (the order CDRs were stored; a CDR replayed ' +
  'from the local spool is stored late but sits at the time it was received).';

const csvHelp =
  'A text cell a caller writes (flow, CallSid, direction, digits, DialCallStatus, DialWhomNumber, matched rule, reason, answer body) ' +
  "that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` so that a spreadsheet " +
  'shows it as text instead of running it as a formula (callers choose what a CDR holds); a plain number such as ' +
  '`+919812345678` or `-5` is left as it is.';

/** Call-detail records: what each Exotel callback carried, what exoroute answered, and why. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { pool } = app.db;
  const country = app.config.DEFAULT_COUNTRY;

  app.get(
    '/cdrs',
    {
      schema: {
        tags,
        security,
        operationId: 'listCdrs',
        summary: 'CDRs, newest first, filtered; cursor paging',
        description: `${filterHelp} ${orderHelp} A cursor whose CDR has been deleted by retention (and with it every older one) gives an empty last page.`,
        querystring: CdrListQuerySchema,
        response: { 200: CdrPageSchema, 400: ErrorSchema },
      },
    },
    async (request) => listCdrs(app.db.prisma, request.query, country),
  );

  // A static path: find-my-way matches it before the /cdrs/:id parameter route. No HEAD twin:
  // Fastify would run the whole COPY only to throw the body away.
  app.get(
    '/cdrs.csv',
    {
      exposeHeadRoute: false,
      schema: {
        tags,
        security,
        operationId: 'exportCdrsCsv',
        summary: 'The filtered CDRs as one streamed CSV file with a header row',
        description: `${filterHelp} ${orderHelp} No paging: the file holds every matching CDR. ${csvHelp}`,
        querystring: CdrFilterQuerySchema,
        response: {
          200: { description: 'CSV (RFC 4180), header row first', content: { 'text/csv': { schema: CsvStreamSchema } } },
          400: ErrorSchema,
        },
      },
    },
    async (request, reply) => {
      const csv = await openCdrCsvStream(pool, request.query, country);
      return reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="cdrs.csv"').send(csv);
    },
  );

  app.get(
    '/cdrs/:id',
    {
      schema: {
        tags,
        security,
        operationId: 'getCdr',
        summary: 'One CDR with every field, raw params, legs and decision',
        description:
          'Everything stored for one callback: parsed fields (numbers in E.164 and as sent), every raw parameter (the callback secret removed), Legs, the decision with its per-rule trace, the HTTP status and body answered, handling time and attempt number.',
        params: CdrIdParamsSchema,
        response: { 200: CdrSchema, ...errors },
      },
    },
    async (request) => getCdr(app.db.prisma, request.params.id),
  );

  app.get(
    '/calls/:callSid',
    {
      schema: {
        tags,
        security,
        operationId: 'getCallTimeline',
        summary: 'Every callback received for one call, oldest first (by received time, then by id)',
        description:
          'Every callback exoroute received for this CallSid, across endpoints and flows: what Exotel asked, what was answered and why, in the order it happened. The first stop when a caller complains.',
        params: CallSidParamsSchema,
        response: { 200: CallTimelineSchema, ...errors },
      },
    },
    async (request) => getCallTimeline(app.db.prisma, request.params.callSid),
  );
};
export default routes;
