import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, SlugParamsSchema, withExamples, withoutSlug } from '../../../schemas/common.js';
import {
  SCHEDULE_EXAMPLE,
  SCHEDULE_PATCH_EXAMPLE,
  ScheduleInputSchema,
  ScheduleOverrideInputSchema,
  SchedulePatchSchema,
  ScheduleReplaceSchema,
  ScheduleSchema,
  ScheduleStatusQuerySchema,
  ScheduleStatusSchema,
} from '../../../schemas/schedule.js';
import {
  createSchedule,
  deleteSchedule,
  deleteScheduleOverride,
  getSchedule,
  getScheduleRules,
  listSchedules,
  setScheduleOverride,
  updateSchedule,
} from '../../../store/schedules.js';
import { scheduleStatus } from '../../../routing/schedule.js';
import { actorOf } from '../../../plugins/auth.js';

const tags = ['schedules'];
const security = [{ bearer: [] }];
const errors = { 400: ErrorSchema, 404: ErrorSchema };

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/schedules',
    {
      schema: {
        tags,
        security,
        operationId: 'listSchedules',
        summary: 'List schedules',
        description:
          'Every schedule with its weekly windows and dated exceptions. Flows refer to a schedule by slug in `openBy` / `closedBy`; a dial group member may have one as a shift.',
        response: { 200: Type.Array(ScheduleSchema) },
      },
    },
    async () => listSchedules(app.db.prisma),
  );

  app.post(
    '/schedules',
    {
      schema: {
        tags,
        security,
        operationId: 'createSchedule',
        summary: 'Create a schedule (business hours)',
        description:
          "Weekly windows are local times (HH:MM) in the schedule's IANA timezone; several per day are allowed, `close` earlier than `open` spans midnight, `24:00` is the end of the day. A dated exception (YYYY-MM-DD) governs its whole local date: `closed: true` for a holiday, or `open`/`close` special hours. Business hours are decided by exoroute's own clock, not by Exotel's CurrentTime.",
        body: withExamples(ScheduleInputSchema, SCHEDULE_EXAMPLE),
        response: { 201: ScheduleSchema, 400: ErrorSchema, 409: ErrorSchema },
      },
    },
    async (request, reply) => reply.status(201).send(await createSchedule(app.db.prisma, actorOf(request), request.body)),
  );

  app.get(
    '/schedules/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'getSchedule',
        summary: 'One schedule',
        description: 'The schedule as stored. Whether it is open now, and why: GET /admin/schedules/{slug}/status.',
        params: SlugParamsSchema,
        response: { 200: ScheduleSchema, ...errors },
      },
    },
    async (request) => getSchedule(app.db.prisma, request.params.slug),
  );

  app.put(
    '/schedules/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'replaceSchedule',
        summary: 'Replace a schedule (absent fields reset to defaults)',
        description:
          'The whole schedule: fields left out go back to their defaults (timezone Asia/Kolkata, no windows, no exceptions). To change only the holidays, PATCH `exceptions`.',
        params: SlugParamsSchema,
        body: withExamples(ScheduleReplaceSchema, withoutSlug(SCHEDULE_EXAMPLE)),
        response: { 200: ScheduleSchema, ...errors },
      },
    },
    async (request) => updateSchedule(app.db.prisma, actorOf(request), request.params.slug, request.body, 'replace'),
  );

  app.patch(
    '/schedules/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'updateSchedule',
        summary: 'Change some fields; `weekly` or `exceptions`, when given, replace the whole array',
        description:
          'Give only the fields to change. `weekly` and `exceptions` are arrays and are replaced whole: send the complete list (e.g. every holiday), not just the new one.',
        params: SlugParamsSchema,
        body: withExamples(SchedulePatchSchema, SCHEDULE_PATCH_EXAMPLE),
        response: { 200: ScheduleSchema, ...errors },
      },
    },
    async (request) => updateSchedule(app.db.prisma, actorOf(request), request.params.slug, request.body, 'merge'),
  );

  app.delete(
    '/schedules/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'deleteSchedule',
        summary: 'Delete a schedule (refused while a flow uses it)',
        description:
          'While a flow refers to it (openBy / closedBy) or a dial group member has it as a shift, the answer is 409 naming them: change those first.',
        params: SlugParamsSchema,
        response: { 204: Type.Null(), ...errors, 409: ErrorSchema },
      },
    },
    async (request, reply) => {
      await deleteSchedule(app.db.prisma, actorOf(request), request.params.slug);
      return reply.status(204).send(null);
    },
  );

  app.put(
    '/schedules/:slug/override',
    {
      schema: {
        tags,
        security,
        operationId: 'setScheduleOverride',
        summary: 'Open or close the schedule now, with a reason, ahead of its windows and exceptions until `until` (e.g. an emergency close)',
        description:
          "`until` is a future ISO 8601 instant with its offset, or null for until the override is deleted. Flows' openBy / closedBy and dial-group shifts follow it; their traces name it with its reason. Audited.",
        params: SlugParamsSchema,
        body: withExamples(ScheduleOverrideInputSchema, { open: false, reason: 'flooding at the centre', until: '2030-01-04T18:00:00+05:30' }),
        response: { 200: ScheduleSchema, ...errors },
      },
    },
    async (request) => setScheduleOverride(app.db.prisma, actorOf(request), request.params.slug, request.body, new Date()),
  );

  app.delete(
    '/schedules/:slug/override',
    {
      schema: {
        tags,
        security,
        operationId: 'deleteScheduleOverride',
        summary: 'Remove the override: the windows and exceptions decide again',
        description: 'Ends an override before its `until` (or one set until deleted). Audited.',
        params: SlugParamsSchema,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await deleteScheduleOverride(app.db.prisma, actorOf(request), request.params.slug);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/schedules/:slug/status',
    {
      schema: {
        tags,
        security,
        operationId: 'scheduleStatus',
        summary: 'Open or closed at an instant (default now), why, and when that changes',
        description:
          "`at` is any ISO 8601 instant with an offset (`2026-12-25T11:00:00+05:30`; write `+` as `%2B` in a URL); without it, now. `reason` names the weekly window or exception that decides; `nextChangeAt` is when open/closed next flips, in the schedule's timezone (null when not within a year).",
        params: SlugParamsSchema,
        querystring: ScheduleStatusQuerySchema,
        response: { 200: ScheduleStatusSchema, ...errors },
      },
    },
    async (request) => {
      const rules = await getScheduleRules(app.db.prisma, request.params.slug);
      return scheduleStatus(rules, request.query.at ? new Date(request.query.at) : new Date());
    },
  );
};
export default routes;
