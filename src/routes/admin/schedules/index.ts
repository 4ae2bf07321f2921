import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, SlugParamsSchema } from '../../../schemas/common.js';
import {
  ScheduleInputSchema, ScheduleOverrideInputSchema, SchedulePatchSchema, ScheduleReplaceSchema, ScheduleSchema, ScheduleStatusQuerySchema,
  ScheduleStatusSchema,
} from '../../../schemas/schedule.js';
import {
  createSchedule, deleteSchedule, deleteScheduleOverride, getSchedule, listSchedules, setScheduleOverride, updateSchedule,
} from '../../../store/schedules.js';
import { scheduleStatus } from '../../../routing/schedule.js';
import { actorOf } from '../../../plugins/auth.js';

const tags = ['schedules'];
const security = [{ bearer: [] }];
const errors = { 400: ErrorSchema, 404: ErrorSchema };

const routes: FastifyPluginAsyncTypebox = async (app) => {

  app.get('/schedules', {
    schema: { tags, security, operationId: 'listSchedules', summary: 'List schedules', response: { 200: Type.Array(ScheduleSchema) } },
  }, async () => listSchedules(app.db.prisma));

  app.post('/schedules', {
    schema: { tags, security, operationId: 'createSchedule', summary: 'Create a schedule (business hours)', body: ScheduleInputSchema,
      response: { 201: ScheduleSchema, 400: ErrorSchema, 409: ErrorSchema } },
  }, async (request, reply) => reply.status(201).send(await createSchedule(app.db.prisma, actorOf(request), request.body)));

  app.get('/schedules/:slug', {
    schema: { tags, security, operationId: 'getSchedule', summary: 'One schedule', params: SlugParamsSchema,
      response: { 200: ScheduleSchema, ...errors } },
  }, async (request) => getSchedule(app.db.prisma, request.params.slug));

  app.put('/schedules/:slug', {
    schema: { tags, security, operationId: 'replaceSchedule', summary: 'Replace a schedule (absent fields reset to defaults)',
      params: SlugParamsSchema, body: ScheduleReplaceSchema, response: { 200: ScheduleSchema, ...errors } },
  }, async (request) => updateSchedule(app.db.prisma, actorOf(request), request.params.slug, request.body, 'replace'));

  app.patch('/schedules/:slug', {
    schema: { tags, security, operationId: 'updateSchedule',
      summary: 'Change some fields; `weekly` or `exceptions`, when given, replace the whole array',
      params: SlugParamsSchema, body: SchedulePatchSchema, response: { 200: ScheduleSchema, ...errors } },
  }, async (request) => updateSchedule(app.db.prisma, actorOf(request), request.params.slug, request.body, 'merge'));

  app.delete('/schedules/:slug', {
    schema: { tags, security, operationId: 'deleteSchedule', summary: 'Delete a schedule (refused while a flow uses it)',
      params: SlugParamsSchema, response: { 204: Type.Null(), ...errors, 409: ErrorSchema } },
  }, async (request, reply) => {
    await deleteSchedule(app.db.prisma, actorOf(request), request.params.slug);
    return reply.status(204).send(null);
  });

  app.put('/schedules/:slug/override', {
    schema: { tags, security, operationId: 'setScheduleOverride',
      summary: 'Open or close the schedule now, with a reason, ahead of its windows and exceptions until `until` (e.g. an emergency close)',
      params: SlugParamsSchema, body: ScheduleOverrideInputSchema, response: { 200: ScheduleSchema, ...errors } },
  }, async (request) => setScheduleOverride(app.db.prisma, actorOf(request), request.params.slug, request.body, new Date()));

  app.delete('/schedules/:slug/override', {
    schema: { tags, security, operationId: 'deleteScheduleOverride', summary: 'Remove the override: the windows and exceptions decide again',
      params: SlugParamsSchema, response: { 204: Type.Null(), ...errors } },
  }, async (request, reply) => {
    await deleteScheduleOverride(app.db.prisma, actorOf(request), request.params.slug);
    return reply.status(204).send(null);
  });

  app.get('/schedules/:slug/status', {
    schema: { tags, security, operationId: 'scheduleStatus', summary: 'Open or closed at an instant (default now), why, and when that changes',
      params: SlugParamsSchema, querystring: ScheduleStatusQuerySchema, response: { 200: ScheduleStatusSchema, ...errors } },
  }, async (request) => {
    const schedule = await getSchedule(app.db.prisma, request.params.slug);
    return scheduleStatus(schedule, request.query.at ? new Date(request.query.at) : new Date());
  });
};
export default routes;
