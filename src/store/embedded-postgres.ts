import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, cp, mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { Logger } from 'pino';

export interface EmbeddedDatabase {
  /** Connection string through the Unix socket. */
  url: string;
  /** The same database over loopback TCP. */
  tcpUrl: string;
  /** The postmaster's process id (fault tests pause it with its children). */
  pid: number | undefined;
  /** Where its files are: `dir`, or (as root, when the postgres user cannot reach `dir`) a directory under /var/lib. */
  dir: string;
  stop(): Promise<void>;
}

/** The embedded Postgres cannot start; the message names the directory, the reason and the fix. */
export class EmbeddedPostgresError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedPostgresError';
  }
}

/** A free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Where the embedded Postgres puts its Unix socket (`.s.PGSQL.<port>`); it listens on 127.0.0.1 too. */
const SOCKET_DIR = '/tmp';

/**
 * As root, where the binaries and data go when the postgres user cannot reach them where they are
 * (a checkout in a mode-700 home directory). Root-owned and not writable by others: root loads
 * nothing from it, but the postgres user runs what is there.
 */
export const ROOT_FALLBACK_DIR = '/var/lib/exoroute-embedded-postgres';

/**
 * A new 16 MB WAL segment is not filled with zeroes first. At 10,000 CDRs/s a segment fills every
 * second or so, and until checkpoints recycle old ones each new one was written in full by the
 * committing backend: a stall of several ms for the callbacks waiting on that commit (measured:
 * passthru p99 at 50 connections 7.3 instead of 10 ms). The cost: a full disk shows at a WAL
 * write (Postgres restarts) instead of at the segment's creation (an error) — either way the
 * CDRs go to the spool.
 */
const WAL_SETTINGS = ['-c', 'wal_init_zero=off'];

const READY = 'database system is ready to accept connections';
const START_TIMEOUT_MS = 120_000;
const USER = 'exoroute';
const PASSWORD = 'exoroute';

const execFileAsync = promisify(execFile);

interface Ids {
  uid: number;
  gid: number;
}

/**
 * Starts Postgres with its files in `dir`, kept between runs (unless `persistent: false`). Used when
 * DATABASE_URL is unset (laptop use, tests, benchmarks).
 *
 * It runs the binaries of the `@embedded-postgres/<platform>-<arch>` package itself rather than
 * through the `embedded-postgres` launcher, which answers SIGINT/SIGTERM with an immediate exit
 * (in-flight callbacks cut off), lets a failed spawn crash the process with a stack trace, and
 * starts Postgres in the terminal's process group, so that Ctrl-C stopped Postgres under the
 * service's feet (its connections failing while CDRs were being flushed). Here Postgres has a
 * process group of its own and is stopped by stop(), or when this process exits.
 *
 * As root (a fresh VM), Postgres runs as the `postgres` user (created when missing), which must be
 * able to reach the binaries and `dir`: when it cannot (a checkout in a mode-700 home directory),
 * the binaries are copied and the files kept under ROOT_FALLBACK_DIR instead.
 */
