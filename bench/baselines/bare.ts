/**
 * Baseline: bare Fastify answering every request with an empty 200 — the ceiling for any Fastify
 * service on this machine. No logger, no parsing, no database.
 *
 *   PORT=4001 node dist/bench/baselines/bare.js
 */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.all('/*', async (_request, reply) => reply.code(200).send(''));
await app.listen({ port: Number(process.env.PORT ?? 4001), host: '127.0.0.1' });
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
