import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { Tally } from '../lib/tally.js';

/** A CDR row as the `cdrs` insert takes it: column name → value, JSON-serialisable. */
export type CdrRow = Record<string, unknown>;

const SEGMENT = /^cdrs-(\d{13})-(\d{6})\.ndjson(\.replaying)?$/;
/** A segment taken for replay is renamed first (see replayAll). */
const CLAIMED = '.replaying';

interface Waiting {
  lines: string;
  count: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * The local spool for CDRs Postgres could not take in time: append-only NDJSON files under
 * `DATA_DIR/spool`, one row per line, fsynced before `append()` resolves (and so before the caller
 * gets its answer). Appends that arrive together share one write and one fsync.
 *
 * Files are segments: appends go to the open segment; `replay()` seals it (later appends start a
 * new one), inserts every sealed segment oldest first, and deletes a segment only after its rows
 * are committed. Rows carry their idempotency key and the insert skips keys already present, so a
 * segment replayed twice (a crash between commit and delete) still yields each CDR exactly once.
 *
 * A replay takes a segment by renaming it (`….replaying`) before reading it, and a writer checks
 * after each fsync that its segment is still in place: so a spool that another instance shares by
 * mistake (one DATA_DIR for two) loses nothing. When a replay took the open segment away, the rows
 * just written may not have been read: they are written again to a new segment (a duplicate is
 * skipped by its idempotency key; a lost CDR could not be recovered).
 */
export class CdrSpool {
  private open: { handle: FileHandle; name: string } | null = null;
  private sequence = 0;
  private waiting: Waiting[] = [];
  private writing: Promise<void> | null = null;
  private replaying: Promise<number> | null = null;
  private loaded: Promise<void> | null = null;
  /** CDRs in the spool, not yet replayed. */
  depth = 0;
  /** Of those, the ones in the open segment. */
  private openRows = 0;
  /**
   * Failed writes (a full disk), logged once a second with the count since the last line: each
   * failed CDR already has a line of its own where it was handed over (`CDR not stored`).
   */
  private readonly failedWrites = new Tally();

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Creates the directory and counts what an earlier run left behind (once). */
  init(): Promise<void> {
    this.loaded ??= this.load();
    return this.loaded;
  }

  private async load(): Promise<void> {
    // CDRs hold callers' numbers and what they keyed in: the service's user alone reads them.
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    let depth = 0;
    for (const name of await this.segments()) {
      try {
        depth += await countLines(path.join(this.dir, name));
      } catch (err) {
        this.unreadable(name, err as Error);
      }
    }
    this.depth += depth;
    if (depth > 0) this.log.warn({ spooled: depth, dir: this.dir }, 'CDR spool holds CDRs from an earlier run; replaying when Postgres takes them');
  }

