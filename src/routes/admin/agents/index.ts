import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, withExamples } from '../../../schemas/common.js';
import {
  AgentDetailSchema,
  AgentParamsSchema,
  AgentSchema,
  AgentsListQuerySchema,
  AgentsQuerySchema,
  AvailabilityInputSchema,
  AvailabilitySchema,
} from '../../../schemas/agent.js';
import { listAgents, NoAgentError, recentOffers, setAvailability } from '../../../store/agents.js';
import { DEFAULT_TIMEZONE } from '../../../store/schedules.js';
import { notANumber, toE164 } from '../../../exotel/phone.js';
import { InvalidFieldError } from '../../../errors.js';
import { actorOf } from '../../../plugins/auth.js';
import { busyExpiredAt } from '../../../routing/agents.js';

const tags = ['agents'];
const security = [{ bearer: [] }];
const errors = { 400: ErrorSchema, 404: ErrorSchema };
const RECENT_OFFERS = 50;

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const country = app.config.DEFAULT_COUNTRY;
  const busyTtlMs = app.config.AGENT_BUSY_TTL_SECONDS * 1000;
  const numberOf = (raw: string) => {
    const number = toE164(raw, country);
    if (!number) throw new InvalidFieldError('params/number', notANumber(raw, country));
    return number;
  };
  const view = (number: string | undefined, query: { timezone?: string | undefined; state?: string | undefined; group?: string | undefined }) => {
    const { timezone, state, group } = query;
    const at = new Date();
    return listAgents(app.db.adminPool, {
      ...(number !== undefined ? { number } : {}),
      ...(state !== undefined ? { state } : {}),
      ...(group !== undefined ? { group } : {}),
      timezone: timezone ?? DEFAULT_TIMEZONE,
      at,
      busyExpired: busyExpiredAt(app.rules.current?.dialGroups ?? null, at, busyTtlMs),
      schedules: app.rules.current?.schedules ?? new Map(),
    });
  };

  app.get(
    '/agents',
    {
      schema: {
        tags,
        security,
        operationId: 'listAgents',
        summary: "Every member of a dial group: its groups, its state now, and today's offers, answers and misses",
        description:
          '`state` is the most telling of on_call, away, wrapping_up, paused, inactive, off_shift and available. `timezone` (IANA, default Asia/Kolkata) sets where "today" starts. ' +
          '`state` and `group` keep only the agents in that state now, and the members of that dial group (404 for a group that does not exist); both given, both hold.',
        querystring: AgentsListQuerySchema,
        response: { 200: Type.Array(AgentSchema), ...errors },
      },
    },
    async (request) => view(undefined, request.query),
  );

  app.get(
    '/agents/:number',
    {
      schema: {
        tags,
        security,
        operationId: 'getAgent',
        summary: 'One agent, with its recent offers (newest first)',
        description: 'The number may be written in any form. A number that is in no dial group is 404.',
        params: AgentParamsSchema,
        querystring: AgentsQuerySchema,
        response: { 200: AgentDetailSchema, ...errors },
      },
    },
    async (request) => {
      const number = numberOf(request.params.number);
      const [agent] = await view(number, request.query);
      if (!agent) throw new NoAgentError(number);
      return { ...agent, recentOffers: await recentOffers(app.db.adminPool, number, RECENT_OFFERS) };
    },
  );

  app.put(
    '/agents/:number/availability',
    {
      schema: {
        tags,
        security,
        operationId: 'setAgentAvailability',
        summary: 'Send an agent away (offered by no group until set back or `until` passes) or make them available again',
        description:
          'Set available, an agent paused after missed offers, wrapping up, or on a call whose end never came (a lost `free` dial event) is offered again at once; ' +
          "the change's audit entry (`GET /admin/audit?entity=agent`) names what it ended under `after.ended` (`paused`, `wrapUpUntil`, `onCall`). " +
          'Every instance follows within a second.',
        params: AgentParamsSchema,
        body: withExamples(AvailabilityInputSchema, { status: 'away', reason: 'lunch', until: '2030-01-04T14:00:00+05:30' }, { status: 'available' }),
        response: { 200: AvailabilitySchema, ...errors },
      },
    },
    async (request) => {
      const change = await setAvailability(app.db.adminPool, actorOf(request), numberOf(request.params.number), request.body, new Date());
      return change.after;
    },
  );
};
export default routes;
