import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorSchema, SlugParamsSchema, withExamples, withoutSlug } from '../../../schemas/common.js';
import {
  DIAL_GROUP_EXAMPLE,
  DIAL_GROUP_PATCH_EXAMPLE,
  MEMBER_PATCH_EXAMPLE,
  DialGroupInputSchema,
  DialGroupPatchSchema,
  DialGroupReplaceSchema,
  DialGroupSchema,
  MemberParamsSchema,
  MemberPatchSchema,
} from '../../../schemas/dial-group.js';
import { createDialGroup, deleteDialGroup, getDialGroup, listDialGroups, updateDialGroup, updateDialGroupMember } from '../../../store/dial-groups.js';
import { actorOf } from '../../../plugins/auth.js';

const tags = ['dial-groups'];
const security = [{ bearer: [] }];
const errors = { 400: ErrorSchema, 404: ErrorSchema };
const numbers = 'Member numbers in any form (national, with or without +country code) are stored as E.164; national ones use DEFAULT_COUNTRY.';
const connect = "Connect settings left out get Exotel's defaults (fetchAfterAttempt: true, so exoroute is asked again after each unanswered attempt).";
const shifts = "A member's `schedule` (shift) must name an existing schedule (422 otherwise).";

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const country = app.config.DEFAULT_COUNTRY;

  app.get(
    '/dial-groups',
    {
      schema: {
        tags,
        security,
        operationId: 'listDialGroups',
        summary: 'List dial groups with their members',
        description:
          'Every dial group with its members (E.164 numbers, priority, weight, active, shift schedule), strategy, sticky settings and Connect call settings.',
        response: { 200: Type.Array(DialGroupSchema) },
      },
    },
    async () => listDialGroups(app.db.prisma),
  );

  app.post(
    '/dial-groups',
    {
      schema: {
        tags,
        security,
        operationId: 'createDialGroup',
        summary: 'Create a dial group: agents, strategy and Connect call settings',
        description: `${numbers} ${connect} ${shifts}`,
        body: withExamples(DialGroupInputSchema, DIAL_GROUP_EXAMPLE),
        response: { 201: DialGroupSchema, 400: ErrorSchema, 409: ErrorSchema, 422: ErrorSchema },
      },
    },
    async (request, reply) => reply.status(201).send(await createDialGroup(app.db.prisma, actorOf(request), request.body, country)),
  );

  app.get(
    '/dial-groups/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'getDialGroup',
        summary: 'One dial group',
        description: 'The group as stored, members in priority order.',
        params: SlugParamsSchema,
        response: { 200: DialGroupSchema, ...errors },
      },
    },
    async (request) => getDialGroup(app.db.prisma, request.params.slug),
  );

  app.put(
    '/dial-groups/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'replaceDialGroup',
        summary: 'Replace a dial group (members as a whole; absent fields reset to defaults)',
        description: `${numbers} ${connect} ${shifts}`,
        params: SlugParamsSchema,
        body: withExamples(DialGroupReplaceSchema, withoutSlug(DIAL_GROUP_EXAMPLE)),
        response: { 200: DialGroupSchema, ...errors, 422: ErrorSchema },
      },
    },
    async (request) => updateDialGroup(app.db.prisma, actorOf(request), request.params.slug, request.body, 'replace', country),
  );

  app.patch(
    '/dial-groups/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'updateDialGroup',
        summary: 'Change some fields; `members` or `connect`, when given, replace the stored ones whole',
        description: `${numbers} ${connect} ${shifts} To change one member, use PATCH /admin/dial-groups/{slug}/members/{number}.`,
        params: SlugParamsSchema,
        body: withExamples(DialGroupPatchSchema, DIAL_GROUP_PATCH_EXAMPLE),
        response: { 200: DialGroupSchema, ...errors, 422: ErrorSchema },
      },
    },
    async (request) => updateDialGroup(app.db.prisma, actorOf(request), request.params.slug, request.body, 'merge', country),
  );

  app.delete(
    '/dial-groups/:slug',
    {
      schema: {
        tags,
        security,
        operationId: 'deleteDialGroup',
        summary: 'Delete a dial group and its members (refused while a flow uses it)',
        description:
          'Deletes the group, its members and its round-robin position. While a flow refers to it (`dialGroup`) the answer is 409 naming those flows.',
        params: SlugParamsSchema,
        response: { 204: Type.Null(), ...errors, 409: ErrorSchema },
      },
    },
    async (request, reply) => {
      await deleteDialGroup(app.db.prisma, actorOf(request), request.params.slug);
      return reply.status(204).send(null);
    },
  );

  app.patch(
    '/dial-groups/:slug/members/:number',
    {
      schema: {
        tags,
        security,
        operationId: 'updateDialGroupMember',
        summary: 'Change one member, e.g. `{"active": false}` to take an agent off the group; answers the whole group',
        description: `The number may be written in any form. ${shifts}`,
        params: MemberParamsSchema,
        body: withExamples(MemberPatchSchema, MEMBER_PATCH_EXAMPLE),
        response: { 200: DialGroupSchema, ...errors, 422: ErrorSchema },
      },
    },
    async (request) => updateDialGroupMember(app.db.prisma, actorOf(request), request.params.slug, request.params.number, request.body, country),
  );
};
export default routes;
