/**
 * The bench's own set-up through exoroute's admin API, as an operator would do it: a VIP list, a
 * schedule, a dial group and two flows (the README's worked examples).
 */
import { AGENT_NUMBERS, VIP_COUNT, vipNumber } from './traffic.js';

export interface Answer {
  status: number;
  body: unknown;
  ms: number;
}

export function adminClient(base: string, key: string) {
  return async function api(method: string, path: string, body?: unknown, timeoutMs = 60_000): Promise<Answer> {
    const t0 = performance.now();
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    const ms = performance.now() - t0;
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed, ms };
  };
}
export type Api = ReturnType<typeof adminClient>;

async function must(what: string, answer: Promise<Answer>, ok: number[] = [200, 201]): Promise<Answer> {
  const a = await answer;
  if (!ok.includes(a.status)) throw new Error(`${what}: HTTP ${a.status} ${JSON.stringify(a.body).slice(0, 500)}`);
  return a;
}

/**
 * 10,000 entries as an operator's import would carry them: national format, a name, a tier on
 * some (about 70 bytes each, 0.7 MB in all: under the admin API's default 1 MB body limit).
 */
export function vipEntries(number: (i: number) => string, nameTag: string) {
  return Array.from({ length: VIP_COUNT }, (_, i) => ({
    number: `0${number(i).slice(3)}`,
    name: `${nameTag} ${i}`,
    ...(i % 10 === 0 ? { tier: 'platinum' } : {}),
  }));
}

/**
 * Rules for the callbacks under test; answers the time the 10,000-entry import of `gold` took.
 * `vipChunk`: entries per import request (bench/instructions.ts sends 1,000 at a time: under
 * valgrind one import of 10,000 outlasts an older build's transaction timeout).
 */
export async function seedRules(api: Api, vipChunk = VIP_COUNT): Promise<{ goldImportMs: number }> {
  await must('VIP list', api('POST', '/admin/vip-lists', { slug: 'gold', name: 'Gold customers' }));
  const entries = vipEntries(vipNumber, 'Customer');
  const timeoutMs = vipChunk < VIP_COUNT ? 600_000 : undefined;
  let goldImportMs = 0;
  for (let i = 0; i < entries.length; i += vipChunk) {
    goldImportMs += (await must('VIP entries', api('POST', '/admin/vip-lists/gold/entries', entries.slice(i, i + vipChunk), timeoutMs), [200])).ms;
  }
  await must(
    'schedule',
    api('POST', '/admin/schedules', {
      slug: 'support',
      name: 'Support desk',
      timezone: 'Asia/Kolkata',
      weekly: ['mon', 'tue', 'wed', 'thu', 'fri'].map((day) => ({ day, open: '09:00', close: '18:00' })).concat({ day: 'sat', open: '10:00', close: '14:00' }),
      exceptions: [
        { date: '2026-12-25', closed: true },
        { date: '2026-12-31', open: '09:00', close: '13:00' },
      ],
    }),
  );
  await must(
    'dial group',
    api('POST', '/admin/dial-groups', {
      slug: 'sales',
      name: 'Sales',
      strategy: 'round_robin',
      sticky: { enabled: true, lookbackDays: 30 },
      members: AGENT_NUMBERS.map((number, i) => ({ number, name: `Agent ${i + 1}`, priority: i + 1 })),
      connect: {
        record: true,
        recordingChannels: 'dual',
        maxRingingDuration: 30,
        maxConversationDuration: 900,
        musicOnHold: { type: 'default_tone' },
        outgoingPhoneNumber: null,
        fetchAfterAttempt: true,
        maxParallelAttempts: 5,
        startCallPlayback: null,
      },
    }),
  );
  await must(
    'passthru flow',
    api('POST', '/admin/flows', {
      slug: 'inbound',
      name: 'Main line',
      type: 'passthru',
      rules: [
        { name: 'VIPs', when: { callerIn: 'gold' }, then: { branch: 'A' } },
        { name: 'closed', when: { closedBy: 'support' }, then: { branch: 'B' } },
      ],
      otherwise: { branch: 'A' },
      onError: { branch: 'A' },
    }),
  );
  await must(
    'dial flow',
    api('POST', '/admin/flows', {
      slug: 'agents',
      name: 'Sales line',
      type: 'dial',
      rules: [{ name: 'VIPs to Agent 1', when: { callerIn: 'gold' }, then: { numbers: [AGENT_NUMBERS[0]] } }],
      otherwise: { dialGroup: 'sales' },
      onError: { numbers: ['+918047110000'] },
    }),
  );
  return { goldImportMs };
}

/**
 * One round of the bulk-import measurement: a new list, 10,000 new entries in one request, then
 * the same 10,000 again with other names (every entry updated). Answers both times, ms.
 */
export async function vipBulkRound(api: Api, round: number): Promise<{ insertMs: number; updateMs: number }> {
  const slug = `bulk-${round}`;
  await must('VIP list', api('POST', '/admin/vip-lists', { slug, name: `Bulk import ${round}` }));
  const number = (i: number) => `+9196${String(round).padStart(2, '0')}${String(i).padStart(6, '0')}`;
  const insert = await must('bulk insert', api('POST', `/admin/vip-lists/${slug}/entries`, vipEntries(number, 'Imported')), [200]);
  const counts = insert.body as { inserted?: number };
  if (counts.inserted !== VIP_COUNT) throw new Error(`bulk insert: expected ${VIP_COUNT} inserted, got ${JSON.stringify(insert.body)}`);
  const update = await must('bulk update', api('POST', `/admin/vip-lists/${slug}/entries`, vipEntries(number, 'Renamed')), [200]);
  return { insertMs: insert.ms, updateMs: update.ms };
}
