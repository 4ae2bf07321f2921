import { performance } from 'node:perf_hooks';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, SlugParamsSchema } from '../../../schemas/common.js';
import { FlowInputSchema, FlowReplaceSchema, FlowSchema, SimulateInputSchema, SimulateResultSchema } from '../../../schemas/flow.js';
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

  app.get('/flows', {
    schema: { tags, security, operationId: 'listFlows', summary: 'List flows', response: { 200: Type.Array(FlowSchema) } },
  }, async () => listFlows(app.db.prisma));

  app.post('/flows', {
    schema: { tags, security, operationId: 'createFlow', summary: 'Create a flow; referenced VIP lists, schedules and dial groups must exist (422)',
      body: FlowInputSchema, response: { 201: FlowSchema, 400: ErrorSchema, 409: ErrorSchema, 422: ErrorSchema } },
  }, async (request, reply) => reply.status(201).send(await createFlow(app.db.prisma, actorOf(request), request.body, country)));

  app.get('/flows/:slug', {
    schema: { tags, security, operationId: 'getFlow', summary: 'One flow', params: SlugParamsSchema, response: { 200: FlowSchema, ...errors } },
  }, async (request) => getFlow(app.db.prisma, request.params.slug));

  app.put('/flows/:slug', {
    schema: { tags, security, operationId: 'replaceFlow', summary: 'Replace a flow (rules, actions, mode)',
      params: SlugParamsSchema, body: FlowReplaceSchema, response: { 200: FlowSchema, ...errors, 422: ErrorSchema } },
  }, async (request) => replaceFlow(app.db.prisma, actorOf(request), request.params.slug, request.body, country));

  app.delete('/flows/:slug', {
    schema: { tags, security, operationId: 'deleteFlow', summary: 'Delete a flow', params: SlugParamsSchema, response: { 204: Type.Null(), ...errors } },
  }, async (request, reply) => {
    await deleteFlow(app.db.prisma, actorOf(request), request.params.slug);
    return reply.status(204).send(null);
  });

  app.post('/flows/:slug/simulate', {
    schema: {
      tags, security, operationId: 'simulateFlow',
      summary: 'What the callback endpoint would answer for these Exotel parameters, with a per-rule trace; writes no CDR and changes no dial state',
      description: 'Uses the flow as stored now, and VIP lists and schedules from the rules snapshot the callbacks use.',
      params: SlugParamsSchema, body: SimulateInputSchema, response: { 200: SimulateResultSchema, ...errors },
    },
  }, async (request) => {
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
      answer: result.answer,
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
  });
};
export default routes;
