import { finished, type Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, RETRY_AFTER_HEADERS } from '../../../schemas/common.js';
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
import { DomainError } from '../../../errors.js';

const tags = ['cdrs'];
const security = [{ bearer: [] }];
const errors = { 400: ErrorSchema, 404: ErrorSchema };
// A string on the wire; in code the handler answers with the stream that produces it.
const CsvStreamSchema = Type.Unsafe<Readable>({ type: 'string' });
const filterHelp =
  'Filters combine with AND. `number` takes any format and matches the caller, the called number or the dialed agent; ' +
  '`from` is inclusive and `to` exclusive, on the time exoroute received the callback. `endpoint=unknown` selects the callbacks to a path ' +
  'under /exotel that names no endpoint (a typo in a URL given to Exotel).';
const orderHelp =
  'Newest first: by the time exoroute received the callback, then by id (the order CDRs were stored; a CDR replayed ' +
  'from the local spool is stored late but sits at the time it was received).';

const csvHelp =
  'Columns: id, received_at, endpoint, flow_slug, call_sid, call_from, call_to, direction, digits, dial_call_status, dial_whom_number, ' +
  'outcome, matched_rule, reason, http_status, response_body, handling_ms, attempt, legs, params, and last call_status, call_type and ' +
  "custom_field (Exotel's CallStatus, CallType and CustomField; empty when the callback had none). " +
  'A text cell a caller writes (flow, CallSid, direction, digits, DialCallStatus, DialWhomNumber, matched rule, reason, answer body, CallStatus, CallType, CustomField) ' +
  "that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` so that a spreadsheet " +
  'shows it as text instead of running it as a formula (callers choose what a CDR holds); a plain number such as ' +
  '`+919812345678` or `-5` is left as it is.';

/**
 * CSV exports one instance runs at once. Each holds a connection of the admin API's pool
 * (ADMIN_POOL_MAX, apart from the callbacks') until its download ends, for as long as a client
 * that stops reading stays connected: unbounded, a few stalled downloads left the other admin
 * requests without a connection.
 */
const MAX_RUNNING_EXPORTS = 2;
const EXPORT_RETRY_AFTER_SECONDS = 30;

const exportsHelp = `At most ${MAX_RUNNING_EXPORTS} exports run at once on one instance, each holding one of its admin API's database connections until the download ends; a further one is 429 with Retry-After.`;

/** Call-detail records: what each Exotel callback carried, what exoroute answered, and why. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const pool = app.db.adminPool;
  const country = app.config.DEFAULT_COUNTRY;
  let runningExports = 0;

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
        description: `${filterHelp} ${orderHelp} No paging: the file holds every matching CDR. ${csvHelp} ${exportsHelp}`,
        querystring: CdrFilterQuerySchema,
        response: {
          200: { description: 'CSV (RFC 4180), header row first', content: { 'text/csv': { schema: CsvStreamSchema } } },
          400: ErrorSchema,
          429: {
            ...ErrorSchema,
            headers: RETRY_AFTER_HEADERS,
            description: `${MAX_RUNNING_EXPORTS} exports already running on this instance, too many requests with this key this minute (ADMIN_RATE_LIMIT_PER_MINUTE), or too many failed authentications from this address (ADMIN_AUTH_FAILURES_PER_MINUTE): retry after \`Retry-After\` seconds`,
          },
        },
      },
    },
    async (request, reply) => {
      if (runningExports >= MAX_RUNNING_EXPORTS) {
        reply.header('retry-after', String(EXPORT_RETRY_AFTER_SECONDS));
        throw new DomainError(
          429,
          `${MAX_RUNNING_EXPORTS} CSV exports are running on this instance, each holding a database connection until its download ends: try again when one has finished`,
        );
      }
      runningExports++;
      let csv: Readable;
      try {
        csv = await openCdrCsvStream(pool, request.query, country);
      } catch (err) {
        runningExports--;
        throw err;
      }
      // Ended, failed or destroyed (the client hung up): its connection is released, and so is its place.
      finished(csv, () => runningExports--);
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
