import { setImmediate as nextTurn } from 'node:timers/promises';
import pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { inTransaction, QUERY_TIMEOUT_MS, withQueryTimeout, type Database } from './database.js';
import type { ScheduleException, WeeklyWindow } from '../schemas/schedule.js';
import { RULES_CHANNEL } from './audit.js';
import { toFlow, type FlowRow } from './flows.js';
import { toDialGroup, type DialGroupRow } from './dial-groups.js';
import { toOverride, type OverrideColumns } from './schedules.js';
import { loadAvailability } from './agents.js';
import { withDeadline } from '../lib/deadline.js';
import type { RulesSnapshot, VipMember } from '../routing/snapshot.js';

/**
 * Reads every rule with plain SQL, not Prisma: an instance that only answers callbacks then never
 * instantiates Prisma's query compiler (about 70 MB of WebAssembly). Columns are aliased to the
 * field names Prisma gives them, so `toFlow` and `toDialGroup` take these rows as they take
 * Prisma's (tested in test/store/rules-snapshot.test.ts).
 *
 * One read-only REPEATABLE READ transaction on one connection: every table as of one moment, so a
 * snapshot never holds a group with members of another moment, or a flow naming a group it does
 * not hold yet. (Read in parallel on several pool connections, each table was read at its own
 * moment; an admin write between two reads showed up in one and not the other until the next
 * reload.)
 */
