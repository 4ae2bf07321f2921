/**
 * Exotel callbacks under load: contenders at saturation (a closed loop of 50 connections, in turns,
 * round after round) and exoroute at a fixed rate (autocannon's `overallRate`, and an evenly paced
 * open loop). See bench/README.md, "Scenarios".
 */
import { randomBytes } from 'node:crypto';
import { BASIC, CFG, log } from '../lib/config.js';
import { startBaseline, type Env } from '../lib/environment.js';
import { closedLoop, paced } from '../lib/load.js';
import { resetPeakRss, rss, type Service } from '../lib/proc.js';
import { heap } from '../lib/scrape.js';
import { callbackPaths } from '../lib/traffic.js';
import { measure, settle, vacuumWritten, type Contender, type RunRecord } from './measure.js';

export interface Memory {
  rssMb: number;
  heapTotalMb: number;
  heapUsedMb: number;
  externalMb: number;
}

export interface LoadFigures {
  runs: RunRecord[];
  /** exoroute's memory, MB: idle with the rules loaded, at the first load run, its peak over all of them, after the last */
  idle: Memory;
  rssAtLoadStart: number;
  underLoadPeakMb: number;
  /** whether the peak is the kernel's (VmHWM reset before the first run) rather than sampled */
  rssReset: boolean;
  afterLoad: Memory;
  baselineRss: { bare: number; naive: number; naiveState: number };
}

/**
 * The callback scenarios against `exo`, which has its rules loaded: passthru and dial at 50
 * connections beside the baselines (started here and stopped after), then the fixed rate.
 */
export async function callbackScenarios(env: Env, exo: Service): Promise<LoadFigures> {
  const idle = { rssMb: rss(exo.pid).rssMb, ...(await heap(exo)) };
  log(
    `exoroute with the rules loaded, idle: RSS ${idle.rssMb.toFixed(0)} MB, V8 heap ${idle.heapTotalMb.toFixed(0)} MB (${idle.heapUsedMb.toFixed(0)} MB used)`,
  );
  const bare = await startBaseline(env, 'bare');
  const naive = await startBaseline(env, 'naive');
  const naiveState = await startBaseline(env, 'naive-state');

  const rssReset = resetPeakRss(exo.pid);
  const rssAtLoadStart = rss(exo.pid).rssMb;
  const runs = [
    ...(await closedLoopScenario(env, 'passthru', [
      { name: 'exoroute', svc: exo, kind: 'passthru', flow: 'inbound' },
      { name: 'naive', svc: naive, kind: 'passthru', flow: 'inbound' },
      { name: 'bare fastify', svc: bare, kind: 'passthru', flow: 'inbound' },
    ])),
    ...(await closedLoopScenario(env, 'dial', [
      { name: 'exoroute dial-whom', svc: exo, kind: 'dial-whom', flow: 'agents' },
      { name: 'exoroute connect', svc: exo, kind: 'connect', flow: 'agents' },
      { name: 'naive dial-whom', svc: naive, kind: 'dial-whom', flow: 'agents' },
      { name: 'naive with call state dial-whom', svc: naiveState, kind: 'dial-whom', flow: 'agents' },
    ])),
    ...(await fixedRateScenario(env, { name: 'exoroute', svc: exo, kind: 'passthru', flow: 'inbound' })),
  ];
  const loadPeak = rss(exo.pid);
  const underLoadPeakMb = rssReset ? loadPeak.peakMb : Math.max(...runs.filter((r) => r.contender.startsWith('exoroute')).map((r) => r.rssMb));
  const afterLoad = { rssMb: loadPeak.rssMb, ...(await heap(exo)) };
  const baselineRss = { bare: rss(bare.pid).peakMb, naive: rss(naive.pid).peakMb, naiveState: rss(naiveState.pid).peakMb };
  await naiveState.stop();
  await naive.stop();
  await bare.stop();
  return { runs, idle, rssAtLoadStart, underLoadPeakMb, rssReset, afterLoad, baselineRss };
}

/** Each contender once per round, in an order that rotates, after one warm-up run each. */
async function closedLoopScenario(env: Env, scenario: string, contenders: Contender[]): Promise<RunRecord[]> {
  await settle(env);
  log(`${scenario}: ${contenders.map((c) => c.name).join(', ')}; ${CFG.rounds} rounds of ${CFG.seconds} s, ${CFG.connections} connections`);
  for (const c of contenders) {
    await closedLoop({
      url: c.svc.url,
      connections: CFG.connections,
      seconds: CFG.warmupSeconds,
      next: callbackPaths(c.kind, c.flow, randomBytes(11).toString('hex')),
      headers: BASIC,
    });
  }
  await vacuumWritten(env);
  const runs: RunRecord[] = [];
  for (let round = 1; round <= CFG.rounds; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const c = contenders[(i + round - 1) % contenders.length]!;
      runs.push(
        await measure(env, scenario, c, round, (next) =>
          closedLoop({ url: c.svc.url, connections: CFG.connections, seconds: CFG.seconds, next, headers: BASIC }),
        ),
      );
    }
  }
  return runs;
}

async function fixedRateScenario(env: Env, exo: Contender): Promise<RunRecord[]> {
  await settle(env);
  log(`fixed rate ${CFG.fixedRate}/s: exoroute passthru; autocannon overallRate and an evenly paced open loop; ${CFG.rounds} rounds`);
  const runs: RunRecord[] = [];
  for (let round = 1; round <= CFG.rounds; round++) {
    runs.push(
      await measure(env, 'passthru 1000/s (ac)', exo, round, (next) =>
        closedLoop({ url: exo.svc.url, connections: CFG.connections, seconds: CFG.seconds, overallRate: CFG.fixedRate, next, headers: BASIC }),
      ),
    );
    runs.push(
      await measure(env, 'passthru 1000/s (paced)', exo, round, (next) =>
        paced({ url: exo.svc.url, rate: CFG.fixedRate, seconds: CFG.seconds, sockets: CFG.connections, next, headers: BASIC }),
      ),
    );
  }
  return runs;
}
