/**
 * Reads a V8 CPU profile (`node --cpu-prof`) and tells where the time of a window went: the share
 * of samples whose stack passes through each part of the callback path (inclusive), and the
 * functions that were on top of the stack most often (self). The profile's timestamps are
 * CLOCK_MONOTONIC microseconds, the same clock as `process.hrtime`, so the bench can cut out
 * exactly its load window (no start-up, no shutdown).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/**
 * Parts of the service, in priority order: a sample is charged to the first part (in this order)
 * that has a frame on its stack, so the shares add up to 100 % of busy time. Specific work comes
 * before the layers it runs in (pino before Fastify, the pg driver before sockets). `lib` parts
 * also report which of our functions called them.
 */
const PARTS: Array<{ part: string; match: (f: ProfileNode['callFrame']) => boolean; lib?: boolean }> = [
  { part: 'GC', match: (f) => f.functionName === '(garbage collector)' },
  { part: 'pino logging', match: (f) => /node_modules\/(pino|pino-std-serializers|sonic-boom|fast-redact|thread-stream)\//.test(f.url), lib: true },
  { part: 'CDR JSON (rowsJson)', match: (f) => /^(rowsJson|batchJson|cleanText)$/.test(f.functionName) },
  { part: 'CDR row building (cdrOf, rowOf)', match: (f) => /^(cdrOf|rowOf)$/.test(f.functionName) },
  { part: 'randomUUID', match: (f) => f.functionName === 'randomUUID' || /internal\/crypto\/random/.test(f.url) },
  { part: 'lru-cache (attempt counter, phone cache)', match: (f) => /node_modules\/lru-cache\//.test(f.url), lib: true },
  { part: 'luxon (dates, time zones)', match: (f) => /node_modules\/luxon\//.test(f.url), lib: true },
  { part: 'libphonenumber', match: (f) => /node_modules\/libphonenumber-js\//.test(f.url), lib: true },
  { part: 'prom-client (metrics)', match: (f) => /node_modules\/prom-client\//.test(f.url), lib: true },
  {
    part: 'pg driver (incl. its socket writes)',
    match: (f) => /node_modules\/(pg|pg-protocol|pg-pool|pg-types|postgres-[a-z]+|pg-copy-streams)\//.test(f.url),
    lib: true,
  },
  { part: 'Prisma', match: (f) => /node_modules\/(@prisma|\.prisma)\//.test(f.url) || /generated\/prisma/.test(f.url), lib: true },
  { part: 'callback guard (secret check)', match: (f) => /routes\/exotel\/guard\.js/.test(f.url) },
  { part: 'URL / URLSearchParams', match: (f) => /^node:internal\/url/.test(f.url), lib: true },
  { part: 'Exotel params (src/exotel/params, own code)', match: (f) => /exotel\/params\.js/.test(f.url) },
  { part: 'phone normalising (src/exotel/phone, own code)', match: (f) => /exotel\/phone\.js/.test(f.url) },
  { part: 'decision (src/routing, own code)', match: (f) => /src\/routing\//.test(f.url) },
  { part: 'dial state (src/store/dial-state, own code)', match: (f) => /store\/dial-state\.js/.test(f.url) },
  { part: 'CDR writer (other)', match: (f) => /store\/cdr-writer\.js/.test(f.url) },
  { part: 'callback route (src/routes/exotel, own code)', match: (f) => /routes\/exotel\//.test(f.url) },
  { part: 'node http (parser, response writes)', match: (f) => /^node:(_http_|internal\/http)/.test(f.url) },
  {
    part: 'Fastify (router, hooks, reply, querystring)',
    match: (f) =>
      /node_modules\/(fastify|find-my-way|avvio|fast-json-stringify|@fastify|fast-querystring|fast-uri|light-my-request|toad-cache|process-warning|abstract-logging)\//.test(
        f.url,
      ),
    lib: true,
  },
  { part: 'node net / streams', match: (f) => /^node:(net|internal\/stream|internal\/streams|stream)/.test(f.url) },
  { part: 'timers, setImmediate', match: (f) => /^node:internal\/timers/.test(f.url) },
];

export interface ProfileSummary {
  windowMs: number;
  samples: number;
  /** share of the window the main thread was busy (not idle) */
  busyShare: number;
  /** part → share of busy samples charged to it (they add up to 1) and share whose stack includes it */
  parts: Array<{ part: string; share: number; inclusive: number }>;
  /** library part → which of our functions called into it, share of busy samples */
  callers: Array<{ part: string; caller: string; share: number }>;
  /** functions most often on top of the stack (share of busy samples) */
  top: Array<{ fn: string; share: number }>;
}

const short = (url: string) => url.replace(/^file:\/\/.*?\/(dist\/|node_modules\/)/, '$1').replace(/^node:/, 'node:');

/** Summary of the samples in [fromUs, toUs] (CLOCK_MONOTONIC µs); the whole profile without them. */
export function summarizeProfile(file: string, fromUs = -Infinity, toUs = Infinity, topN = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const frameKey = (f: ProfileNode['callFrame']) => (f.url ? `${f.functionName || '(anonymous)'} ${short(f.url)}:${f.lineNumber + 1}` : f.functionName);
  const partOfFrame = (f: ProfileNode['callFrame']) => PARTS.findIndex((p) => p.match(f));

  /** Per node, memoised: the parts on its stack (by index) and, per library part, the caller below its outermost frame. */
  interface StackInfo {
    parts: Set<number>;
    callers: Map<number, string>;
  }
  const infoOf = new Map<number, StackInfo>();
  const stackInfo = (id: number): StackInfo => {
    const known = infoOf.get(id);
    if (known) return known;
    const node = byId.get(id)!;
    const up = parent.get(id);
    const below = up !== undefined ? stackInfo(up) : { parts: new Set<number>(), callers: new Map<number, string>() };
    const info: StackInfo = { parts: new Set(below.parts), callers: new Map(below.callers) };
    const i = partOfFrame(node.callFrame);
    if (i >= 0) {
      info.parts.add(i);
      // the outermost frame of a library: remember who called it
      if (PARTS[i]!.lib && !info.callers.has(i) && up !== undefined) info.callers.set(i, frameKey(byId.get(up)!.callFrame));
    }
    infoOf.set(id, info);
    return info;
  };

  let t = profile.startTime;
  let total = 0;
  let idle = 0;
  const charged = new Map<number, number>();
  const inclusive = new Map<number, number>();
  const callerCount = new Map<string, number>();
  const selfCount = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    if (t < fromUs || t > toUs) continue;
    const id = profile.samples[i]!;
    const node = byId.get(id)!;
    total++;
    if (node.callFrame.functionName === '(idle)') {
      idle++;
      continue;
    }
    const info = stackInfo(id);
    const first = info.parts.size > 0 ? Math.min(...info.parts) : -1;
    charged.set(first, (charged.get(first) ?? 0) + 1);
    for (const p of info.parts) inclusive.set(p, (inclusive.get(p) ?? 0) + 1);
    const libCaller = info.callers.get(first);
    if (libCaller) callerCount.set(`${first}\u0000${libCaller}`, (callerCount.get(`${first}\u0000${libCaller}`) ?? 0) + 1);
    const key = frameKey(node.callFrame);
    selfCount.set(key, (selfCount.get(key) ?? 0) + 1);
  }
  const busy = total - idle;
  const share = (n: number) => (busy > 0 ? n / busy : 0);
  const name = (i: number) => (i >= 0 ? PARTS[i]!.part : 'other (node internals, native, unattributed)');
  return {
    windowMs: (Math.min(toUs, profile.endTime) - Math.max(fromUs, profile.startTime)) / 1000,
    samples: total,
    busyShare: total > 0 ? busy / total : 0,
    parts: [...charged]
      .map(([i, n]) => ({ part: name(i), share: share(n), inclusive: share(i >= 0 ? (inclusive.get(i) ?? 0) : n) }))
      .sort((a, b) => b.share - a.share),
    callers: [...callerCount]
      .map(([k, n]) => ({ part: name(Number(k.split('\u0000')[0])), caller: k.split('\u0000')[1]!, share: share(n) }))
      .filter((c) => c.share >= 0.005)
      .sort((a, b) => b.share - a.share),
    top: [...selfCount]
      .map(([fn, n]) => ({ fn, share: share(n) }))
      .sort((a, b) => b.share - a.share)
      .slice(0, topN),
  };
}

export function formatProfile(title: string, s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)} %`;
  return [
    `${title}: ${s.samples} samples over ${(s.windowMs / 1000).toFixed(1)} s; main thread busy ${pct(s.busyShare)} of the window`,
    '  busy time by part (each sample charged once, in the priority order of bench/lib/profile.ts) | on the stack at all:',
    ...s.parts.map((p) => `    ${pct(p.share)}  | ${pct(p.inclusive)}  ${p.part}`),
    '  who calls the libraries (share of busy time charged to the library, by calling function):',
    ...s.callers.map((c) => `    ${pct(c.share)}  ${c.part} ← ${c.caller}`),
    '  self time, top functions:',
    ...s.top.map((f) => `    ${pct(f.share)}  ${f.fn}`),
  ].join('\n');
}

// `npx tsx bench/lib/profile.ts <file.cpuprofile> [fromUs toUs]`
if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, from, to] = process.argv.slice(2);
  if (!file) {
    console.error('usage: tsx bench/lib/profile.ts <file.cpuprofile> [fromUs toUs]');
    process.exit(2);
  }
  console.log(formatProfile(file, summarizeProfile(file, from ? Number(from) : -Infinity, to ? Number(to) : Infinity)));
}
