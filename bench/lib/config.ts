/**
 * What a bench run is asked to do (the command line and BENCH_* variables, see bench/run.ts), the
 * secrets it gives exoroute, and its log line.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
const args = process.argv.slice(2);
export const QUICK = args.includes('--quick') || process.env.BENCH_QUICK === '1';
export const PROFILE = args.includes('--profile');
const envInt = (name: string, fallback: number) => {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};
export const CFG = {
  rounds: envInt('BENCH_ROUNDS', QUICK ? 1 : 3),
  seconds: envInt('BENCH_SECONDS', QUICK ? 2 : 6),
  warmupSeconds: QUICK ? 1 : 3,
  connections: 50,
  fixedRate: 1000,
  cdrRows: envInt('BENCH_CDR_ROWS', QUICK ? 40_000 : 1_000_000),
  queryReps: QUICK ? 3 : 11,
  logLevel: process.env.BENCH_LOG_LEVEL ?? 'info',
  nodeOptions: process.env.BENCH_NODE_OPTIONS ?? '',
  keep: process.env.BENCH_KEEP === '1',
};
export const ADMIN_KEY = `exr_bench-${randomBytes(12).toString('hex')}`;
export const CALLBACK_SECRET = 'bench-callback-secret';
/** The header every callback carries: the callback secret as the HTTP Basic password, as Exotel is told to send it. */
export const BASIC = { authorization: `Basic ${Buffer.from(`exotel:${CALLBACK_SECRET}`).toString('base64')}` };
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
