import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { countAgentStates, type AgentStateCounts } from '../store/agents.js';
import { busyExpiredAt } from '../routing/agents.js';
import { NOT_READY_KINDS } from './readiness.js';
import { AGENT_STATES } from '../schemas/agent.js';
import { FLOW_ENDPOINTS, type CallbackEndpoint } from '../exotel/endpoints.js';
import { withDeadline } from '../lib/deadline.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Prometheus metrics of this app instance (served at GET /metrics). */
    metrics: Metrics;
  }
}

export interface Metrics {
  /** This app's own registry: tests build many apps in one process, so never the global one. */
  registry: Registry;
  /** One answered callback: its endpoint, outcome (answered, on-error, async, rejected) and latency. */
  observeCallback(endpoint: CallbackEndpoint | 'unknown', outcome: string, seconds: number): void;
  /** One dial-state statement (a Dial Whom / Connect request alone, or a batch): requests, seconds, answered or failed. */
  observeDialBatch(size: number, seconds: number, ok: boolean): void;
  /**
   * What recording a dial event or a re-fetch did to an offer (once per offer and fact, on whichever
   * instance learned it): started it, and/or learned it was answered or missed. Group '' when unknown.
   */
  observeOfferEffect(group: string | null, effect: { offered?: boolean; outcome?: string }): void;
  /** One request Node's HTTP parser refused before any route (app.ts's `clientErrors`), by the status answered. */
  observeClientError(status: number): void;
  /** One flow callback let in by EXOTEL_CALLBACK_SECRET_PREVIOUS (an applet URL not yet edited, mid-rotation). */
  observePreviousSecret(endpoint: CallbackEndpoint): void;
}

/**
 * Callbacks are answered in milliseconds; the top buckets bracket DECISION_BUDGET_MS (1.5 s by
 * default, at most 30 s), so that p99 can show latency near any budget.
 */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30];
/** The longest a scrape waits for the agents' states (as /readyz waits for the database). */
const AGENTS_QUERY_TIMEOUT_MS = 1000;
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];

/**
 * Prometheus metrics. What other components already count (CDR writer stats, rules snapshot,
 * pg pool) is read at scrape time through `collect()`, so the live-call path pays for one histogram
 * observation per callback, two per CDR batch and per dial-state statement, and a counter or two
 * when a dial event or a re-fetch starts or ends an agent's offer (observeOfferEffect), and nothing else.
 */
