import { performance } from 'node:perf_hooks';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, SlugParamsSchema, withExamples, withoutSlug } from '../../../schemas/common.js';
import {
  FLOW_EXAMPLE,
  FlowInputSchema,
  FlowReplaceSchema,
  FlowViewSchema,
  SimulateInputSchema,
  SimulateResultSchema,
  SIMULATE_EXAMPLE,
  type Flow,
} from '../../../schemas/flow.js';
import { callbackUrls, HIDDEN_SECRET } from '../../../exotel/callback-urls.js';
import type { CallbackAnswer } from '../../../exotel/responses.js';
import { createFlow, deleteFlow, getFlow, listFlows, replaceFlow } from '../../../store/flows.js';
import { collectParams, parseExotelCall } from '../../../exotel/params.js';
import { isDialEndpoint } from '../../../exotel/endpoints.js';
import { answerCallback, type CallbackResult } from '../../../routing/callback.js';
import { actorOf } from '../../../plugins/auth.js';

const tags = ['flows'];
const security = [{ bearer: [] }];
const errors = { 400: ErrorSchema, 404: ErrorSchema };

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const country = app.config.DEFAULT_COUNTRY;
  const { PUBLIC_URL, EXOTEL_CALLBACK_SECRET } = app.config;
  /** The flow with its Exotel URL(s); the secret in them only for an admin key. */
  const view = (request: FastifyRequest) => {
    const showSecret = request.apiKey?.role === 'admin';
    return (flow: Flow) => ({ ...flow, exotelUrls: callbackUrls(PUBLIC_URL, flow, EXOTEL_CALLBACK_SECRET, showSecret) });
  };
  /**
   * A simulated answer as the reader may see it: a Connect answer's dial_passthru_event_url carries
   * the secret as `token`, which, as in `exotelUrls`, only an admin key sees (a viewer: `token=***`).
   */
  const answerShown = (request: FastifyRequest, answer: CallbackAnswer): CallbackAnswer =>
    EXOTEL_CALLBACK_SECRET && request.apiKey?.role !== 'admin'
      ? { ...answer, body: answer.body.replaceAll(encodeURIComponent(EXOTEL_CALLBACK_SECRET), HIDDEN_SECRET) }
      : answer;

  app.get(
    '/flows',
    {
      schema: {
        tags,
        security,
        operationId: 'listFlows',
        summary: 'List flows',
        description:
          "Every flow with its rules, `otherwise` and `onError` actions, and `exotelUrls`: the URL(s) to paste into Exotel's flow builder for it (the callback secret in them only for admin keys).",
        response: { 200: Type.Array(FlowViewSchema) },
      },
    },
    async (request) => (await listFlows(app.db.prisma)).map(view(request)),
  );

  app.post(
    '/flows',
    {
      schema: {
        tags,
        security,
        operationId: 'createFlow',
        summary: 'Create a flow; referenced VIP lists, schedules and dial groups must exist (422)',
        description:
          'Rules are tried in order; the first whose conditions (`when`) all hold decides (`then`); else `otherwise`; `onError` when a rule cannot be evaluated or the decision overruns DECISION_BUDGET_MS. A rule without `name` is named by its position (`rule 1`). Actions must fit the type: passthru `{"branch":"A"|"B","url"?}` or `{"availability":"toggle"|"available"|"away","reason"?}` (the calling agent sets their own), switch `{"select":"<case>"}`, dial `{"dialGroup":"<slug>"}`, `{"dialGroups":["<slug>",…]}` (tiers) or `{"numbers":[…]}`. The answer carries `exotelUrls`, what to paste into Exotel.',
        body: withExamples(FlowInputSchema, FLOW_EXAMPLE),
        response: { 201: FlowViewSchema, 400: ErrorSchema, 409: ErrorSchema, 422: ErrorSchema },
      },
    },
    async (request, reply) => reply.status(201).send(view(request)(await createFlow(app.db.prisma, actorOf(request), request.body, country))),
  );

  app.get(
    '/flows/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'getFlow',
        summary: 'One flow',
        description:
          'The flow as stored, with `exotelUrls`: the URL(s) to paste into Exotel for its type (passthru, switch; dial → Dial Whom and Connect), built from PUBLIC_URL. With EXOTEL_CALLBACK_SECRET set they carry it as `token` for admin keys, `token=***` for viewer keys.',
        params: SlugParamsSchema,
        response: { 200: FlowViewSchema, ...errors },
      },
    },
    async (request) => view(request)(await getFlow(app.db.prisma, request.params.slug)),
  );

  app.put(
    '/flows/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'replaceFlow',
        summary: 'Replace a flow (rules, actions, mode)',
        description:
          'The whole flow but its slug: rules, actions, mode. Answered once this instance decides by the new rules; every other instance follows within a second.',
        params: SlugParamsSchema,
        body: withExamples(FlowReplaceSchema, withoutSlug(FLOW_EXAMPLE)),
        response: { 200: FlowViewSchema, ...errors, 422: ErrorSchema },
      },
    },
    async (request) => view(request)(await replaceFlow(app.db.prisma, actorOf(request), request.params.slug, request.body, country)),
  );

  app.delete(
    '/flows/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'deleteFlow',
        summary: 'Delete a flow',
        description: "Exotel callbacks for this flow are then answered 404 (and still logged as CDRs). CDRs already stored keep the flow's slug.",
        params: SlugParamsSchema,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await deleteFlow(app.db.prisma, actorOf(request), request.params.slug);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/flows/:slug/simulate',
    {
      config: { changesNothing: true },
      schema: {
        tags,
        security,
        operationId: 'simulateFlow',
        summary: 'What the callback endpoint would answer for these Exotel parameters, with a per-rule trace; writes no CDR and changes no dial state',
        description:
          'Uses the flow as stored now, and VIP lists and schedules from the rules snapshot the callbacks use. A viewer key may call it: it changes nothing.',
        params: SlugParamsSchema,
        body: withExamples(SimulateInputSchema, SIMULATE_EXAMPLE),
        response: { 200: SimulateResultSchema, ...errors },
      },
    },
    async (request) => {
      const flow = await getFlow(app.db.prisma, request.params.slug);
      const at = request.body.at ? new Date(request.body.at) : new Date();
      const { params, warnings } = collectParams({ json: request.body.params });
      const call = parseExotelCall(params, { defaultCountry: country, secretKeys: ['token'], warnings });
      const snapshot = app.rules.current;
      const t0 = performance.now();
      const only = snapshot && { ...snapshot, flows: new Map([[flow.slug, flow]]) };
      const { endpoint } = request.body;
      const elapsedMs = () => performance.now() - t0;
      let result: CallbackResult;
      let numbers: string[] | undefined;
      if (isDialEndpoint(endpoint)) {
        const dial = await app.answerDial({ endpoint, flowSlug: flow.slug, call, at, elapsedMs, dryRun: true, snapshot: only });
        numbers = dial.decision?.numbers;
        result = dial;
      } else {
        result = answerCallback({ snapshot: only, endpoint, flowSlug: flow.slug, call, at, budgetMs: app.config.DECISION_BUDGET_MS, elapsedMs });
      }
      return {
        answer: answerShown(request, result.answer),
        action: result.decision?.action ?? null,
        ...(numbers ? { numbers } : {}),
        decidedBy: result.outcome === 'rejected' ? 'rejected' : (result.decision?.decidedBy ?? 'rejected'),
        matchedRule: result.decision?.matchedRule ?? null,
        reason: result.reason,
        trace: result.decision?.trace ?? [],
        ...(result.decision?.availability ? { availability: result.decision.availability } : {}),
        ...(result.decision?.dial ? { dial: result.decision.dial } : {}),
        at,
      };
    },
  );
};
export default routes;