export async function loadSnapshot(db: Pick<Database, 'pool'>, version: number, queryTimeoutMs = QUERY_TIMEOUT_MS): Promise<RulesSnapshot> {
  return inTransaction(db.pool, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', (client) => readSnapshot(client, version, queryTimeoutMs), queryTimeoutMs);
}

async function readSnapshot(client: pg.PoolClient, version: number, queryTimeoutMs: number): Promise<RulesSnapshot> {
  const rows = <T extends pg.QueryResultRow>(text: string) => client.query<T>(withQueryTimeout(text, queryTimeoutMs)).then((r) => r.rows);
  // One after the other: a pg client runs one query at a time (queueing more is deprecated).
  const flows = await rows<FlowRow>(
    'SELECT id, slug, name, type, mode, rules, otherwise, on_error AS "onError", created_at AS "createdAt", updated_at AS "updatedAt" FROM flows',
  );
  const schedules = await rows<{ slug: string; timezone: string; weekly: unknown; exceptions: unknown } & OverrideColumns>(
    `SELECT slug, timezone, weekly, exceptions, override_open AS "overrideOpen", override_reason AS "overrideReason",
            override_until AS "overrideUntil", override_set_at AS "overrideSetAt" FROM schedules`,
  );
  const lists = await rows<{ id: number; slug: string }>('SELECT id, slug FROM vip_lists');
  const entries = await readVipEntries(client, undefined, queryTimeoutMs);
  const groups = await rows<Omit<DialGroupRow, 'members'> & { id: number }>(
    `SELECT id, slug, name, strategy, sticky, connect, wrap_up_seconds AS "wrapUpSeconds", max_missed_offers AS "maxMissedOffers",
            missed_pause_seconds AS "missedPauseSeconds", created_at AS "createdAt", updated_at AS "updatedAt" FROM dial_groups`,
  );
  const members = await rows<DialGroupRow['members'][number] & { groupId: number }>(
    'SELECT group_id AS "groupId", number, name, priority, weight, active, schedule_slug AS "scheduleSlug" FROM dial_group_members',
  );
  const availability = await loadAvailability(client, queryTimeoutMs);
  const membersOf = new Map<number, typeof members>();
  for (const m of members) {
    const list = membersOf.get(m.groupId);
    if (list) list.push(m);
    else membersOf.set(m.groupId, [m]);
  }
  const byId = new Map<number, Map<string, VipMember>>();
  const vipLists = new Map<string, Map<string, VipMember>>();
  for (const l of lists) {
    const members = new Map<string, VipMember>();
    byId.set(l.id, members);
    vipLists.set(l.slug, members);
  }
  await addVipEntries(entries, byId);
  return {
    version,
    loadedAt: new Date(),
    flows: new Map(flows.map((f) => [f.slug, toFlow(f)])),
    vipLists,
    schedules: new Map(
      schedules.map((s) => [
        s.slug,
        { timezone: s.timezone, weekly: s.weekly as WeeklyWindow[], exceptions: s.exceptions as ScheduleException[], override: toOverride(s) },
      ]),
    ),
    dialGroups: new Map(groups.map((g) => [g.slug, toDialGroup({ ...g, members: membersOf.get(g.id) ?? [] })])),
    availability,
  };
}

type VipEntryRow = [listId: number, number: string, expiresMs: string | null];

/** A list's entries, or every list's: columnar, as a list may hold hundreds of thousands of numbers. */
async function readVipEntries(client: pg.PoolClient, listId: number | undefined, queryTimeoutMs: number): Promise<VipEntryRow[]> {
  const query: pg.QueryArrayConfig = {
    text: `SELECT list_id, number, (extract(epoch FROM expires_at) * 1000)::bigint AS expires_ms FROM vip_entries${listId === undefined ? '' : ' WHERE list_id = $1'}`,
    values: listId === undefined ? [] : [listId],
    rowMode: 'array',
  };
  const result = await client.query(withQueryTimeout(query, queryTimeoutMs));
  return result.rows as unknown as VipEntryRow[];
}

/**
 * Entries built between two turns of the event loop. Putting 100,000 numbers in their maps took
 * 150 ms and more at once (2 vCPUs), during which no callback was answered; in turns of this many,
 * a callback waits a few ms at most.
 */
const VIP_BUILD_CHUNK = 5_000;

/** Every entry without an expiry, which most are, is this one object: no object, and nothing to collect, per number. */
const NO_EXPIRY: VipMember = Object.freeze({ expiresAt: null });

/** Adds the entries to their lists' maps (by list id), giving the event loop a turn every VIP_BUILD_CHUNK entries. */
async function addVipEntries(rows: VipEntryRow[], byId: Map<number, Map<string, VipMember>>): Promise<void> {
  for (let i = 0; i < rows.length; i++) {
    if (i > 0 && i % VIP_BUILD_CHUNK === 0) await nextTurn();
    const row = rows[i]!;
    byId.get(row[0])?.set(row[1], row[2] === null ? NO_EXPIRY : { expiresAt: Number(row[2]) });
  }
}

/** One VIP list as it is now, for a change announced on it alone; null when it no longer exists. */
async function loadVipList(db: Database, slug: string): Promise<Map<string, VipMember> | null> {
  return inTransaction(
    db.pool,
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    async (client) => {
      const list = await client.query<{ id: number }>(withQueryTimeout({ text: 'SELECT id FROM vip_lists WHERE slug = $1', values: [slug] }, QUERY_TIMEOUT_MS));
      if (list.rows.length === 0) return null;
      const id = list.rows[0]!.id;
      const members = new Map<string, VipMember>();
      await addVipEntries(await readVipEntries(client, id, QUERY_TIMEOUT_MS), new Map([[id, members]]));
      return members;
    },
    QUERY_TIMEOUT_MS,
  );
}

/**
 * What a change announced on RULES_CHANNEL needs reloaded: an agent's availability alone, one VIP
 * list alone (its entries, or the list created or deleted), or everything.
 */
type Scope = 'availability' | 'all' | { vipList: string };
const scopeOf = (payload: string | undefined): Scope =>
  payload?.startsWith('agent:') ? 'availability' : payload?.startsWith('vip-list:') ? { vipList: payload.slice('vip-list:'.length) } : 'all';

/** What the next load takes: everything, or the availability and the VIP lists named. */
interface Pending {
  all: boolean;
  availability: boolean;
  vipLists: Set<string>;
}

/**
 * Keeps the current snapshot: loads it at start and again whenever an admin write commits
 * (Postgres NOTIFY on RULES_CHANNEL, so every instance follows). A lost LISTEN connection is
 * re-established with backoff and followed by a reload, since notifications sent meanwhile are lost.
 * An idle LISTEN connection can also die silently (a NAT or firewall drops it without a reset, e.g.
 * after AWS NAT's 350 s): a heartbeat query every `heartbeatMs` that does not come back within
 * `heartbeatTimeoutMs` counts as the connection lost.
 * A load that fails (pool exhausted, a brief database error) is retried with backoff too: the
 * NOTIFY that asked for it will not come again.
 */
export class RulesCache {
  private snapshot: RulesSnapshot | null = null;
  private version = 0;
  private listener: pg.Client | null = null;
  private reloading: Promise<void> | null = null;
  /** What to load next: set by requests, taken by the loop in reload(). */
  private pending: Pending | null = null;
  private stopped = false;
  /** Reconnecting the LISTEN connection. */
  private retryTimer: NodeJS.Timeout | null = null;
  private backoffMs = 100;
  /** Retrying a failed load; apart from the reconnect, which reloads everything by itself. */
  private reloadTimer: NodeJS.Timeout | null = null;
  private reloadBackoffMs = 100;
  /** Set while the LISTEN connection is down; cleared when it is back. */
  private listenError: string | null = null;
  /** Set while loads fail (the snapshot is stale, or missing); cleared by the next one that works. */
  private reloadError: string | null = null;
  /** The next heartbeat of the LISTEN connection. */
  private heartbeatTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
    private readonly opts: { heartbeatMs: number; heartbeatTimeoutMs: number } = { heartbeatMs: 30_000, heartbeatTimeoutMs: 5_000 },
  ) {}

  /** The snapshot decisions use; null only before the first load. */
  get current(): RulesSnapshot | null {
    return this.snapshot;
  }

  /**
   * Why this instance may not be following rules changes now (loads failing, or the LISTEN
   * connection down), else null. Read by /readyz and the `exoroute_rules_listener_up` metric. Two
   * fields, so that a load that works does not hide a LISTEN connection still down, nor the other way.
   */
  get lastError(): string | null {
    return this.reloadError ?? this.listenError;
  }

  /**
   * Starts listening, then loads the first snapshot. Never throws: when the database is not there
   * yet, the load and the LISTEN connection are retried with backoff until it is. Listening first:
   * a change another instance commits while the load runs (after its snapshot was taken) is
   * announced on this connection and loaded next, not missed until the next change.
   */
  async start(): Promise<void> {
    await this.listen();
    try {
      await this.reload();
    } catch (err) {
      // reload() has set reloadError and scheduled a retry.
      this.log.error({ err }, 'loading routing rules failed; retrying');
    }
  }

  private want(scope: Scope): void {
    this.pending ??= { all: false, availability: false, vipLists: new Set() };
    const p = this.pending;
    if (scope === 'all') p.all = true;
    else if (scope === 'availability') p.availability = true;
    else p.vipLists.add(scope.vipList);
  }

  /**
   * Builds a new snapshot; concurrent requests coalesce into at most one more load. An agent's
   * availability changes often (agents toggle it by phone) and alone: it reloads only the
   * availability and keeps the rest, which may hold large VIP lists. A change to one VIP list (an
   * import of its entries) reloads only that list and keeps the rest, other lists included. Such a
   * partial load is applied after every full one announced before it (they are loaded in order, and
   * a full one pending covers it), so a flow in the snapshot never names a list it lacks.
   */
  reload(scope: Scope = 'all'): Promise<void> {
    this.want(scope);
    if (this.reloading) return this.reloading;
    this.reloading = (async () => {
      try {
        do {
          const base = this.snapshot;
          const wanted = this.pending!;
          const partial = !wanted.all && base !== null;
          this.pending = null;
          let next: RulesSnapshot;
          try {
            next = partial ? await this.loadPart(base, wanted, ++this.version) : await loadSnapshot(this.db, ++this.version);
          } catch (err) {
            // Keep what was wanted, or this instance decides on old rules until some other change
            // is announced. As a full reload: simplest, and right whatever the failed load was.
            this.want('all');
            // err.message only: pg's messages name host and port at most, never the connection string.
            this.reloadError = `${this.snapshot ? 'rules reload failed' : 'rules not loaded'}: ${(err as Error).message}`;
            this.scheduleReloadRetry();
            throw err;
          }
          this.snapshot = next;
          this.reloadError = null;
          this.reloadBackoffMs = 100;
          if (this.reloadTimer) clearTimeout(this.reloadTimer);
          this.reloadTimer = null;
          this.log.debug({ version: next.version, flows: next.flows.size, partial }, 'rules snapshot loaded');
        } while (this.pending !== null && !this.stopped);
      } finally {
        this.reloading = null;
      }
    })();
    return this.reloading;
  }

  /**
   * Loads what these RULES_CHANNEL payloads announce, as their notifications will: an admin write
   * waits for it, so that its own instance decides by the change once it is answered.
   */
  async loadAnnounced(payloads: Iterable<string>): Promise<void> {
    await Promise.all([...new Set(payloads)].map((payload) => this.reload(scopeOf(payload))));
  }

  /** `base` with the availability and the VIP lists `wanted` names read anew; the rest is kept as it is. */
  private async loadPart(base: RulesSnapshot, wanted: Pending, version: number): Promise<RulesSnapshot> {
    let vipLists = base.vipLists;
    if (wanted.vipLists.size > 0) {
      vipLists = new Map(vipLists);
      for (const slug of wanted.vipLists) {
        const list = await loadVipList(this.db, slug);
        if (list) vipLists.set(slug, list);
        else vipLists.delete(slug);
      }
    }
    const availability = wanted.availability ? await loadAvailability(this.db.pool, QUERY_TIMEOUT_MS) : base.availability;
    return { ...base, version, loadedAt: new Date(), vipLists, availability };
  }

  private async listen(): Promise<void> {
    if (this.stopped) return;
    // TCP keepalive from 30 s idle (Linux's default waits 2 h) keeps a NAT's mapping of the idle connection.
    const client = new pg.Client({ connectionString: this.db.url, connectionTimeoutMillis: 5000, keepAlive: true, keepAliveInitialDelayMillis: 30_000 });
    const lost = (err?: Error) => {
      if (this.listener !== client) return;
      this.listener = null;
      if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
      this.heartbeatTimer = null;
      client.removeAllListeners();
      client.on('error', () => {});
      void client.end().catch(() => {});
      if (this.stopped) return;
      // Said once when lost; a reconnect that fails while Postgres stays down is only a debug line.
      const reconnecting = this.listenError !== null;
      this.listenError = err?.message ?? 'LISTEN connection ended';
      if (reconnecting) this.log.debug({ err: this.listenError, retryInMs: this.backoffMs }, 'rules LISTEN reconnect failed; retrying');
      else this.log.warn({ err }, 'rules LISTEN connection lost; reconnecting');
      this.scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (msg) => {
      this.reload(scopeOf(msg.payload)).catch((err) => this.log.error({ err }, 'rules reload failed'));
    });
    this.listener = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${RULES_CHANNEL}`);
    } catch (err) {
      lost(err as Error);
      return;
    }
    const beat = () => {
      this.heartbeatTimer = setTimeout(() => {
        withDeadline(client.query('SELECT 1'), this.opts.heartbeatTimeoutMs, (ms) => `LISTEN connection: no answer to a heartbeat within ${ms} ms`, {
          unref: true,
        }).then(
          () => this.listener === client && beat(),
          (err: Error) => lost(err),
        );
      }, this.opts.heartbeatMs);
      this.heartbeatTimer.unref();
    };
    beat();
    if (this.listenError) {
      // Changes committed while we were not listening were not announced to us.
      this.listenError = null;
      this.backoffMs = 100;
      await this.reload().catch((err) => this.log.error({ err }, 'rules reload after reconnect failed'));
      this.log.info('rules LISTEN connection restored');
    }
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retryTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 5000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.listen();
    }, delay);
    this.retryTimer.unref();
  }

  /** Loads what a failed load left pending, after 100 ms, doubling up to 5 s while loads keep failing. */
  private scheduleReloadRetry(): void {
    if (this.stopped || this.reloadTimer) return;
    const delay = this.reloadBackoffMs;
    this.reloadBackoffMs = Math.min(this.reloadBackoffMs * 2, 5000);
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      this.reload().catch((err) => this.log.error({ err }, 'rules reload retry failed'));
    }, delay);
    this.reloadTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    const client = this.listener;
    this.listener = null;
    if (client) {
      client.removeAllListeners();
      client.on('error', () => {});
      // A connection that died silently never confirms its end: shutdown does not wait for it.
      await withDeadline(client.end(), 1000, () => 'LISTEN connection did not end', { unref: true }).catch(() => {});
    }
    // A load that Postgres does not answer (stalled) must not hold the shutdown either.
    if (this.reloading) await withDeadline(this.reloading, 1000, () => 'rules load still running', { unref: true }).catch(() => {});
  }
}