export async function startEmbeddedPostgres(
  dir: string,
  log: Logger,
  opts: {
    port?: number;
    persistent?: boolean;
    database?: string;
    rootFallbackDir?: string;
    binaries?: string;
    /** A command the server runs under, before its own path (bench/instructions.ts: valgrind). */
    wrapper?: string[];
  } = {},
): Promise<EmbeddedDatabase> {
  const ids = process.getuid?.() === 0 ? await postgresUser() : null;
  const fallback = opts.rootFallbackDir ?? ROOT_FALLBACK_DIR;
  const nativeDir = opts.binaries ?? (await binariesDir());
  const bin = ids ? await reachableBinaries(nativeDir, ids, fallback, log) : nativeDir;
  const databaseDir = await reachableDataDir(path.resolve(dir), ids, fallback, log);
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) await initdb(bin, databaseDir, ids);

  const port = opts.port ?? (await freePort());
  const child = await startPostgres(bin, databaseDir, port, ids, log, opts.wrapper ?? []);
  // Postgres' own lines are debug; its last ones are kept for the error line if it stops under the
  // service (killed, out of memory, a PANIC): nothing else says so, and nothing starts it again.
  let stopping = false;
  let lastOutput = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    lastOutput = (lastOutput + chunk.toString()).slice(-4000);
  });
  child.once('exit', (code, signal) => {
    if (stopping) return;
    log.error(
      { dir: databaseDir, pid: child.pid, exit: signal ?? code, postgres: lastLines(lastOutput) },
      'the embedded Postgres stopped while exoroute runs: callbacks are answered from the rules in memory and CDRs spooled, but nothing is stored until exoroute is restarted (which starts it again)',
    );
  });
  const stop = async () => {
    stopping = true;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      // Fast shutdown: sessions still open are ended; what they committed is on disk.
      child.kill('SIGINT');
      await exited;
    }
    if (opts.persistent === false) await rm(databaseDir, { recursive: true, force: true });
  };

  const database = opts.database ?? 'exoroute';
  try {
    const client = new pg.Client({ host: '127.0.0.1', port, user: USER, password: PASSWORD, database: 'postgres' });
    await client.connect();
    try {
      const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (found.rowCount === 0) await client.query(`CREATE DATABASE "${database}"`);
    } finally {
      await client.end();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  log.info({ dir: databaseDir, port }, 'embedded postgres started');
  return {
    // Through the Unix socket: on one machine it costs both sides less CPU per query than loopback
    // TCP (measured: 13 instead of 17 µs per query in the client, 30 % more queries a second).
    url: `postgresql://${USER}:${PASSWORD}@localhost:${port}/${database}?host=${SOCKET_DIR}`,
    tcpUrl: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`,
    pid: child.pid,
    dir: databaseDir,
    stop,
  };
}

/**
 * The Postgres servers this process started and has not stopped. Each has a process group of its
 * own, so a signal meant for this process (Ctrl-C) does not reach it: they are stopped when this
 * process exits, and on SIGINT/SIGTERM/SIGHUP before the signal takes its usual course — unless
 * the process stops them itself after its own shutdown (leaveSignalsToCaller).
 */
const running = new Set<ChildProcess>();
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let callerHandlesSignals = false;
function stopAll(): void {
  for (const child of running) child.kill('SIGINT');
}
function onSignal(signal: NodeJS.Signals): void {
  if (callerHandlesSignals) return;
  stopAll();
  // Delivered again without this listener: the process ends as it would have without this module.
  for (const s of STOP_SIGNALS) process.removeListener(s, onSignal);
  process.kill(process.pid, signal);
}
process.on('exit', stopAll);
for (const signal of STOP_SIGNALS) process.on(signal, onSignal);

/**
 * For a process with its own graceful shutdown (the server): signals no longer stop the embedded
 * Postgres here; the caller stops it (stop()) once in-flight work is done, or it stops at exit.
 */
export function leaveSignalsToCaller(): void {
  callerHandlesSignals = true;
}

/** `native/` of the binary package for this platform (bin/, lib/, share/). */
async function binariesDir(): Promise<string> {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    const mod = (await import(name)) as { postgres: string };
    return path.dirname(path.dirname(mod.postgres));
  } catch {
    throw new EmbeddedPostgresError(
      `no embedded Postgres for ${os.platform()}-${os.arch()} (${name} is not installed): set DATABASE_URL to a Postgres of your own`,
    );
  }
}

async function postgresUser(): Promise<Ids> {
  const found = await userIds('postgres');
  if (found) return found;
  try {
    await execFileAsync('groupadd', ['-f', '--system', 'postgres']);
    await execFileAsync('useradd', ['--system', '-g', 'postgres', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
  } catch (err) {
    throw new EmbeddedPostgresError(
      `running as root, the embedded Postgres needs a user "postgres" to run as, and creating it failed (${(err as Error).message.split('\n')[0]}): create it (useradd --system postgres), run exoroute as another user, or set DATABASE_URL`,
    );
  }
  const created = await userIds('postgres');
  if (!created)
    throw new EmbeddedPostgresError('running as root, the embedded Postgres needs a user "postgres"; it was created but cannot be found: set DATABASE_URL');
  return created;
}

async function userIds(name: string): Promise<Ids | null> {
  try {
    const [uid, gid] = await Promise.all([execFileAsync('id', ['-u', name]), execFileAsync('id', ['-g', name])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return null;
  }
}

/** Whether `ids` may search `dir` (and so every directory on the way to it). */
async function canReach(dir: string, ids: Ids): Promise<boolean> {
  try {
    await execFileAsync('/bin/sh', ['-c', 'test -x "$1"', 'sh', dir], { uid: ids.uid, gid: ids.gid });
    return true;
  } catch {
    return false;
  }
}

/** The first directory on the way to `target` that `ids` cannot search, with its mode, for messages. */
async function blocker(target: string, ids: Ids): Promise<string> {
  const parts = path.resolve(target).split(path.sep).filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const dir = path.sep + parts.slice(0, i).join(path.sep);
    if (!(await canReach(dir, ids))) {
      const st = await stat(dir).catch(() => null);
      return st ? `${dir} is mode ${(st.mode & 0o777).toString(8)}` : `${dir} is missing`;
    }
  }
  return `${target} is not reachable`;
}

/** A root-owned directory others cannot write, made when missing. */
async function fallbackRoot(fallback: string, ids: Ids, what: string, why: string): Promise<void> {
  const fail = (reason: string) =>
    new EmbeddedPostgresError(
      `the postgres user cannot reach ${what} (${why}), and ${fallback} cannot take them instead: ${reason}. ` +
        'Fix: clone exoroute outside a private home directory (e.g. /opt/exoroute), or set DATABASE_URL to a Postgres of your own',
    );
  try {
    await mkdir(fallback, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw fail((err as Error).message);
  }
  const st = await stat(fallback);
  if (st.uid !== 0 || (st.mode & 0o022) !== 0)
    throw fail(`it must be owned by root and writable by nobody else (it is mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid})`);
  if (!(await canReach(fallback, ids))) throw fail(await blocker(fallback, ids));
}

/** `nativeDir`, or a copy of it the postgres user can run. */
async function reachableBinaries(nativeDir: string, ids: Ids, fallback: string, log: Logger): Promise<string> {
  if (await canReach(path.join(nativeDir, 'bin'), ids)) return nativeDir;
  const why = await blocker(path.join(nativeDir, 'bin'), ids);
  await fallbackRoot(fallback, ids, `the Postgres binaries in ${nativeDir}`, why);
  const pkg = JSON.parse(await readFile(path.join(nativeDir, '..', 'package.json'), 'utf8').catch(() => '{}')) as { version?: string };
  const copy = path.join(fallback, `postgres-${pkg.version ?? 'unknown'}-${os.platform()}-${os.arch()}`);
  if (existsSync(path.join(copy, 'bin', 'postgres'))) return copy;
  // Copied beside, then renamed: several processes starting at once each copy, one rename wins.
  const partial = `${copy}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await cp(nativeDir, partial, { recursive: true, verbatimSymlinks: true });
    await rename(partial, copy).catch((err: NodeJS.ErrnoException) => {
      if (!existsSync(path.join(copy, 'bin', 'postgres'))) throw err;
    });
  } catch (err) {
    throw new EmbeddedPostgresError(
      `the postgres user cannot reach the Postgres binaries in ${nativeDir} (${why}), and copying them to ${copy} failed: ${(err as Error).message}. Fix: clone exoroute outside a private home directory (e.g. /opt/exoroute), or set DATABASE_URL`,
    );
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  log.warn({ from: nativeDir, to: copy }, `the postgres user cannot reach the Postgres binaries (${why}): running a copy`);
  return copy;
}

/** `databaseDir`, or (as root, when the postgres user cannot reach it) one under the fallback directory. */
async function reachableDataDir(databaseDir: string, ids: Ids | null, fallback: string, log: Logger): Promise<string> {
  const parent = path.dirname(databaseDir);
  try {
    await mkdir(parent, { recursive: true });
  } catch (err) {
    throw new EmbeddedPostgresError(
      `cannot create ${parent} for the embedded Postgres: ${(err as Error).message}. Fix: set DATA_DIR to a directory you can write, or DATABASE_URL`,
    );
  }
  if (!ids || (await canReach(parent, ids))) return databaseDir;
  const why = await blocker(parent, ids);
  await fallbackRoot(fallback, ids, `${databaseDir}`, why);
  const moved = path.join(fallback, `data-${createHash('sha256').update(databaseDir).digest('hex').slice(0, 16)}`);
  log.warn({ dir: databaseDir, instead: moved }, `the postgres user cannot reach ${databaseDir} (${why}): the embedded Postgres keeps its files in ${moved}`);
  return moved;
}

async function initdb(bin: string, dir: string, ids: Ids | null): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (ids) await chown(dir, ids.uid, ids.gid);
  const pwfile = path.join(os.tmpdir(), `exoroute-pg-${randomBytes(6).toString('hex')}`);
  await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  try {
    if (ids) await chown(pwfile, ids.uid, ids.gid);
    const args = [`--pgdata=${dir}`, `--username=${USER}`, `--pwfile=${pwfile}`, '--auth=scram-sha-256', '--encoding=UTF8', '--locale=C'];
    const { code, output, error } = await runToEnd(path.join(bin, 'bin', 'initdb'), args, ids);
    if (error) throw new EmbeddedPostgresError(`cannot run ${path.join(bin, 'bin', 'initdb')}: ${error.message}. Fix: reinstall (npm ci), or set DATABASE_URL`);
    if (code !== 0) throw new EmbeddedPostgresError(`initdb for the embedded Postgres in ${dir} failed (exit ${code}): ${lastLines(output)}`);
  } finally {
    await unlink(pwfile).catch(() => {});
  }
}

