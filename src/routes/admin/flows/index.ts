import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

// Flows admin API: being written.
const routes: FastifyPluginAsyncTypebox = async () => {};
export default routes;
