import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { FastifyBaseLogger as Logger } from 'fastify';

/** A CDR row as the `cdrs` insert takes it: column name → value, JSON-serialisable. */
export type CdrRow = Record<string, unknown>;

const SEGMENT = /^cdrs-(\d{13})-(\d{6})\.ndjson$/;

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
    await mkdir(this.dir, { recursive: true });
    let depth = 0;
    for (const name of await this.segments()) depth += await countLines(path.join(this.dir, name));
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
    while (this.waiting.length > 0) {
      const group = this.waiting.splice(0);
      try {
        if (!this.open) {
          await this.init();
          const name = `cdrs-${String(Date.now()).padStart(13, '0')}-${String(this.sequence++ % 1e6).padStart(6, '0')}.ndjson`;
          this.open = { handle: await open(path.join(this.dir, name), 'a'), name };
        }
        await this.open.handle.appendFile(group.map((w) => w.lines).join(''));
        await this.open.handle.datasync();
        for (const w of group) {
          this.depth += w.count;
          w.resolve();
        }
      } catch (err) {
        this.log.error({ err, dir: this.dir }, 'CDR spool write failed');
        for (const w of group) w.reject(err as Error);
        // A write that failed part-way (disk full) may have left a partial line: the next append
        // starts a segment of its own instead of running on from it, where replay would skip both.
        const failed = this.open;
        this.open = null;
        await failed?.handle.close().catch(() => {});
      }
    }
    this.writing = null;
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
      const file = path.join(this.dir, name);
      const rows: CdrRow[] = [];
      let lines = 0;
      for (const line of (await readFile(file, 'utf8')).split('\n')) {
        if (line === '') continue;
        lines++;
        try {
          rows.push(JSON.parse(line) as CdrRow);
        } catch {
          // Only a write torn by a crash or a failed one (disk full) can leave a partial line, and
          // that write was never acknowledged; the next append went to a new segment.
          this.log.warn({ file }, 'skipping a torn line in the CDR spool');
        }
      }
      for (let i = 0; i < rows.length; i += chunk) await insert(rows.slice(i, i + chunk));
      await unlink(file);
      this.depth = Math.max(0, this.depth - lines);
      replayed += rows.length;
      this.log.info({ file: name, rows: rows.length }, 'CDR spool segment replayed');
    }
    return replayed;
  }

  /** Keeps a row Postgres will never take in `rejected.ndjson` (not replayed), with the reason. */
  async setAside(row: CdrRow, reason: string): Promise<void> {
    const handle = await open(path.join(this.dir, 'rejected.ndjson'), 'a');
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

async function countLines(file: string): Promise<number> {
  let n = 0;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) if (line !== '') n++;
  return n;
}