function runToEnd(cmd: string, args: string[], ids: Ids | null): Promise<{ code: number | null; output: string; error?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { ...(ids ?? {}), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('error', (error) => resolve({ code: null, output, error }));
    child.once('close', (code) => resolve({ code, output }));
  });
}

function startPostgres(bin: string, dir: string, port: number, ids: Ids | null, log: Logger, wrapper: string[]): Promise<ChildProcess> {
  const args = [
    '-D',
    dir,
    '-p',
    String(port),
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    `unix_socket_directories=${SOCKET_DIR}`,
    '-c',
    'max_connections=200',
    '-c',
    'lc_messages=C',
    ...WAL_SETTINGS,
  ];
  const postgres = path.join(bin, 'bin', 'postgres');
  return new Promise((resolve, reject) => {
    // A process group of its own: Ctrl-C in a terminal reaches the service, which stops Postgres last.
    const [command, ...before] = [...wrapper, postgres];
    const child = spawn(command!, [...before, ...args], {
      ...(ids ?? {}),
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    running.add(child);
    child.once('exit', () => running.delete(child));
    let output = '';
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new EmbeddedPostgresError(`the embedded Postgres in ${dir} did not start within ${START_TIMEOUT_MS / 1000} s: ${lastLines(output)}`));
    }, START_TIMEOUT_MS);
    child.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      log.debug({ postgres: text.trim() }, 'embedded postgres');
      if (ready) return;
      output += text;
      if (output.includes(READY)) {
        ready = true;
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new EmbeddedPostgresError(`cannot run ${postgres}: ${err.message}. Fix: reinstall (npm ci), or set DATABASE_URL`));
    });
    child.once('exit', (code, signal) => {
      if (ready) return;
      clearTimeout(timer);
      const running = alreadyRunning(output);
      reject(
        new EmbeddedPostgresError(
          running
            ? `the embedded Postgres in ${dir} is already running (PID ${running}): another exoroute uses this DATA_DIR. Stop that one first, or give this one a DATA_DIR of its own (and a PORT); if no exoroute runs, the Postgres was left behind by one killed with SIGKILL: stop it with kill -INT ${running}, then start again`
            : `the embedded Postgres in ${dir} stopped at start (${signal ?? `exit ${code}`}): ${lastLines(output)}`,
        ),
      );
    });
  });
}

/**
 * The process id of the Postgres already running on the data directory, when that is why this one
 * stopped: its lock file names a live process (`lock file "postmaster.pid" already exists`, with a
 * hint naming the PID; messages are in English, lc_messages=C).
 */
function alreadyRunning(output: string): number | null {
  if (!output.includes('lock file "postmaster.pid" already exists')) return null;
  const pid = /\(PID (\d+)\)/.exec(output)?.[1];
  return pid ? Number(pid) : null;
}

function lastLines(output: string): string {
  return output.trim().split('\n').slice(-4).join(' | ') || '(no output)';
}
