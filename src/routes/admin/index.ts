import type { FastifyPluginAsync } from 'fastify';
import auth from '../../plugins/auth.js';
import apiKeys from './api-keys/index.js';
import audit from './audit/index.js';
import vipLists from './vip-lists/index.js';
import schedules from './schedules/index.js';
import flows from './flows/index.js';
import dialGroups from './dial-groups/index.js';
import cdrs from './cdrs/index.js';
import agents from './agents/index.js';
import refusals from './refusals/index.js';

/** Admin REST resources, mounted under /admin, every one behind the auth plugin. */
const admin: FastifyPluginAsync = async (app) => {
  await app.register(auth);
  // curl users send `Content-Type: application/json` out of habit, also on a DELETE or GET without
  // a body: an empty body is no body. Anything else goes to Fastify's own parser (prototype
  // poisoning refused as before).
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (String(body).trim() === '') return done(null, undefined);
    return json(request, String(body), done);
  });
  await app.register(apiKeys);
  await app.register(audit);
  await app.register(vipLists);
  await app.register(schedules);
  await app.register(dialGroups);
  await app.register(agents);
  await app.register(flows);
  await app.register(cdrs);
  await app.register(refusals);
};
export default admin;
