/**
 * Baseline: the callback service a developer would write from Exotel's Passthru and Connect
 * guides — per callback one Prisma `findUnique` for the VIP check and one `create` for the CDR,
 * answered after both (every CDR committed before the answer, as exoroute does). Same Postgres,
 * same `cdrs` and `vip_entries` tables, the project's generated Prisma client on @prisma/adapter-pg
 * with its default pool. Deliberately generous: no logging, no schedule or rule evaluation, no
 * secret check, a fixed agent list for Dial Whom and Connect.
 *
 * With `DIAL_STATE=1` ("naive with call state" in the bench's report, and the baseline of the
 * dial-whom / connect target), Dial Whom and Connect also keep the one piece of per-call state that
 * the contract's re-fetch (docs/contract.md) needs and that the plain baseline skips: the numbers already tried in the
 * call, so that a re-fetch after an unanswered attempt does not offer them again. One Prisma
 * `upsert` of the call's `dial_calls` row per dial callback, between the VIP check and the CDR, as
 * a developer would add it. Still no rotation, sticky agents, busy agents or repeated-poll answers,
 * which exoroute's dial state also keeps.
 *
 *   DATABASE_URL=… VIP_LIST=gold PORT=4002 [DIAL_STATE=1] node dist/bench/baselines/naive.js
 */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../../src/generated/prisma/client.js';

const AGENTS = ['+919812345600', '+919812345601', '+919812345602', '+919812345603', '+919812345604'];

const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: process.env.DATABASE_URL }) });
const dialState = process.env.DIAL_STATE === '1';
const list = await prisma.vipList.findUniqueOrThrow({ where: { slug: process.env.VIP_LIST ?? 'gold' } });

/** 09812345678, 919812345678 and +919812345678 → +919812345678 (India only, as the guide's samples). */
function e164(raw: string | undefined): string | null {
  if (!raw) return null;
  const digits = raw.replace(/\D/g, '');
  if (digits.length === 11 && digits.startsWith('0')) return `+91${digits.slice(1)}`;
  if (digits.length === 12 && digits.startsWith('91')) return `+${digits}`;
  return null;
}

const app = Fastify({ logger: false });

app.get<{ Params: { endpoint: string; flow: string }; Querystring: Record<string, string> }>('/exotel/:endpoint/:flow', async (request, reply) => {
  const t0 = performance.now();
  const q = request.query;
  const { endpoint, flow } = request.params;
  const caller = e164(q.CallFrom);
  const vip = caller ? await prisma.vipEntry.findUnique({ where: { listId_number: { listId: list.id, number: caller } } }) : null;
  let status = 200;
  let body = '';
  let agents = vip ? AGENTS.slice(0, 1) : AGENTS;
  if (dialState && (endpoint === 'dial-whom' || endpoint === 'connect') && q.CallSid) {
    const tried = e164(q.DialWhomNumber);
    const call = await prisma.dialCall.upsert({
      where: { callSid_endpoint_flowSlug: { callSid: q.CallSid, endpoint, flowSlug: flow } },
      create: { callSid: q.CallSid, endpoint, flowSlug: flow, order: agents, tried: tried ? [tried] : [] },
      update: { tried: { push: tried ? [tried] : [] } },
    });
    agents = call.order.filter((n) => !call.tried.includes(n));
  }
  if (endpoint === 'passthru') status = vip ? 200 : 302;
  else if (endpoint === 'dial-whom') body = agents.join(',');
  else if (endpoint === 'connect') body = JSON.stringify({ fetch_after_attempt: true, destination: { numbers: agents }, record: true });
  else status = 404;
  await prisma.cdr.create({
    data: {
      endpoint,
      flowSlug: flow,
      callSid: q.CallSid ?? null,
      callFrom: caller,
      callFromRaw: q.CallFrom ?? null,
      callTo: e164(q.CallTo),
      callToRaw: q.CallTo ?? null,
      direction: q.Direction ?? null,
      dialCallStatus: q.DialCallStatus ?? null,
      dialWhomNumber: e164(q.DialWhomNumber),
      params: q,
      decision: { vip: vip !== null },
      outcome: 'answered',
      httpStatus: status,
      responseBody: body,
      handlingMs: performance.now() - t0,
      idempotencyKey: randomUUID(),
    },
  });
  return reply
    .code(status)
    .type(endpoint === 'connect' ? 'application/json' : 'text/plain')
    .send(body);
});

await app.listen({ port: Number(process.env.PORT ?? 4002), host: '127.0.0.1' });
process.on(
  'SIGTERM',
  () =>
    void app
      .close()
      .then(() => prisma.$disconnect())
      .then(() => process.exit(0)),
);