  /** Appends rows durably: resolves once they are written and fsynced. */
  append(rows: CdrRow[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    const lines = rows.map((r) => `${JSON.stringify(r)}\n`).join('');
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ lines, count: rows.length, resolve, reject });
      if (!this.writing) this.writing = this.writeAll();
    });
  }

  private async writeAll(): Promise<void> {
    let taken = 0;
    while (this.waiting.length > 0) {
      const group = this.waiting.splice(0);
      try {
        if (!this.open) {
          await this.init();
          const name = `cdrs-${String(Date.now()).padStart(13, '0')}-${String(this.sequence++ % 1e6).padStart(6, '0')}.ndjson`;
          this.open = { handle: await open(path.join(this.dir, name), 'a', 0o600), name };
          this.openRows = 0;
        }
        await this.open.handle.appendFile(group.map((w) => w.lines).join(''));
        await this.open.handle.datasync();
        if (!(await this.stillInPlace(this.open))) {
          // Taken by another instance's replay (a shared DATA_DIR), perhaps before these rows were written.
          if (++taken > 3) throw new Error(`CDR spool segments in ${this.dir} are taken away as soon as they are written`);
          this.log.warn({ dir: this.dir, file: this.open.name }, 'CDR spool segment taken by another replay; writing its last CDRs again');
          const gone = this.open;
          this.open = null;
          await gone.handle.close().catch(() => {});
          this.waiting.unshift(...group);
          continue;
        }
        taken = 0;
        let count = 0;
        for (const w of group) {
          count += w.count;
          w.resolve();
        }
        this.depth += count;
        this.openRows += count;
      } catch (err) {
        const writesFailed = this.failedWrites.add();
        if (writesFailed > 0) this.log.error({ err, dir: this.dir, writesFailed }, 'CDR spool write failed');
        for (const w of group) w.reject(err as Error);
        // A write that failed part-way (disk full) may have left a partial line: the next append
        // starts a segment of its own instead of running on from it, where replay would skip both.
        const failed = this.open;
        this.open = null;
        this.openRows = 0;
        await failed?.handle.close().catch(() => {});
      }
    }
    this.writing = null;
  }

  /** Whether the open segment is still where it was written (no replay renamed it away). */
  private async stillInPlace(segment: { handle: FileHandle; name: string }): Promise<boolean> {
    const [named, written] = await Promise.all([stat(path.join(this.dir, segment.name)).catch(ifGone), segment.handle.stat()]);
    return named !== false && named.ino === written.ino && named.dev === written.dev;
  }

  private async segments(): Promise<string[]> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    return names.filter((n) => SEGMENT.test(n)).sort();
  }

  /** Closes the open segment so that it can be replayed; the next append starts a new one. */
  private async seal(): Promise<void> {
    while (this.writing) await this.writing;
    const current = this.open;
    this.open = null;
    this.openRows = 0;
    await current?.handle.close();
  }

  /**
   * Inserts every spooled CDR through `insert` (chunks of `chunk` rows) and deletes each segment
   * once committed. Returns how many rows were replayed; throws (keeping the segment) when an
   * insert fails. Concurrent calls share one run.
   */
  replay(insert: (rows: CdrRow[]) => Promise<void>, chunk = 1000): Promise<number> {
    this.replaying ??= this.replayAll(insert, chunk).finally(() => {
      this.replaying = null;
    });
    return this.replaying;
  }

  private async replayAll(insert: (rows: CdrRow[]) => Promise<void>, chunk: number): Promise<number> {
    await this.init();
    await this.seal();
    let replayed = 0;
    for (const name of await this.segments()) {
      if (name === this.open?.name) continue;
      // Renamed before it is read: a writer still appending to it (another instance on this
      // DATA_DIR) then sees it gone and writes again what this read may have missed.
      const file = path.join(this.dir, name.endsWith(CLAIMED) ? name : `${name}${CLAIMED}`);
      if (!name.endsWith(CLAIMED) && !(await rename(path.join(this.dir, name), file).then(() => true, ifGone))) continue;
      let handle: FileHandle | false;
      try {
        handle = await open(file, 'r').catch(ifGone);
        if (handle && !(await handle.stat()).isFile()) {
          await handle.close();
          throw Object.assign(new Error(`EISDIR: not a file, read '${file}'`), { code: 'EISDIR' });
        }
      } catch (err) {
        this.unreadable(name, err as Error);
        continue;
      }
      if (handle === false) continue; // replayed meanwhile by another instance
      // Read line by line, a chunk at a time: a segment holds up to ~30 s of CDRs spooled at full rate
      // (the replay's backoff), too much to hold whole in memory, or in one string past ~512 MB.
      let lines = 0;
      let stored = 0;
      let rows: CdrRow[] = [];
      try {
        for await (const line of createInterface({ input: handle.createReadStream({ autoClose: false }), crlfDelay: Infinity })) {
          if (line === '') continue;
          lines++;
          try {
            rows.push(JSON.parse(line) as CdrRow);
          } catch {
            // Only a write torn by a crash or a failed one (disk full) can leave a partial line, and
            // that write was never acknowledged; the next append went to a new segment.
            this.log.warn({ file }, 'skipping a torn line in the CDR spool');
          }
          if (rows.length === chunk) {
            await insert(rows);
            stored += rows.length;
            rows = [];
          }
        }
        if (rows.length > 0) await insert(rows);
        stored += rows.length;
      } finally {
        await handle.close();
      }
      await unlink(file).catch(ifGone);
      this.depth = Math.max(0, this.depth - lines);
      replayed += stored;
      // A debug line: the writer logs one info line a replay, `spooled CDRs stored in Postgres`.
      this.log.debug({ file: name, rows: stored }, 'CDR spool segment replayed');
    }
    // Every segment sealed before this replay is stored now, by it or by another instance's (whose
    // rows this count never held, or which took rows it did): what is left is the open segment's.
    this.depth = this.openRows;
    return replayed;
  }

  /** A file that cannot be read (its permissions, say) must not hold back the start or the other files. */
  private unreadable(name: string, err: Error): void {
    this.log.error({ err, file: path.join(this.dir, name) }, 'CDR spool file cannot be read: left in place, not replayed; make it readable and restart');
  }

  /** Keeps a row Postgres will never take in `rejected.ndjson` (not replayed), with the reason. */
  async setAside(row: CdrRow, reason: string): Promise<void> {
    const handle = await open(path.join(this.dir, 'rejected.ndjson'), 'a', 0o600);
    try {
      await handle.appendFile(`${JSON.stringify({ reason, row })}\n`);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  /**
   * Waits for pending appends and closes the open segment; its rows stay for the next run. A replay
   * still running is not waited for: a segment is deleted only after its commit, so one cut short
   * is replayed again (idempotently) by the next run.
   */
  async close(): Promise<void> {
    await this.seal();
  }
}

/** `false` for a file another instance's replay renamed or deleted first; any other error is thrown. */
function ifGone(err: NodeJS.ErrnoException): false {
  if (err.code === 'ENOENT') return false;
  throw err;
}

async function countLines(file: string): Promise<number> {
  let n = 0;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) if (line !== '') n++;
  return n;
}