export default fp(
  async function metrics(app: FastifyInstance) {
    const registry = new Registry();
    const registers = [registry];
    collectDefaultMetrics({ register: registry });

    const callbackDuration = new Histogram({
      name: 'exoroute_callback_duration_seconds',
      help: "Time in exoroute's callback handler, from its start to the answer (CDR commit included; not the HTTP parsing or queueing before it), by endpoint and outcome.",
      labelNames: ['endpoint', 'outcome'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    // Exported at 0 from the start: a series that appears at 1 has no increase for rate(), so the
    // first onError answer after a start showed on neither the dashboard nor ExorouteOnErrorAnswers.
    for (const endpoint of FLOW_ENDPOINTS) callbackDuration.zero({ endpoint, outcome: 'on-error' });

    /**
     * A batching stage's two histograms: items per batch, and the time of one batch by its result.
     * The `failed` series is exported at 0 from the start, as on-error above: the dashboard's
     * failed-batch rate would otherwise miss an instance's first failure.
     */
    const batchStage = (name: string, help: { size: string; duration: string }, sizeBuckets: number[]) => {
      const size = new Histogram({ name: `${name}_size`, help: help.size, buckets: sizeBuckets, registers });
      const duration = new Histogram({
        name: `${name}_duration_seconds`,
        help: help.duration,
        labelNames: ['result'] as const,
        buckets: LATENCY_BUCKETS,
        registers,
      });
      duration.zero({ result: 'failed' });
      return (items: number, seconds: number, result: string) => {
        size.observe(items);
        duration.observe({ result }, seconds);
      };
    };

    const { cdrWriter, rules, db } = app;
    const observeCdrBatch = batchStage(
      'exoroute_cdr_batch',
      { size: 'CDRs per group-commit insert.', duration: 'Time one CDR batch insert took, by result (committed or failed).' },
      BATCH_SIZE_BUCKETS,
    );
    cdrWriter.onBatch = (size, seconds, ok) => observeCdrBatch(size, seconds, ok ? 'committed' : 'failed');
    const observeDialBatch = batchStage(
      'exoroute_dial_batch',
      {
        size: 'Dial Whom / Connect requests answered by one dial-state statement in Postgres (1: a request alone).',
        duration:
          'Time one dial-state statement took, by result (answered, or failed: of several requests, those still waited for are then sent one by one, not counted again).',
      },
      BATCH_SIZE_BUCKETS.filter((b) => b <= 100),
    );

    // The writer keeps plain counters; mirror them as Prometheus counters when scraped.
    const mirrored: Array<[string, string, () => number]> = [
      ['exoroute_cdr_batches_total', 'CDR batch inserts committed.', () => cdrWriter.stats.batches],
      ['exoroute_cdr_records_total', 'CDRs committed to Postgres by batch inserts.', () => cdrWriter.stats.records],
      ['exoroute_cdr_batch_failures_total', 'CDR batch inserts that failed.', () => cdrWriter.stats.failures],
      ['exoroute_cdr_spooled_total', 'CDRs written to the local spool because Postgres could not take them.', () => cdrWriter.stats.spooled ?? 0],
      ['exoroute_cdr_replayed_total', 'Spooled CDRs later committed to Postgres.', () => cdrWriter.stats.replayed ?? 0],
      [
        'exoroute_cdr_set_aside_total',
        'Spooled CDRs Postgres refused for their values: set aside in spool/rejected.ndjson, not stored.',
        () => cdrWriter.stats.setAside,
      ],
    ];
    for (const [name, help, read] of mirrored) {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    }
    // A constant, so that dashboards and alerts compare latency with this instance's own budget.
    new Gauge({
      name: 'exoroute_decision_budget_seconds',
      help: "DECISION_BUDGET_MS in seconds: the longest a callback may take before the flow's onError is answered.",
      registers,
    }).set(app.config.DECISION_BUDGET_MS / 1000);
    new Gauge({
      name: 'exoroute_cdr_spool_depth',
      help: 'CDRs waiting in the local spool for Postgres.',
      registers,
      collect() {
        this.set(cdrWriter.spoolDepth);
      },
    });

    new Gauge({
      name: 'exoroute_rules_snapshot_age_seconds',
      help: 'Seconds since the routing rules snapshot in memory was loaded (reloaded on every rules change); NaN before the first load.',
      registers,
      collect() {
        const loadedAt = rules.current?.loadedAt;
        this.set(loadedAt ? (Date.now() - loadedAt.getTime()) / 1000 : Number.NaN);
      },
    });
    new Gauge({
      name: 'exoroute_rules_snapshot_version',
      help: 'Reload count of the routing rules snapshot in memory (0 before the first load).',
      registers,
      collect() {
        this.set(rules.current?.version ?? 0);
      },
    });
    new Gauge({
      name: 'exoroute_rules_listener_up',
      // The name predates failed reloads counting too: kept, dashboards and alerts use it.
      help: '1 while this instance follows rules changes (the LISTEN connection that announces them is up, the last reload worked), else 0.',
      registers,
      collect() {
        this.set(rules.lastError === null ? 1 : 0);
      },
    });

    const offerCounters = {
      offered: new Counter({ name: 'exoroute_agent_offers_total', help: 'Offers made to agents, by dial group.', labelNames: ['group'] as const, registers }),
      answered: new Counter({
        name: 'exoroute_agent_answers_total',
        help: 'Offers agents answered, by dial group.',
        labelNames: ['group'] as const,
        registers,
      }),
      missed: new Counter({
        name: 'exoroute_agent_misses_total',
        help: 'Offers the agent missed (no-answer, busy; not failed or cancelled), by dial group.',
        labelNames: ['group'] as const,
        registers,
      }),
    };
    // Each pool's gauges by name: the callbacks' pool keeps the names dashboards and alerts know.
    const poolGauges = (prefix: string, pool: pg.Pool, what: string): Array<[string, string, () => number]> => [
      [`${prefix}_connections`, `Connections open in ${what}.`, () => pool.totalCount],
      [`${prefix}_idle_connections`, `Open connections of ${what} not in use.`, () => pool.idleCount],
      [`${prefix}_waiting_clients`, `Queries waiting for a connection of ${what}.`, () => pool.waitingCount],
      [`${prefix}_max_connections`, `Size limit of ${what}.`, () => pool.options.max ?? 10],
    ];
    for (const [name, help, read] of [
      ...poolGauges('exoroute_db_pool', db.pool, "the callbacks' Postgres pool"),
      ...poolGauges('exoroute_db_admin_pool', db.adminPool, "the admin API's Postgres pool"),
    ]) {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    }

    const busyTtlMs = app.config.AGENT_BUSY_TTL_SECONDS * 1000;
    let counting: Promise<AgentStateCounts | null> | null = null;
    /**
     * The agents' states, read once for both gauges below (prom-client calls their collect() together,
     * so the second shares the first's query); null when Postgres does not answer in time.
     */
    const countAgents = () => {
      const snapshot = rules.current;
      if (!snapshot) return Promise.resolve(null);
      counting ??= (async () => {
        const at = new Date();
        try {
          // Bounded, waiting for a pool connection included: a scrape that hangs on a stalled Postgres
          // makes the instance look down and loses the spool depth, the metric that matters then.
          return await withDeadline(
            countAgentStates(db.adminPool, snapshot, at, busyExpiredAt(snapshot.dialGroups, at, busyTtlMs), AGENTS_QUERY_TIMEOUT_MS),
            AGENTS_QUERY_TIMEOUT_MS,
            (ms) => `no answer from Postgres within ${ms} ms`,
          );
        } catch (err) {
          app.log.warn({ err }, 'agents by state not counted');
          return null;
        }
      })().finally(() => {
        counting = null;
      });
      return counting;
    };
    // On the admin API's pool, after its gauges (its query would otherwise show in their reading of
    // this same scrape): a scrape never takes a connection the callbacks wait for. When Postgres is
    // unreachable, the series are left out of that scrape rather than failing it.
    new Gauge({
      name: 'exoroute_agents',
      help: 'Dial-group members by state now: on_call, away, wrapping_up, paused, inactive, off_shift, available (each counted once).',
      labelNames: ['state'] as const,
      registers,
      async collect() {
        const counts = await countAgents();
        this.reset();
        if (counts) for (const state of AGENT_STATES) this.set({ state }, counts.byState.get(state) ?? 0);
      },
    });
    // Per group, for a panel per queue; groups x states series, never one per agent.
    new Gauge({
      name: 'exoroute_dial_group_agents',
      help:
        "Members of each dial group by state now, as that group sees them (inactive, off_shift: by that group's own switch and shift). " +
        'An agent in several groups is counted in each, so a sum over groups counts it more than once: exoroute_agents counts each agent once.',
      labelNames: ['group', 'state'] as const,
      registers,
      async collect() {
        const counts = await countAgents();
        this.reset(); // a deleted group's series go
        if (!counts) return;
        for (const [group, byState] of counts.byGroup) for (const state of AGENT_STATES) this.set({ group, state }, byState.get(state) ?? 0);
      },
    });

    const { refusals } = app;
    // Every reason /readyz gives, by its kind: 1 while it holds. A balancer takes an instance out on
    // any of them; without this, an alert saw only the rules (the version gauge) and the spool.
    // Registered after the pool gauges, as the agents' are: those read the pools before the scrape's
    // own queries take a connection, so a scrape does not count itself as a waiting client.
    new Gauge({
      name: 'exoroute_not_ready',
      help: 'By reason (database, migrations, dial_functions, rules, spool): 1 while that problem makes GET /readyz answer 503, else 0; /readyz and the log say more.',
      labelNames: ['reason'] as const,
      registers,
      async collect() {
        const { problems } = await app.readiness(db.adminPool);
        for (const reason of NOT_READY_KINDS) this.set({ reason }, problems.some((p) => p.kind === reason) ? 1 : 0);
      },
    });

    new Counter({
      name: 'exoroute_callback_refusals_total',
      help:
        'Callbacks refused by the guard, by reason (secret: missing or wrong; address: not in EXOTEL_ALLOWED_CIDRS) and ' +
        'handling (cdr: stored as a CDR; counted: only counted, per address and minute; throttled: counted and answered 429).',
      labelNames: ['reason', 'handling'] as const,
      registers,
      collect() {
        this.reset();
        for (const [reason, byHandling] of Object.entries(refusals.stats)) {
          for (const [handling, n] of Object.entries(byHandling)) this.inc({ reason, handling }, n);
        }
      },
    });

    const { retention } = app;
    new Counter({
      name: 'exoroute_retention_deleted_rows_total',
      help: 'Rows deleted by the retention job on this instance, by table.',
      labelNames: ['table'] as const,
      registers,
      collect() {
        this.reset();
        for (const [table, n] of Object.entries(retention.stats.deleted)) this.inc({ table }, n);
      },
    });
    new Gauge({
      name: 'exoroute_retention_last_success_timestamp_seconds',
      help: 'When the retention job last completed on this instance (Unix time); 0 if it has not.',
      registers,
      collect() {
        this.set((retention.stats.lastSuccessAt?.getTime() ?? 0) / 1000);
      },
    });

    const clientErrors = new Counter({
      name: 'exoroute_http_client_errors_total',
      help:
        "Requests Node's HTTP parser refused before any route, by status: 431 (request line and headers too large), " +
        '400 (not valid HTTP), 408 (did not arrive in time). Those to a callback URL whose request line was read also leave a CDR.',
      labelNames: ['status'] as const,
      registers,
    });

    const previousSecret = new Counter({
      name: 'exoroute_callbacks_previous_secret_total',
      help:
        'Flow callbacks authenticated with EXOTEL_CALLBACK_SECRET_PREVIOUS, by endpoint: applet URLs not yet given the new secret ' +
        '(their CDRs and a log line per flow name the flow). Unset the variable once this stops growing.',
      labelNames: ['endpoint'] as const,
      registers,
    });

    app.decorate('metrics', {
      registry,
      observeCallback(endpoint: CallbackEndpoint | 'unknown', outcome: string, seconds: number) {
        callbackDuration.observe({ endpoint, outcome }, seconds);
      },
      observeDialBatch(size: number, seconds: number, ok: boolean) {
        observeDialBatch(size, seconds, ok ? 'answered' : 'failed');
      },
      observeOfferEffect(group: string | null, effect: { offered?: boolean; outcome?: string }) {
        const labels = { group: group ?? '' };
        if (effect.offered) offerCounters.offered.inc(labels);
        if (effect.outcome === 'answered') offerCounters.answered.inc(labels);
        // failed: the carrier or network, not the agent; cancelled: a parallel ring another agent answered
        else if (effect.outcome === 'no-answer' || effect.outcome === 'busy') offerCounters.missed.inc(labels);
      },
      observeClientError(status: number) {
        clientErrors.inc({ status: String(status) });
      },
      observePreviousSecret(endpoint: CallbackEndpoint) {
        previousSecret.inc({ endpoint });
      },
    } satisfies Metrics);
  },
  { name: 'metrics', dependencies: ['rules', 'cdr-writer', 'retention', 'refusals', 'readiness'] },
);
