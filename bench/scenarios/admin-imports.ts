/**
 * The rules set up through the admin API (the first import of VIP list gold is timed), then the
 * VIP bulk upsert rounds, on an instance of their own: the instance under load is started
 * afterwards and only loads the resulting rules (as every instance does), so its RSS is that of a
 * callback server, not what parsing 0.7 MB request bodies left behind.
 */
import { adminClient, seedRules, vipBulkRound } from '../lib/admin.js';
import { ADMIN_KEY, CFG, log } from '../lib/config.js';
import { startExoroute, type Env } from '../lib/environment.js';
import { rss } from '../lib/proc.js';

export interface AdminFigures {
  goldImportMs: number;
  vip: Array<{ insertMs: number; updateMs: number }>;
  /** peak RSS of the instance that served the imports, MB */
  adminPeakMb: number;
}

export async function adminImports(env: Env): Promise<AdminFigures> {
  const admin = await startExoroute(env, { name: 'exoroute-admin' });
  const api = adminClient(admin.url, ADMIN_KEY);
  log('set-up through the admin API: VIP list gold (10,000), schedule, dial group, flows');
  const { goldImportMs } = await seedRules(api);
  log('VIP bulk upsert of 10,000 entries, one request each');
  const vip: Array<{ insertMs: number; updateMs: number }> = [];
  for (let r = 1; r <= CFG.rounds; r++) {
    vip.push(await vipBulkRound(api, r));
    log(`  round ${r}: new entries ${vip[r - 1]!.insertMs.toFixed(0)} ms, all updated ${vip[r - 1]!.updateMs.toFixed(0)} ms`);
  }
  const adminPeakMb = rss(admin.pid).peakMb;
  await admin.stop();
  return { goldImportMs, vip, adminPeakMb };
}
