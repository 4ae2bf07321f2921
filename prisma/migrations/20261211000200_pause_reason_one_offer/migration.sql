-- A pause after missed offers said "1 offers in a row not answered (the last: no-answer, call …)"
-- for a group whose maxMissedOffers is 1 (GET /admin/agents, paused.reason). dial_offer_ended() now
-- writes "1 offer not answered (no-answer, call …)" for one, and "3 offers in a row not answered
-- (the last: …)" as before for more. A pause already in force keeps the reason it was given. No
-- table or type changes.
--
-- Between the two marker lines: a copy of prisma/functions/dial_answer.sql, verbatim
-- (test/store/dial-sql-source.test.ts checks it). Before them: what only this upgrade needs.

-- The file creates the types; drop them first (with the functions that take them, which the file
-- creates again). The types themselves are unchanged.
DROP TYPE dial_batch_request CASCADE;
DROP TYPE dial_batch_item CASCADE;
DROP TYPE dial_extra CASCADE;
DROP TYPE dial_request CASCADE;

-- >>> prisma/functions/dial_answer.sql
-- Dial Whom / Connect: the part of "who to ring" that lives in Postgres. This file is THE
-- definition of these functions and their types. Migrations install it by copying it whole
-- (never the reverse); test/store/dial-sql-source.test.ts fails when the functions of a freshly
-- migrated database differ from this file. To change them: edit this file, then add a migration
-- that first drops all four types this file creates (dial_batch_request, dial_batch_item,
-- dial_extra, dial_request) with CASCADE, which drops the functions that take them, whether or not
-- a type changed, and then holds a copy of this file between its `-- >>>` / `-- <<<` marker lines
-- (see the newest migration that does).
--
-- The boundary (src/routing/dial/README.md says the same from the TypeScript side):
--   SQL owns what needs locks and state shared by every instance: the per-call lock, the shared
--     round-robin position, the answer stored per attempt, the tried set and the busy facts, and
--     the facts the ordering reads (when an agent was last dialed, which agent a caller last
--     talked to).
--   TypeScript (src/routing/dial/) owns ordering policy: which members are candidates now
--     (active, on shift), the base order (priority, random, weighted draw), which arrangement a
--     strategy takes, the attempt's identity, the sticky window, the busy cut-off, and the
--     fallback when Postgres does not answer. It sends all of it as one dial_request.
-- Applying an arrangement needs those shared facts at the moment the call's order is fixed,
-- under the call's lock; doing it in TypeScript would cost a second round trip per callback.
--
-- One round trip and one commit per callback (issue 6, bench/README.md): src/store/dial-state.ts
-- calls dial_offer() for a request alone, or dial_offer_batch() for the requests that queued while
-- the previous statement ran.
--
-- Lock order, for every function here: a call's advisory lock ('dial', dial_offer() only), then an
-- agent's advisory lock ('agnt'), then rows. The agent's lock is taken before any row of that
-- agent (agent_states, agent_offers, caller_agents) is written: by dial_agent_event() first thing,
-- by dial_offer() for the agent a request reports (or was connected to) once the call's lock is
-- held. Whoever writes an agent's rows so holds its lock, so two of them never wait for each
-- other's rows in opposite orders (a dial event ending an offer while a re-fetch reports it, or
-- misses of one agent in two calls, deadlocked: Postgres aborted one of them after a second). A
-- dial event takes no call's lock, so it never waits for one while holding an agent's. A batch
-- (dial_offer_batch()) takes every call's and agent's lock its requests will need first, calls then
-- agents, each in the order of their keys: two batches (of two instances) then never hold locks the
-- other waits for. Both kinds are held until commit; the two-int keys are a key space of their own,
-- apart from the migrator's and the retention job's bigint keys. dial_offer_ended() expects the
-- agent's lock held.

-- One Dial Whom / Connect request: the TypeScript side is DialRequest (src/routing/dial/request.ts),
-- marshalled by asDialRequest (src/store/dial-state.ts): a request alone as ROW($1, …)::dial_request,
-- in a batch by name (dial_batch_request).
CREATE TYPE dial_request AS (
    call_sid         TEXT,
    endpoint         TEXT,
    flow_slug        TEXT,
    -- the attempt: numbers the request says were tried and the DialCallStatus
    attempt_key      TEXT,
    -- numbers the request says were tried (DialWhomNumber, Legs)
    tried            TEXT[],
    -- numbers that may be offered now (active members in their shift and not away, or the flow's numbers)
    candidates       TEXT[],
    -- the order to fix at the call's first request, before `arrange` and sticky: every member of
    -- the action's groups (also those who may not be offered now, so that the call offers them once
    -- they may: back from away, their shift started, switched on), by priority, or already drawn for
    -- `random` / `weighted` (orderPlan in src/routing/dial/order.ts)
    base             TEXT[],
    -- 'as_is'; 'rotate' (round robin: start `base` at the group's position, which advances);
    -- 'least_recent' (members dialed longest ago first, never dialed before them, ties in `base` order)
    arrange          TEXT,
    -- 'rotate': the dial group whose round-robin position is taken
    rr_group         TEXT,
    -- sticky groups: the caller, whose last connected agent (after sticky_since) goes first; with
    -- tiers (dial_extra.tier_sticky_since), each tier's own window applies instead
    sticky_caller    TEXT,
    sticky_since     TIMESTAMPTZ,
    -- DialCallStatus=completed: the caller was connected to this agent
    connected_caller TEXT,
    connected_agent  TEXT,
    at               TIMESTAMPTZ,
    -- an agent reported busy before this counts as free (AGENT_BUSY_TTL_SECONDS ago, or the longest
    -- call a dial group allows if longer: busyExpiredAt in src/routing/agents.ts)
    busy_expired     TIMESTAMPTZ
);

-- What issue 26 adds to a request, beside dial_request (which instances of the previous version
-- still send alone): overflow tiers, and the attempt the request reports with the pacing of the
-- group that offered it. The TypeScript side is DialExtra (src/routing/dial/request.ts), marshalled
-- by asDialExtra in src/store/dial-state.ts. A request without it (NULL) is one tier and reports
-- nothing.
CREATE TYPE dial_extra AS (
    -- tiers (a dial action's dialGroups): where each tier ends in `base` (exclusive, from 0), its
    -- arrangement and its round-robin group; NULL: one tier, dial_request's arrange and rr_group
    tier_ends            INT[],
    tier_arranges        TEXT[],
    tier_rr_groups       TEXT[],
    -- each tier's sticky window, its own group's: the caller's (sticky_caller) last agent connected
    -- after it, of the tier's candidates, goes first in the tier; NULL for a tier whose group is not
    -- sticky (or a caller unknown). The array NULL: one tier, or a request of the version before
    -- (dial_request's sticky_since then applies to every tier)
    tier_sticky_since    TIMESTAMPTZ[],
    -- the attempt the request reports (DialWhomNumber, DialCallStatus) and the group it came from
    reported_agent       TEXT,
    reported_status      TEXT,
    reported_group       TEXT,
    -- that group's wrapUpSeconds, maxMissedOffers (0: never paused) and missedPauseSeconds
    wrap_up_seconds      INT,
    max_missed_offers    INT,
    missed_pause_seconds INT,
    -- the group of each tier, in order (one for a single group; empty for a list of numbers, NULL
    -- from the version before): a call stores its tiers' groups, so that a later request whose
    -- action has changed (a group added, removed or moved, a group turned into a list) meets each
    -- tier by its group
    tier_groups          TEXT[]
);

-- One request of a batch as dial_offer_batch() reads it: one flat JSON object with the attributes
-- of dial_request and then those of dial_extra, by name (of dial_extra's only tier_groups when the
-- request has no tiers and reports nothing, as most do). Flat, so that json_populate_recordset lexes each
-- request once: a nested object is lexed again for its record (bench/HISTORY.md).
-- test/store/dial-sql-source.test.ts checks that the attributes are exactly those of the two types.
CREATE TYPE dial_batch_request AS (
    call_sid TEXT, endpoint TEXT, flow_slug TEXT, attempt_key TEXT, tried TEXT[], candidates TEXT[], base TEXT[],
    arrange TEXT, rr_group TEXT, sticky_caller TEXT, sticky_since TIMESTAMPTZ, connected_caller TEXT,
    connected_agent TEXT, at TIMESTAMPTZ, busy_expired TIMESTAMPTZ,
    tier_ends INT[], tier_arranges TEXT[], tier_rr_groups TEXT[], tier_sticky_since TIMESTAMPTZ[], reported_agent TEXT,
    reported_status TEXT, reported_group TEXT, wrap_up_seconds INT, max_missed_offers INT, missed_pause_seconds INT, tier_groups TEXT[]
);

-- A request of a batch as instances of the version before read it (dial_offers()): {"req": {…},
-- "more": {…}}.
CREATE TYPE dial_batch_item AS (req dial_request, more dial_extra);

-- An agent's consecutive missed offers now, counted up to p_up_to: of its offers that ended after
-- the last reset of the count (agent_states.misses_since: when it was paused for misses, or set
-- available), the newest p_up_to, those offered after the last answered one. A miss is no-answer
-- or busy; an offer that failed (the carrier or network, not the agent) neither counts nor breaks
-- the run. Counted where it is read (the pause check, up to the group's maxMissedOffers; the admin
-- API) rather than kept per miss, so that a miss writes one row, its offer's, and a read stays
-- within p_up_to index entries.
-- Offers older than 31 days are deleted (src/store/retention.ts) and no longer count.
CREATE OR REPLACE FUNCTION agent_missed_offers(p_agent TEXT, p_up_to INT) RETURNS INT
LANGUAGE sql STABLE
AS $$
    WITH newest AS (
        SELECT o.outcome, o.offered_at FROM agent_offers o
         WHERE o.number = p_agent AND o.outcome IN ('answered', 'no-answer', 'busy')
           AND o.offered_at > COALESCE((SELECT s.misses_since FROM agent_states s WHERE s.number = p_agent), '-infinity')
         ORDER BY o.offered_at DESC LIMIT p_up_to
    )
    SELECT count(*)::int FROM newest n
     WHERE n.outcome <> 'answered'
       AND n.offered_at > COALESCE((SELECT max(a.offered_at) FROM newest a WHERE a.outcome = 'answered'), '-infinity')
$$;

-- An agent's offer in a call recorded without its flow ('': by dial events whose URL named none,
-- handed out by the version before) is the offer of a flow whose re-fetch reports the agent, when
-- that flow has none of its own and the offer started after the flow's first request for the call
-- (p_since; a second early for clocks): it takes that flow, so that one offer is not counted twice
-- (old events, then a re-fetch). An offer that started before (another flow's) is left alone.
-- PL/pgSQL, which keeps the statement's plan for the session: a LANGUAGE sql function that is not
-- inlined plans its body at every call, which cost the dial path ~20 µs per request (bench/HISTORY.md).
CREATE OR REPLACE FUNCTION agent_offer_claim(p_call_sid TEXT, p_agent TEXT, p_flow TEXT, p_since TIMESTAMPTZ) RETURNS VOID
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE agent_offers SET flow_slug = p_flow
     WHERE call_sid = p_call_sid AND number = p_agent AND flow_slug = '' AND p_flow <> ''
       AND offered_at >= p_since - interval '1 second'
       AND NOT EXISTS (SELECT 1 FROM agent_offers x WHERE x.call_sid = p_call_sid AND x.number = p_agent AND x.flow_slug = p_flow);
END
$$;

-- How an offer to an agent ended, once per offer. An offer is the agent's in a call through a flow
-- (p_flow): a flow's order offers an agent at most once per call, so the re-fetch and the dial
-- events that report one offer land on its one agent_offers row, and a second flow of the same call
-- that offers the agent again (a Connect to support after one to sales) makes an offer of its own. Answered:
-- for a call that ended (p_ended) the wrap-up starts (a wrap-up already running that ends later, another
-- call's of a group with a longer one, is kept: every wrap-up here ends at the later of the two), and a pause is lifted (the count of misses
-- starts again by itself: agent_missed_offers()). A miss (no-answer, busy): when the group pauses
-- after p_max_missed misses and this is the p_max_missed-th in a row, the agent is paused and the
-- count reset; otherwise a miss writes nothing but its offer. Failed (the carrier or network) and
-- cancelled (a parallel ring's leg cut short) are no miss: the offer ends, nothing else. Returns {outcome, offered: whether this also recorded the offer
-- itself}, or NULL when how the offer ended was already known (nothing written but, for an answered
-- call whose end no event reported yet, that end and its wrap-up: once, and the answer is not
-- counted again).
--   p_by: who tells: 're-fetch' (its DialCallStatus), 'answered' (an Answered event), or 'guess' (a
-- dial event's end without Answered: the outcome guessed from how long the leg lasted). A
-- re-fetch's status is Exotel's own word: it replaces a guess that differs, whichever came first.
-- What the guess did is undone (a pause its miss started is lifted, and the misses in a row before
-- it count again: misses_since_before; a wrap-up its answer started is taken back, and a pause its
-- answer lifted, kept in the offer's lifted_paused_*, stands again until it was to end) and the reported outcome counts as if it had come first, its wrap-up from the
-- leg's end. The offer's answers and misses (the admin API) are then exact; the metrics' counters
-- cannot take the guess back and add the correction. A guessed no-answer that Exotel reports busy
-- (a decline) was a miss all the same: only its outcome is replaced.
--
-- Concurrency: the caller holds the agent's advisory lock (the file's header), so misses of one
-- agent in two calls at once are counted one after the other; the second count, a fresh snapshot
-- taken after the lock, sees the first's offer.
CREATE OR REPLACE FUNCTION dial_offer_ended(
    p_call_sid TEXT, p_agent TEXT, p_flow TEXT, p_group TEXT, p_outcome TEXT, p_ended BOOLEAN, p_at TIMESTAMPTZ,
    p_wrap_up_seconds INT, p_max_missed INT, p_pause_seconds INT, p_by TEXT
) RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_missed INT;
    v_new    BOOLEAN;
    v_was    TEXT;
    v_offered_at TIMESTAMPTZ;
    v_end    TIMESTAMPTZ := p_at;
    v_lifted_until  TIMESTAMPTZ;
    v_lifted_reason TEXT;
BEGIN
    INSERT INTO agent_offers AS o (call_sid, number, flow_slug, group_slug, offered_at, outcome, ended_at, outcome_guessed)
    VALUES (p_call_sid, p_agent, p_flow, p_group, p_at, p_outcome, CASE WHEN p_ended THEN p_at END, p_by = 'guess')
    ON CONFLICT (call_sid, number, flow_slug) DO UPDATE
       SET outcome = EXCLUDED.outcome, ended_at = EXCLUDED.ended_at, group_slug = COALESCE(o.group_slug, EXCLUDED.group_slug),
           outcome_guessed = EXCLUDED.outcome_guessed
     WHERE o.outcome IS NULL
    RETURNING (xmax = 0) INTO v_new;
    IF NOT FOUND AND p_by = 're-fetch' THEN
        -- A guess that Exotel's word contradicts (p_by, above): corrected, and what it did undone.
        SELECT o.outcome, o.offered_at, o.ended_at, o.lifted_paused_until, o.lifted_paused_reason
          INTO v_was, v_offered_at, v_end, v_lifted_until, v_lifted_reason FROM agent_offers o
         WHERE o.call_sid = p_call_sid AND o.number = p_agent AND o.flow_slug = p_flow AND o.outcome_guessed
           FOR UPDATE;
        IF FOUND THEN
            UPDATE agent_offers SET outcome = p_outcome, outcome_guessed = false, lifted_paused_until = NULL, lifted_paused_reason = NULL
             WHERE call_sid = p_call_sid AND number = p_agent AND flow_slug = p_flow;
            IF v_was = p_outcome OR (v_was IN ('no-answer', 'busy') AND p_outcome IN ('no-answer', 'busy')) THEN
                -- guessed right, or a miss of the other kind (a decline Exotel reports busy, which
                -- the events took for no-answer): counted already, and the pause it started stands
                RETURN NULL;
            END IF;
            v_end := COALESCE(v_end, p_at);
            UPDATE agent_states
               SET paused_until = CASE WHEN v_was IN ('no-answer', 'busy') AND misses_since BETWEEN v_offered_at AND v_end THEN NULL ELSE paused_until END,
                   paused_reason = CASE WHEN v_was IN ('no-answer', 'busy') AND misses_since BETWEEN v_offered_at AND v_end THEN NULL ELSE paused_reason END,
                   -- the count of misses in a row, which that pause started again, goes on from before it
                   misses_since = CASE WHEN v_was IN ('no-answer', 'busy') AND misses_since BETWEEN v_offered_at AND v_end THEN misses_since_before ELSE misses_since END,
                   wrap_up_until = CASE WHEN v_was = 'answered' AND wrap_up_until = v_end + make_interval(secs => p_wrap_up_seconds) THEN NULL ELSE wrap_up_until END,
                   updated_at = p_at
             WHERE number = p_agent;
            -- a pause the guessed answer lifted (another call's misses) stands again, if not over
            IF v_was = 'answered' AND v_lifted_until > p_at THEN
                UPDATE agent_states SET paused_until = v_lifted_until, paused_reason = v_lifted_reason, updated_at = p_at
                 WHERE number = p_agent AND (paused_until IS NULL OR paused_until < v_lifted_until);
            END IF;
            v_new := false;
        END IF;
    END IF;
    IF v_new IS NULL THEN
        -- A re-fetch reporting `completed` after an Answered event: the call is over, wrap-up starts
        -- now (a later free or Terminal event finds it ended and does nothing).
        IF p_ended AND p_outcome = 'answered' THEN
            UPDATE agent_offers SET ended_at = p_at
             WHERE call_sid = p_call_sid AND number = p_agent AND flow_slug = p_flow AND outcome = 'answered' AND ended_at IS NULL;
            IF FOUND AND p_wrap_up_seconds > 0 THEN
                UPDATE agent_states SET wrap_up_until = GREATEST(wrap_up_until, p_at + make_interval(secs => p_wrap_up_seconds)), updated_at = p_at
                 WHERE number = p_agent;
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    IF p_outcome = 'answered' THEN
        IF p_by = 'guess' THEN
            -- the pause this answer lifts, kept with the offer: a re-fetch that reports a miss puts it back
            UPDATE agent_offers o SET lifted_paused_until = s.paused_until, lifted_paused_reason = s.paused_reason
              FROM agent_states s
             WHERE s.number = p_agent AND s.paused_until > p_at
               AND o.call_sid = p_call_sid AND o.number = p_agent AND o.flow_slug = p_flow;
        END IF;
        IF p_ended AND p_wrap_up_seconds > 0 THEN
            INSERT INTO agent_states AS s (number, wrap_up_until, updated_at)
            VALUES (p_agent, v_end + make_interval(secs => p_wrap_up_seconds), p_at)
            ON CONFLICT (number) DO UPDATE
               SET wrap_up_until = GREATEST(s.wrap_up_until, EXCLUDED.wrap_up_until), paused_until = NULL, paused_reason = NULL, updated_at = p_at;
        ELSE
            UPDATE agent_states SET paused_until = NULL, paused_reason = NULL, updated_at = p_at
             WHERE number = p_agent AND paused_until IS NOT NULL;
        END IF;
    ELSIF p_max_missed > 0 AND p_outcome IN ('no-answer', 'busy') THEN
        v_missed := agent_missed_offers(p_agent, p_max_missed);
        IF v_missed >= p_max_missed THEN
            INSERT INTO agent_states AS s (number, paused_until, paused_reason, misses_since, updated_at)
            VALUES (p_agent, p_at + make_interval(secs => p_pause_seconds),
                    CASE WHEN v_missed = 1 THEN format('1 offer not answered (%s, call %s)', p_outcome, p_call_sid)
                         ELSE format('%s offers in a row not answered (the last: %s, call %s)', v_missed, p_outcome, p_call_sid) END,
                    p_at, p_at)
            ON CONFLICT (number) DO UPDATE
               SET paused_until = EXCLUDED.paused_until, paused_reason = EXCLUDED.paused_reason,
                   misses_since_before = s.misses_since, misses_since = EXCLUDED.misses_since, updated_at = p_at;
        END IF;
    END IF;
    RETURN jsonb_build_object('outcome', p_outcome, 'offered', v_new);
END
$$;

-- A round-robin tier arranged for the call it is offered to: its members (p_slice, base order)
-- started at the group's round-robin position (p_group's sequence, which advances, unless
-- previewing). Only members who may be offered now take turns: the others (p_held: away, off
-- shift, switched off, tried, busy, wrapping up, paused) follow them, in base order (else the
-- member after one who is away or on a call would get their turns). A group that is gone (deleted
-- while a snapshot still named it) starts at its first member; its sequence is named by its slug
-- (dial_group_rr_sequence(), below), so no statement looks it up. dial_offer() calls it when the
-- call is first offered the tier, so a call that finds nobody free in it (answered again later, a
-- hold loop) or is offered an earlier tier takes no turn of it then.
CREATE OR REPLACE FUNCTION dial_turn(p_slice TEXT[], p_held TEXT[], p_group TEXT, p_preview BOOLEAN) RETURNS TEXT[]
LANGUAGE plpgsql
AS $$
DECLARE
    v_slice TEXT[] := p_slice;
    v_rr    REGCLASS;
    v_shift BIGINT;
    v_turn  INT;
    v_pass  INT;
    v_first TEXT;
BEGIN
    v_rr := to_regclass('dial_group_rr_' || md5(p_group));
    IF v_rr IS NULL THEN
        v_shift := 0;
    ELSIF p_preview THEN
        EXECUTE format('SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM %s', v_rr) INTO v_shift;
    ELSE
        v_shift := nextval(v_rr);
    END IF;
    IF cardinality(p_held) = 0 THEN
        IF cardinality(v_slice) > 0 THEN
            v_shift := v_shift % cardinality(v_slice);
            v_slice := v_slice[v_shift + 1 :] || v_slice[: v_shift];
        END IF;
    ELSIF cardinality(p_held) < cardinality(v_slice) THEN
        -- The turn is the member's at the position, or, held back, the next one's after them in
        -- base order who may be offered; the positions of those passed over are taken too, so the
        -- next call starts after the member offered first. (Counted among the members offerable
        -- alone, a position gave a member held back at every other call, in a steady stream of
        -- calls each still talking at the next, no turn at all: 1, 3, 1, 3, ….)
        v_turn := (v_shift % cardinality(v_slice))::int;
        v_pass := 0;
        WHILE v_slice[(v_turn + v_pass) % cardinality(v_slice) + 1] = ANY (p_held) LOOP
            v_pass := v_pass + 1;
        END LOOP;
        IF v_pass > 0 AND v_rr IS NOT NULL AND NOT p_preview THEN
            PERFORM nextval(v_rr) FROM generate_series(1, v_pass);
        END IF;
        v_first := v_slice[(v_turn + v_pass) % cardinality(v_slice) + 1];
        v_slice := ARRAY(SELECT b.n FROM unnest(v_slice) WITH ORDINALITY AS b(n, k) WHERE NOT b.n = ANY (p_held) ORDER BY b.k);
        v_turn := array_position(v_slice, v_first) - 1;
        v_slice := v_slice[v_turn + 1 :] || v_slice[: v_turn] || p_held;
    ELSE
        v_slice := p_held;
    END IF;
    RETURN v_slice;
END
$$;

-- The numbers to offer for one request: the call's order (fixed at its first request) among the
-- candidates, not tried in this call, not busy, not wrapping up after a call, not paused after
-- missed offers, those this flow has rung in the call after the others; of the first tier that
-- has anyone left (a later tier only when the earlier ones have nobody). Stored per attempt, so
-- that every poll of one attempt gets the same numbers, and a repeated poll writes nothing (an
-- empty answer is answered afresh, and a call back at its Connect starts a new pass: a hold loop,
-- below). Returns {numbers, tier (from 0), skipped: {number: why}, reported:
-- how the reported attempt ended, when this request recorded it} (skipped and reported left out
-- when there are none); a repeated poll {numbers, repeat}. A reported attempt is recorded only for
-- an agent this call offered (one of its stored answers names it): a stale or bogus DialWhomNumber
-- neither counts an offer nor pauses anyone.
--
-- Concurrency: requests of one call take turns on an advisory lock on the call (held until
-- commit), taken before its dial_calls row is read: the first finds no row, fixes the order, takes
-- the round-robin position (of the tier it offers; a tier first offered later takes it then) and
-- inserts the row; the others wait, and then (each statement of a
-- plpgsql function takes a fresh snapshot, which a single SQL statement would not) see its order
-- and the answers stored so far. Lock order (the file's header): the call's advisory lock, its
-- dial_calls row, the reported (or connected) agent's advisory lock, then that agent's rows
-- (caller_agents, agent_offers, agent_states).
--
-- p_preview: a simulation, in a transaction that is rolled back: read the round-robin position,
-- do not take it (a sequence does not roll back).
CREATE OR REPLACE FUNCTION dial_offer(req dial_request, more dial_extra, p_preview BOOLEAN DEFAULT false) RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_numbers  TEXT[];
    v_answer   JSONB;
    v_known    BOOLEAN;
    v_order    TEXT[];
    v_tried    TEXT[];
    v_ends     INT[];
    v_sticky   TEXT;
    v_slice    TEXT[];
    v_from     INT;
    v_tier     INT;
    v_skipped  JSONB := '{}';
    v_candidates BIGINT;
    v_number   TEXT;
    v_arrange  TEXT;
    v_passed   TEXT[];
    v_held     TEXT[];
    v_reported JSONB;
    v_offered  BOOLEAN;
    v_unflowed BOOLEAN;
    v_agent    TEXT;
    v_since    TIMESTAMPTZ;
    v_setting  TEXT;
    v_remade   BOOLEAN := false;
    v_every    BOOLEAN := false;
    v_again    BOOLEAN := false;
    v_before   TEXT[] := '{}';
    v_rr_group TEXT;
    v_waiting  TEXT[] := '{}';
    v_turned   BOOLEAN := false;
    v_reached  BOOLEAN := false;
    v_waits    BOOLEAN;
    v_req_ends INT[];
    v_t        INT;
    v_s        INT;
    v_groups   TEXT[];
    v_group    TEXT := more.reported_group;
    v_wrap_up  INT := more.wrap_up_seconds;
    v_max_missed INT := more.max_missed_offers;
    v_pause    INT := more.missed_pause_seconds;
BEGIN
    -- Asynchronous commit for dial state: the commit does not wait for its WAL flush. Safe because
    -- the callback's CDR is committed synchronously after this transaction, before the answer
    -- leaves, and flushing the WAL up to the CDR's commit flushes this transaction's commit too
    -- (the WAL is one sequence). Only when the CDR goes to the spool instead (Postgres failing) and
    -- Postgres then crashes can the last moments (3 × wal_writer_delay) of dial state be lost: the
    -- calls concerned may be offered an agent again or rotate unevenly. Dial state is advisory;
    -- the CDR is the record. Transaction-local: nothing else on the connection is affected.
    v_setting := set_config('synchronous_commit', 'off', true);

    -- Requests of one call take turns from here to the commit. Two-int form: a key space of its own
    -- ('dial'), apart from the migrator's and the retention job's bigint keys. Calls whose sids
    -- share a hash only wait for each other. Tried first as an expression: a free lock (nearly
    -- always) then costs no statement.
    IF NOT pg_try_advisory_xact_lock(1684627820, hashtext(req.call_sid)) THEN
        PERFORM pg_advisory_xact_lock(1684627820, hashtext(req.call_sid));
    END IF;

    -- The call as the requests before this one left it (a fresh snapshot, taken after the lock); for
    -- a request that reports an attempt, whether one of the call's answers offered that agent.
    SELECT c."order", c.tried, c.tier_ends, c.answers -> req.attempt_key,
           CASE WHEN more.reported_agent IS NOT NULL THEN jsonb_path_exists(c.answers, '$.*[*] ? (@ == $a)', jsonb_build_object('a', more.reported_agent)) END,
           c.created_at, c.tier_groups, COALESCE(c.rr_waiting, '{}')
      INTO v_order, v_tried, v_ends, v_answer, v_offered, v_since, v_groups, v_waiting FROM dial_calls c
     WHERE c.call_sid = req.call_sid AND c.endpoint = req.endpoint AND c.flow_slug = req.flow_slug;
    v_known := FOUND;

    -- A later request: the numbers this flow has rung in the call (its dial events' offers), which
    -- the answer puts after those it has not rung yet. A request that reports an offer of the call
    -- reads them below, once it holds the agent's lock, with what its report needs to know.
    IF v_known AND v_offered IS NOT TRUE THEN
        v_before := ARRAY(SELECT o.number FROM agent_offers o WHERE o.call_sid = req.call_sid AND o.flow_slug = req.flow_slug);
    END IF;
    -- The flow back at this Connect after its other branch (If nobody answers → a Greeting, "please
    -- hold" → the same Connect: a hold loop): its request reports nothing tried, as the call's first
    -- did, but the call's dial events have seen the first number that attempt was answered rung
    -- and its leg ended (a poll of the attempt, even one racing a re-fetch, comes before that). Not
    -- a repeated poll: a new pass, answered afresh (agents free now, busy ones left out), the numbers
    -- tried and rung earlier in the call after the others, its re-fetches as the call's first pass
    -- had them. (Dial Whom sends no dial events: its hold loop gets the stored answer.)
    IF v_known AND cardinality(COALESCE(req.tried, '{}')) = 0 AND v_answer IS NOT NULL AND v_answer <> '[]' THEN
        v_again := EXISTS (SELECT 1 FROM agent_offers o WHERE o.call_sid = req.call_sid AND o.number = v_answer ->> 0 AND o.flow_slug = req.flow_slug
                              AND o.end_events > 0 AND o.end_events >= o.dial_events);
        IF v_again THEN
            v_before := v_before || v_tried;
            v_tried := '{}';
            v_answer := NULL;
        END IF;
    END IF;

    -- A repeated poll of an attempt: the answer it got, and nothing is written (not even the
    -- connection). Not an empty answer (nobody to ring then): Exotel then takes the applet's other
    -- branch, and a request that looks the same again is that branch's flow coming back to this
    -- Connect (a hold loop, nobody dialled in between), answered afresh: agents free by now are offered.
    IF v_answer IS NOT NULL AND v_answer <> '[]' THEN
        RETURN jsonb_build_object('numbers', v_answer, 'repeat', true);
    END IF;

    -- The agent the request reports (a completed one is the agent connected): its lock before its
    -- rows (the file's header), then the connection (sticky) and, once, how the offer ended.
    v_agent := COALESCE(more.reported_agent, req.connected_agent);
    IF v_agent IS NOT NULL AND (v_offered OR req.connected_caller IS NOT NULL) THEN
        IF NOT pg_try_advisory_xact_lock(1634168436, hashtext(v_agent)) THEN
            PERFORM pg_advisory_xact_lock(1634168436, hashtext(v_agent));
        END IF;
        IF req.connected_caller IS NOT NULL AND req.connected_agent IS NOT NULL THEN
            INSERT INTO caller_agents (caller, agent, connected_at) VALUES (req.connected_caller, req.connected_agent, req.at)
            ON CONFLICT (caller, agent) DO UPDATE SET connected_at = GREATEST(caller_agents.connected_at, EXCLUDED.connected_at);
        END IF;
        IF v_offered THEN
            -- The offer is the group's whose tier in the call's order holds the agent; the request
            -- names the group of the tier its own action puts the agent in, which differs only when
            -- the action or the agent's membership changed during the call: then that group's pacing
            -- is read from its row.
            IF cardinality(v_groups) > 1 THEN
                v_s := array_position(v_order, more.reported_agent);
                v_t := 1;
                WHILE v_t < cardinality(v_ends) AND v_s > v_ends[v_t] LOOP
                    v_t := v_t + 1;
                END LOOP;
                IF v_groups[v_t] IS DISTINCT FROM more.reported_group THEN
                    v_group := v_groups[v_t];
                    SELECT g.wrap_up_seconds, g.max_missed_offers, g.missed_pause_seconds INTO v_wrap_up, v_max_missed, v_pause
                      FROM dial_groups g WHERE g.slug = v_group;
                    IF NOT FOUND THEN
                        v_wrap_up := 0;
                        v_max_missed := 0;
                        v_pause := 0;
                    END IF;
                END IF;
            END IF;
            -- This flow's offers in the call (v_before, above; a hold loop's numbers already there),
            -- and whether one of the agent's was recorded without its flow: only then can
            -- agent_offer_claim() give it this flow (rarely: events URLs of the version before).
            SELECT COALESCE(array_agg(o.number) FILTER (WHERE o.flow_slug = req.flow_slug), '{}') || v_before,
                   bool_or(o.number = more.reported_agent AND o.flow_slug = '')
              INTO v_before, v_unflowed
              FROM agent_offers o WHERE o.call_sid = req.call_sid;
            IF v_unflowed THEN
                PERFORM agent_offer_claim(req.call_sid, more.reported_agent, req.flow_slug, v_since);
            END IF;
            v_reported := jsonb_build_object('agent', more.reported_agent, 'group', v_group)
                || dial_offer_ended(req.call_sid, more.reported_agent, req.flow_slug, v_group,
                       CASE WHEN more.reported_status = 'completed' THEN 'answered' ELSE more.reported_status END, true, req.at,
                       v_wrap_up, v_max_missed, v_pause, 're-fetch');
        END IF;
    END IF;

    IF v_known THEN
        -- A later request of the call: every number tried so far, and the order and tiers fixed at its first.
        FOREACH v_number IN ARRAY COALESCE(req.tried, '{}') LOOP
            IF NOT v_number = ANY (COALESCE(v_tried, '{}')) THEN
                v_tried := v_tried || v_number;
            END IF;
        END LOOP;
        v_ends := COALESCE(v_ends, ARRAY[COALESCE(cardinality(v_order), 0)]);
        -- The action's groups as they are now: when their members or tiers have changed since the
        -- call's first request (base holds every member now, placed in their tier), the order is made
        -- again from base, tier by tier, each tier in the call's order so far (its rotation, draw and
        -- sticky agent kept) and members new to the call at its end. So agents added in a busy hour
        -- reach the calls already waiting, a group added to or moved in the action's tiers is
        -- offered where it now stands, and a member switched off or off shift in one tier and on duty
        -- in another moves there. A request without tier_groups (a list of numbers, or the version
        -- before) changes only a call of one tier that has none either.
        v_req_ends := COALESCE(more.tier_ends, ARRAY[cardinality(req.base)]);
        v_remade := NOT req.base <@ v_order OR v_req_ends IS DISTINCT FROM v_ends OR more.tier_groups IS DISTINCT FROM v_groups;
        -- The same members, tier sizes and groups: numbers may still have swapped tiers (one switched
        -- off in a tier and on in another, a second the other way round), seen tier by tier.
        IF NOT v_remade AND cardinality(v_ends) > 1 THEN
            v_from := 0;
            FOR i IN 1 .. cardinality(v_ends) - 1 LOOP
                v_remade := NOT req.base[v_from + 1 : v_ends[i]] <@ v_order[v_from + 1 : v_ends[i]];
                EXIT WHEN v_remade;
                v_from := v_ends[i];
            END LOOP;
        END IF;
        v_remade := v_remade AND (more.tier_groups IS NOT NULL OR (v_groups IS NULL AND cardinality(v_req_ends) = 1));
        IF v_remade THEN
            v_slice := '{}';
            v_from := 0;
            FOR i IN 1 .. cardinality(v_req_ends) LOOP
                v_slice := v_slice || ARRAY(SELECT b.n FROM unnest(req.base[v_from + 1 : v_req_ends[i]]) WITH ORDINALITY AS b(n, i)
                                             ORDER BY array_position(v_order, b.n) NULLS LAST, b.i);
                v_from := v_req_ends[i];
            END LOOP;
            v_order := v_slice;
            v_ends := v_req_ends;
            v_groups := more.tier_groups;
        END IF;
    ELSE
        -- The call's first request fixes its order: each tier arranged as its group's strategy
        -- says, the caller's sticky agent (the last connected of those who may be offered now)
        -- first in its tier. With tiers, each tier by its own group's sticky window
        -- (tier_sticky_since, in the loop); one tier (or tiers of the version before) by
        -- sticky_since: one agent, first in whichever tier holds it.
        v_tried := req.tried;
        v_ends := COALESCE(more.tier_ends, ARRAY[cardinality(req.base)]);
        v_groups := more.tier_groups;
        IF req.sticky_caller IS NOT NULL AND more.tier_sticky_since IS NULL THEN
            SELECT ca.agent INTO v_sticky FROM caller_agents ca
             WHERE ca.caller = req.sticky_caller AND ca.agent = ANY (req.candidates) AND ca.connected_at > req.sticky_since
             ORDER BY ca.connected_at DESC LIMIT 1;
        END IF;
        v_order := '{}';
        v_from := 0;
        FOR i IN 1 .. cardinality(v_ends) LOOP
            -- The tier's slice of the base order arranged as its strategy says: 'rotate' starts it at
            -- the group's round-robin position (dial_turn()), 'least_recent' puts the members dialed
            -- longest ago first (never dialed before them, ties in base order), 'as_is' keeps it.
            -- A round-robin tier takes its turn only when this request offers it (the first tier
            -- with anyone who may be offered now); otherwise it stays in base order, its sticky agent
            -- not placed yet, and waits (rr_waiting) for the request that first offers it.
            v_slice := req.base[v_from + 1 : v_ends[i]];
            v_arrange := CASE WHEN more.tier_ends IS NULL THEN req.arrange ELSE more.tier_arranges[i] END;
            v_held := NULL;
            v_waits := false;
            IF v_arrange = 'rotate' OR cardinality(v_ends) > 1 THEN
                -- held back now as the answer below holds them: the agents' states read once (an InitPlan)
                v_held := ARRAY(SELECT b.n FROM unnest(v_slice) WITH ORDINALITY AS b(n, k)
                                 WHERE NOT b.n = ANY (req.candidates) OR b.n = ANY (COALESCE(req.tried, '{}')) OR b.n = ANY (ARRAY(
                                       SELECT s.number FROM agent_states s WHERE s.number = ANY (v_slice)
                                          AND ((s.busy AND s.busy_since > req.busy_expired) OR s.wrap_up_until > req.at OR s.paused_until > req.at)))
                                 ORDER BY b.k);
            END IF;
            IF v_arrange = 'least_recent' THEN
                SELECT COALESCE(array_agg(b.n ORDER BY (SELECT s.last_dialed_at FROM agent_states s WHERE s.number = b.n) NULLS FIRST, b.i), '{}')
                  INTO v_slice
                  FROM unnest(v_slice) WITH ORDINALITY AS b(n, i);
            ELSIF v_arrange = 'rotate' THEN
                v_rr_group := CASE WHEN more.tier_ends IS NULL THEN req.rr_group ELSE more.tier_rr_groups[i] END;
                IF v_reached OR cardinality(v_held) = cardinality(v_slice) THEN
                    v_waits := true;
                    v_waiting := v_waiting || v_rr_group;
                ELSE
                    -- every member may be offered now: with one tier, the answer below is the order (the
                    -- answer's lookup would tell NULLs apart, which no request sends: then it runs)
                    v_every := cardinality(v_held) = 0 AND cardinality(v_ends) = 1 AND v_slice <@ req.candidates
                               AND array_position(req.tried, NULL) IS NULL;
                    v_slice := dial_turn(v_slice, v_held, v_rr_group, p_preview);
                END IF;
            END IF;
            IF v_held IS NOT NULL THEN
                v_reached := v_reached OR cardinality(v_held) < cardinality(v_slice);
            END IF;
            IF more.tier_sticky_since IS NOT NULL THEN
                -- the tier's own sticky agent, or none when its group is not sticky
                v_sticky := NULL;
                IF req.sticky_caller IS NOT NULL AND more.tier_sticky_since[i] IS NOT NULL THEN
                    SELECT ca.agent INTO v_sticky FROM caller_agents ca
                     WHERE ca.caller = req.sticky_caller AND ca.agent = ANY (v_slice) AND ca.agent = ANY (req.candidates)
                       AND ca.connected_at > more.tier_sticky_since[i]
                     ORDER BY ca.connected_at DESC LIMIT 1;
                END IF;
            END IF;
            IF v_sticky = ANY (v_slice) AND NOT v_waits THEN
                v_slice := array_prepend(v_sticky, array_remove(v_slice, v_sticky));
            END IF;
            v_order := v_order || v_slice;
            v_from := v_ends[i];
        END LOOP;
    END IF;

    -- The answer: tier after tier, the order's numbers that may be offered now (those rung earlier
    -- in the call after the others: v_before); the first tier with anyone left is offered. One
    -- lookup per tier gives its numbers and the candidates passed over because they were tried in
    -- this call; only when a candidate is held back for another reason (busy, wrapping up, paused)
    -- does a second lookup say which, for those members alone.
    -- Neither joins agent_states: the agents held back are read once (an InitPlan), a member's
    -- reason by its key. With a join the planner may build a hash table per request while
    -- agent_states is small, which cost more than the rest of the request (bench/README.md).
    -- The call's first request of one tier whose rotation found every member offerable (above):
    -- the answer is the order itself, and none passed over; no lookup.
    IF v_every THEN
        v_numbers := v_order;
        v_tier := 0;
    ELSE
        v_from := 0;
        v_numbers := '{}';
        FOR i IN 1 .. cardinality(v_ends) LOOP
            v_slice := v_order[v_from + 1 : v_ends[i]];
            SELECT COALESCE(array_agg(o.n ORDER BY o.n = ANY (v_before), o.i) FILTER (WHERE NOT (o.n = ANY (COALESCE(v_tried, '{}')) OR o.n = ANY (ARRAY(
                       SELECT s.number FROM agent_states s WHERE s.number = ANY (v_slice)
                          AND ((s.busy AND s.busy_since > req.busy_expired) OR s.wrap_up_until > req.at OR s.paused_until > req.at))))), '{}'),
                   COALESCE(array_agg(o.n) FILTER (WHERE o.n = ANY (v_tried)), '{}'),
                   count(*)
              INTO v_numbers, v_passed, v_candidates
              FROM unnest(v_slice) WITH ORDINALITY AS o(n, i)
             -- not a candidate now: away, off shift or switched off (the request says why)
             WHERE o.n = ANY (req.candidates);
            IF cardinality(v_passed) > 0 THEN
                v_skipped := v_skipped || jsonb_object(v_passed, array_fill('tried'::text, ARRAY[cardinality(v_passed)]));
            END IF;
            IF v_candidates > cardinality(v_numbers) + cardinality(v_passed) THEN
                SELECT v_skipped || jsonb_object_agg(o.n, (
                           SELECT CASE WHEN s.busy AND s.busy_since > req.busy_expired THEN 'busy'
                                       WHEN s.wrap_up_until > req.at THEN 'wrap-up'
                                       WHEN s.paused_until > req.at THEN 'paused'
                                  END
                             FROM agent_states s WHERE s.number = o.n))
                  INTO v_skipped
                  FROM unnest(v_slice) AS o(n)
                 WHERE o.n = ANY (req.candidates) AND NOT (o.n = ANY (v_numbers) OR o.n = ANY (v_passed));
            END IF;
            v_tier := i - 1;
            -- A round-robin tier offered for the first time in the call (its turn waiting since the
            -- call's first request, above): it takes its turn now, among the members who may be offered
            -- now, its sticky agent first.
            v_rr_group := CASE WHEN more.tier_ends IS NULL THEN req.rr_group ELSE more.tier_rr_groups[i] END;
            IF cardinality(v_numbers) > 0 AND v_rr_group = ANY (v_waiting)
               AND (CASE WHEN more.tier_ends IS NULL THEN req.arrange ELSE more.tier_arranges[i] END) = 'rotate' THEN
                -- its members by priority (the request's base; the call's order, which holds them in
                -- base order, when the request's tiers are not the call's: a request of the version before)
                IF v_req_ends IS NOT DISTINCT FROM v_ends THEN
                    v_slice := req.base[v_from + 1 : v_ends[i]];
                END IF;
                v_slice := dial_turn(v_slice, ARRAY(SELECT o.n FROM unnest(v_slice) WITH ORDINALITY AS o(n, k) WHERE NOT o.n = ANY (v_numbers) ORDER BY o.k),
                                     v_rr_group, p_preview);
                v_sticky := NULL;
                IF req.sticky_caller IS NOT NULL THEN
                    SELECT ca.agent INTO v_sticky FROM caller_agents ca
                     WHERE ca.caller = req.sticky_caller AND ca.agent = ANY (v_slice) AND ca.agent = ANY (req.candidates)
                       AND ca.connected_at > CASE WHEN more.tier_sticky_since IS NULL THEN req.sticky_since ELSE more.tier_sticky_since[i] END
                     ORDER BY ca.connected_at DESC LIMIT 1;
                END IF;
                IF v_sticky IS NOT NULL THEN
                    v_slice := array_prepend(v_sticky, array_remove(v_slice, v_sticky));
                END IF;
                v_order := v_order[: v_from] || v_slice || v_order[v_ends[i] + 1 :];
                v_numbers := ARRAY(SELECT o.n FROM unnest(v_slice) WITH ORDINALITY AS o(n, k) WHERE o.n = ANY (v_numbers) ORDER BY o.n = ANY (v_before), o.k);
                v_waiting := array_remove(v_waiting, v_rr_group);
                v_turned := true;
            END IF;
            EXIT WHEN cardinality(v_numbers) > 0;
            v_from := v_ends[i];
        END LOOP;
    END IF;

    -- Stored with the call: the order and its tiers, the numbers tried and this attempt's answer, in one row.
    IF v_known THEN
        -- a new pass (a hold loop) starts the call's tried numbers and answers again
        IF v_remade OR v_turned THEN
            UPDATE dial_calls AS c SET "order" = v_order, tier_ends = CASE WHEN cardinality(v_ends) > 1 THEN v_ends END, tier_groups = v_groups,
                   rr_waiting = CASE WHEN cardinality(v_waiting) > 0 THEN v_waiting END,
                   tried = v_tried, answers = CASE WHEN v_again THEN '{}' ELSE c.answers END || jsonb_build_object(req.attempt_key, v_numbers)
             WHERE c.call_sid = req.call_sid AND c.endpoint = req.endpoint AND c.flow_slug = req.flow_slug;
        ELSE
            UPDATE dial_calls AS c SET tried = v_tried, answers = CASE WHEN v_again THEN '{}' ELSE c.answers END || jsonb_build_object(req.attempt_key, v_numbers)
             WHERE c.call_sid = req.call_sid AND c.endpoint = req.endpoint AND c.flow_slug = req.flow_slug;
        END IF;
    ELSE
        INSERT INTO dial_calls (call_sid, endpoint, flow_slug, "order", tried, answers, tier_ends, tier_groups, rr_waiting)
        VALUES (req.call_sid, req.endpoint, req.flow_slug, v_order, req.tried, jsonb_build_object(req.attempt_key, v_numbers),
                CASE WHEN cardinality(v_ends) > 1 THEN v_ends END, v_groups, CASE WHEN cardinality(v_waiting) > 0 THEN v_waiting END);
    END IF;
    IF v_skipped = '{}' AND v_reported IS NULL THEN
        RETURN jsonb_build_object('numbers', to_jsonb(v_numbers), 'tier', v_tier);
    END IF;
    RETURN jsonb_build_object('numbers', to_jsonb(v_numbers), 'tier', v_tier, 'skipped', v_skipped, 'reported', v_reported);
END
$$;

-- The numbers alone, for a request without tiers or a report: how instances of the version before
-- dial_offer() ask (src/store/dial-state.ts of issue 23).
CREATE OR REPLACE FUNCTION dial_answer(req dial_request, p_preview BOOLEAN DEFAULT false) RETURNS TEXT[]
LANGUAGE sql
AS $$
    SELECT ARRAY(SELECT jsonb_array_elements_text(dial_offer(req, NULL::dial_extra, p_preview) -> 'numbers'))
$$;

-- The requests that queued while the previous statement ran, in one statement and one
-- transaction: Postgres starts and commits one transaction, and exoroute wakes one backend, per
-- batch. Each request is answered by dial_offer() exactly as alone, in the order given, so a
-- later request of the same call sees what an earlier one wrote (the same transaction). The calls'
-- advisory locks are held until the batch commits; exoroute runs one batch at a time, so batches
-- of one instance never wait for each other.
--
-- p_requests: a JSON array of dial_batch_request objects (attributes by name; other keys are
-- ignored). Each row answers the request at position `idx` (from 0).
CREATE OR REPLACE FUNCTION dial_offer_batch(p_requests JSON) RETURNS TABLE (idx INT, answer JSONB)
LANGUAGE plpgsql
AS $$
DECLARE
    r        dial_batch_request;
    v_batch  dial_batch_request[];
    v_key    INT;
BEGIN
    -- The requests in their order (a function scan returns its rows as the array has them).
    SELECT array_agg(q) INTO v_batch FROM json_populate_recordset(NULL::dial_batch_request, p_requests) AS q;
    -- Every lock the requests will take, first, in one order (the file's header): the calls', then
    -- the agents' they report or were connected to, each by key. dial_offer() takes them again;
    -- held already, that costs nothing.
    FOR v_key IN SELECT DISTINCT hashtext(q.call_sid) FROM unnest(v_batch) AS q ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1684627820, v_key);
    END LOOP;
    FOR v_key IN SELECT DISTINCT hashtext(a.agent) FROM unnest(v_batch) AS q, LATERAL (VALUES (q.reported_agent), (q.connected_agent)) AS a(agent)
                  WHERE a.agent IS NOT NULL ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1634168436, v_key);
    END LOOP;
    idx := -1;
    FOREACH r IN ARRAY COALESCE(v_batch, '{}') LOOP
        idx := idx + 1;
        answer := dial_offer(
            ROW(r.call_sid, r.endpoint, r.flow_slug, r.attempt_key, r.tried, r.candidates, r.base, r.arrange, r.rr_group,
                r.sticky_caller, r.sticky_since, r.connected_caller, r.connected_agent, r.at, r.busy_expired)::dial_request,
            ROW(r.tier_ends, r.tier_arranges, r.tier_rr_groups, r.tier_sticky_since, r.reported_agent, r.reported_status,
                r.reported_group, r.wrap_up_seconds, r.max_missed_offers, r.missed_pause_seconds, r.tier_groups)::dial_extra);
        RETURN NEXT;
    END LOOP;
END
$$;

-- The batch as instances of the version before send it: {"req": {…}, "more": {…}} items
-- (dial_batch_item).
CREATE OR REPLACE FUNCTION dial_offers(p_requests JSON) RETURNS TABLE (idx INT, answer JSONB)
LANGUAGE plpgsql
AS $$
DECLARE
    r dial_batch_item;
BEGIN
    idx := -1;
    FOR r IN SELECT * FROM json_populate_recordset(NULL::dial_batch_item, p_requests) LOOP
        idx := idx + 1;
        answer := dial_offer(r.req, r.more);
        RETURN NEXT;
    END LOOP;
END
$$;

-- The batch as instances of the version before dial_offer() send it: numbers only.
CREATE OR REPLACE FUNCTION dial_answer_batch(p_requests JSON) RETURNS TABLE (idx INT, numbers TEXT[])
LANGUAGE sql
AS $$
    SELECT b.idx, ARRAY(SELECT jsonb_array_elements_text(b.answer -> 'numbers')) FROM dial_offer_batch(p_requests) AS b
$$;

-- A dial event (dial_passthru_event_url) for an agent, in one statement: busy/free, when last
-- dialed and connected (least_recent, sticky), and the offer it belongs to. A `busy` Dial event
-- starts an offer; Answered marks it answered; the end (`free`, or Terminal) ends it: answered, or
-- when Exotel sends no Answered events, answered if it lasted longer than ringing can
-- (p_ring_seconds), else missed. The offer is the agent's in the call through the flow the events
-- URL names (p_flow; without one, the agent's latest offer in the call). Returns {offered: true}
-- when the event recorded an offer (a Dial, or an end whose Dial had not come), and {outcome} when
-- it recorded how one ended (for the metrics). p_flow, p_early_seconds and p_busy_expired are
-- last, with defaults, so that instances of versions before call it as they did.
--
-- Two calls at once (p_busy_expired: when a leg begun before it counts as over, busyExpiredAt in
-- src/routing/agents.ts): two callers answered the same agent before either Dial event came, so
-- Exotel rings the agent for both. The agent is busy on one call at a time (busy_call_sid); the
-- end of one leg while the other goes on (a Dial with no end yet, begun after p_busy_expired)
-- leaves the agent busy on the other call, from its Dial, rather than free while on it.
--
-- Parallel ringing (p_early_seconds, for a group whose strategy is `parallel`): Exotel rings the
-- agents at once and ends the other legs when one answers. A leg that ends unanswered sooner than
-- p_early_seconds was cut short: 'cancelled', no miss (neither counted nor breaking a run of
-- misses). A leg that rings out is a miss as in any group. A decline looks the same as a leg cut
-- short, and is not counted either.
--
-- Events out of order: a short leg's events (a phone switched off, a call declined, a call answered
-- and hung up at once) come within a moment of each other and may arrive in any order. The offer's
-- row counts the legs its events started (dial_events: Dial events) and ended (end_events: free
-- or Terminal, at most one more than were started: an end may come before its Dial, and a
-- repeated end then counts no further). A `busy` is stale when as many legs have ended as were
-- started, its own Dial counted: its leg is over. Without an id per leg in the events, a repeated
-- end followed by a second leg of the offer counts that leg as over too (the agent then looks
-- free while rung or talking, and may be offered to a second caller); the other choice left an
-- agent whose second leg's end came before its Dial busy, and offered to nobody, for an hour. It changes no busy state, which would otherwise stay until it expired
-- (busy_expired: an hour or more). Counting legs rather than asking whether the offer has ended
-- keeps a second leg of one offer busy: a flow may offer an agent again in a call (an Exotel flow
-- that goes back to its Connect, a fallback answer), and a Dial Whom offer, which sends no events,
-- shares its row with a Connect offer of the same flow. A second leg that is answered makes the
-- offer answered and on the call again, so that its end starts the wrap-up.
--   An end whose offer has not started records the offer as ended, how not known (outcome NULL: no
-- Dial event timed its ringing; a re-fetch reporting the attempt fills it in). An Answered for a
-- leg that has ended is believed over the outcome its end guessed from how long it lasted: the
-- offer is answered, a pause that started during the offer (its miss) is lifted, and the wrap-up
-- runs from its last end. Two more orders cannot be told apart without an id per leg: a second
-- leg's Answered that comes before its Dial is taken for the first leg's late Answered (the agent
-- is then not busy on that leg), and a Dial delivered twice is taken for a second leg (which never
-- ends: the agent stays busy until busy_expired).
-- Only for events whose URL names the flow: without one, the agent's latest offer in the call may
-- be another flow's, and the rules of the version before apply.
CREATE OR REPLACE FUNCTION dial_agent_event(
    p_agent TEXT, p_call_sid TEXT, p_busy BOOLEAN, p_dialed BOOLEAN, p_answered BOOLEAN, p_ended BOOLEAN,
    p_caller TEXT, p_at TIMESTAMPTZ, p_group TEXT, p_ring_seconds INT,
    p_wrap_up_seconds INT, p_max_missed INT, p_pause_seconds INT, p_flow TEXT DEFAULT NULL, p_early_seconds INT DEFAULT NULL,
    p_busy_expired TIMESTAMPTZ DEFAULT NULL
) RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_other_call  TEXT;
    v_other_since TIMESTAMPTZ;
    v_offered_at TIMESTAMPTZ;
    v_was        TEXT;
    v_ended_at   TIMESTAMPTZ;
    v_ended      JSONB;
    v_result     JSONB := '{}';
    v_flow       TEXT := p_flow;
    v_busy       BOOLEAN := p_busy;
    v_stale      BOOLEAN := false;
    v_new        BOOLEAN;
    v_found      BOOLEAN;
BEGIN
    -- The agent's lock before its rows (the file's header).
    IF NOT pg_try_advisory_xact_lock(1634168436, hashtext(p_agent)) THEN
        PERFORM pg_advisory_xact_lock(1634168436, hashtext(p_agent));
    END IF;
    -- A busy whose leg has ended is stale (events out of order, above).
    IF p_busy AND p_flow IS NOT NULL AND p_call_sid IS NOT NULL THEN
        SELECT o.end_events > 0 AND o.end_events >= o.dial_events + CASE WHEN p_dialed THEN 1 ELSE 0 END INTO v_stale
          FROM agent_offers o WHERE o.call_sid = p_call_sid AND o.number = p_agent AND o.flow_slug = p_flow;
        v_stale := COALESCE(v_stale, false);
        IF v_stale THEN
            v_busy := NULL;
        END IF;
    END IF;
    -- The end of a leg while another call's leg of the agent goes on (two calls rang the agent at
    -- once: both were answered before either Dial event came): the agent stays busy on that call,
    -- from its first busy event (its offer), until its own end or busy_expired (p_busy_expired:
    -- an older leg has expired; NULL, from instances of versions before: not looked for). An
    -- offer that has ended (a Dial delivered twice, then its end) is no leg going on.
    IF v_busy IS FALSE AND p_call_sid IS NOT NULL AND p_busy_expired IS NOT NULL THEN
        SELECT o.call_sid, o.offered_at INTO v_other_call, v_other_since FROM agent_offers o
         WHERE o.number = p_agent AND o.offered_at > p_busy_expired AND o.call_sid <> p_call_sid AND o.dial_events > o.end_events
           AND o.ended_at IS NULL
         ORDER BY o.offered_at DESC LIMIT 1;
    END IF;
    INSERT INTO agent_states AS s (number, busy, busy_since, busy_call_sid, last_dialed_at, last_connected_at, updated_at)
    VALUES (p_agent, COALESCE(v_busy, false), CASE WHEN v_busy THEN p_at END, CASE WHEN v_busy THEN p_call_sid END,
            CASE WHEN p_dialed THEN p_at END, CASE WHEN p_answered THEN p_at END, p_at)
    ON CONFLICT (number) DO UPDATE SET
        -- A free for another call than the one the agent is busy on (a late end of an earlier call)
        -- leaves the busy state as it is. A busy for another call starts the busy time again: the
        -- earlier call's free may have been lost, and its busy time expired (busy_expired) must
        -- not make the new call look expired too (also when that call's sid was not sent). A free
        -- while another call's leg goes on (v_other_call, above) makes the agent busy on that one.
        busy = CASE WHEN v_busy IS FALSE AND s.busy_call_sid <> p_call_sid THEN s.busy
                    WHEN v_other_call IS NOT NULL THEN true ELSE COALESCE(v_busy, s.busy) END,
        busy_since = CASE WHEN v_busy IS FALSE AND s.busy_call_sid <> p_call_sid THEN s.busy_since
                          WHEN v_other_call IS NOT NULL THEN v_other_since
                          WHEN v_busy IS TRUE AND (NOT s.busy OR (p_call_sid IS NOT NULL AND s.busy_call_sid IS DISTINCT FROM p_call_sid)) THEN p_at
                          WHEN v_busy IS FALSE THEN NULL ELSE s.busy_since END,
        busy_call_sid = CASE WHEN v_busy IS FALSE AND s.busy_call_sid <> p_call_sid THEN s.busy_call_sid
                             WHEN v_other_call IS NOT NULL THEN v_other_call
                             WHEN v_busy IS TRUE THEN COALESCE(p_call_sid, s.busy_call_sid) WHEN v_busy IS FALSE THEN NULL ELSE s.busy_call_sid END,
        last_dialed_at = CASE WHEN p_dialed THEN p_at ELSE s.last_dialed_at END,
        last_connected_at = CASE WHEN p_answered THEN p_at ELSE s.last_connected_at END,
        updated_at = p_at;
    IF p_answered AND p_caller IS NOT NULL THEN
        INSERT INTO caller_agents (caller, agent, connected_at) VALUES (p_caller, p_agent, p_at)
        ON CONFLICT (caller, agent) DO UPDATE SET connected_at = GREATEST(caller_agents.connected_at, EXCLUDED.connected_at);
    END IF;
    IF p_call_sid IS NULL THEN
        RETURN v_result;
    END IF;
    -- The offer's flow: the one the events URL names; an events URL without one (handed out by the
    -- version before) means the agent's latest offer in the call, or one whose flow is not known ('').
    IF v_flow IS NULL THEN
        SELECT o.flow_slug INTO v_flow FROM agent_offers o WHERE o.call_sid = p_call_sid AND o.number = p_agent
         ORDER BY o.offered_at DESC LIMIT 1;
        v_flow := COALESCE(v_flow, '');
    END IF;
    IF p_dialed THEN
        INSERT INTO agent_offers AS o (call_sid, number, flow_slug, group_slug, offered_at, dial_events) VALUES (p_call_sid, p_agent, v_flow, p_group, p_at, 1)
        ON CONFLICT (call_sid, number, flow_slug) DO UPDATE SET dial_events = o.dial_events + 1
        RETURNING (xmax = 0) INTO v_new;
        IF v_new THEN
            v_result := v_result || '{"offered": true}';
        END IF;
    END IF;
    IF p_answered AND v_stale THEN
        -- Answered after its leg's end (events out of order, above): answered after all.
        UPDATE agent_offers SET outcome = 'answered', outcome_guessed = false
         WHERE call_sid = p_call_sid AND number = p_agent AND flow_slug = v_flow AND outcome IS DISTINCT FROM 'answered'
        RETURNING offered_at, ended_at INTO v_offered_at, v_ended_at;
        IF FOUND THEN
            UPDATE agent_states
               SET paused_until = CASE WHEN misses_since BETWEEN v_offered_at AND v_ended_at THEN NULL ELSE paused_until END,
                   paused_reason = CASE WHEN misses_since BETWEEN v_offered_at AND v_ended_at THEN NULL ELSE paused_reason END,
                   wrap_up_until = CASE WHEN p_wrap_up_seconds > 0 THEN GREATEST(wrap_up_until, v_ended_at + make_interval(secs => p_wrap_up_seconds)) ELSE wrap_up_until END,
                   updated_at = p_at
             WHERE number = p_agent;
            v_ended := '{"outcome": "answered"}';
        END IF;
    ELSIF p_answered THEN
        v_ended := dial_offer_ended(p_call_sid, p_agent, v_flow, p_group, 'answered', false, p_at, p_wrap_up_seconds, p_max_missed, p_pause_seconds, 'answered');
        IF v_ended IS NULL AND p_flow IS NOT NULL THEN
            -- How the offer ended was known: a later leg of it (the agent rung again in the call) is
            -- answered. The offer is answered and on the call again, so that its end starts the
            -- wrap-up; as any answer, it lifts a pause. (An answered offer that a re-fetch ended
            -- while its only leg goes on is not opened again: no leg of it has ended yet.)
            SELECT o.outcome INTO v_was FROM agent_offers o
             WHERE o.call_sid = p_call_sid AND o.number = p_agent AND o.flow_slug = v_flow AND o.dial_events > o.end_events
               AND (o.outcome IS DISTINCT FROM 'answered' OR (o.ended_at IS NOT NULL AND o.end_events > 0))
               FOR UPDATE;
            IF FOUND THEN
                UPDATE agent_offers SET outcome = 'answered', outcome_guessed = false, ended_at = NULL WHERE call_sid = p_call_sid AND number = p_agent AND flow_slug = v_flow;
                UPDATE agent_states SET paused_until = NULL, paused_reason = NULL, updated_at = p_at WHERE number = p_agent AND paused_until IS NOT NULL;
                IF v_was IS DISTINCT FROM 'answered' THEN
                    v_ended := '{"outcome": "answered"}';
                END IF;
            END IF;
        END IF;
    ELSIF p_ended THEN
        SELECT o.offered_at, o.outcome, o.ended_at INTO v_offered_at, v_was, v_ended_at
          FROM agent_offers o WHERE o.call_sid = p_call_sid AND o.number = p_agent AND o.flow_slug = v_flow FOR UPDATE;
        v_found := FOUND;
        IF v_found THEN
            -- An end that counts for an offer that had ended already is a later leg's (or a repeated
            -- end's): the offer ends again, then.
            UPDATE agent_offers SET end_events = LEAST(end_events + 1, dial_events + 1),
                   ended_at = CASE WHEN outcome IS NOT NULL AND ended_at IS NOT NULL AND end_events <= dial_events THEN p_at ELSE ended_at END
             WHERE call_sid = p_call_sid AND number = p_agent AND flow_slug = v_flow;
        END IF;
        IF v_found AND v_was = 'answered' AND v_ended_at IS NULL THEN
            -- the end of an answered call: wrap-up starts now (a longer one already running goes on)
            UPDATE agent_offers SET ended_at = p_at WHERE call_sid = p_call_sid AND number = p_agent AND flow_slug = v_flow;
            IF p_wrap_up_seconds > 0 THEN
                UPDATE agent_states SET wrap_up_until = GREATEST(wrap_up_until, p_at + make_interval(secs => p_wrap_up_seconds)), updated_at = p_at
                 WHERE number = p_agent;
            END IF;
        ELSIF v_found AND v_was IS NULL AND v_ended_at IS NULL THEN
            v_ended := dial_offer_ended(p_call_sid, p_agent, v_flow, p_group,
                CASE WHEN p_at - v_offered_at > make_interval(secs => p_ring_seconds) THEN 'answered'
                     WHEN p_at - v_offered_at < make_interval(secs => p_early_seconds) THEN 'cancelled'
                     ELSE 'no-answer' END,
                true, p_at, p_wrap_up_seconds, p_max_missed, p_pause_seconds, 'guess');
        ELSIF NOT v_found AND p_flow IS NOT NULL THEN
            -- the end came before the start (events out of order, above): an ended offer, how not known
            INSERT INTO agent_offers (call_sid, number, flow_slug, group_slug, offered_at, ended_at, end_events)
            VALUES (p_call_sid, p_agent, v_flow, p_group, p_at, p_at, 1)
            ON CONFLICT (call_sid, number, flow_slug) DO NOTHING;
            IF FOUND THEN
                v_result := v_result || '{"offered": true}';
            END IF;
        END IF;
    END IF;
    -- an offer whose Dial event never came is counted as offered by the event that ends it
    RETURN v_result || jsonb_strip_nulls(jsonb_build_object('outcome', v_ended -> 'outcome'))
        || CASE WHEN (v_ended ->> 'offered')::boolean THEN '{"offered": true}'::jsonb ELSE '{}' END;
END
$$;

-- A dial group's round-robin position is a sequence, dial_group_rr_<md5 of its slug>: nextval()
-- takes no row lock and leaves no dead tuple, and is shared by every instance. A sequence does not
-- roll back: a call whose transaction fails after taking a position leaves a gap (the rotation
-- skips one member once). Named by the slug (which never changes; its md5 keeps the name within
-- Postgres' 63 bytes), so that dial_turn() finds it without reading dial_groups (migration
-- 20261210017900; dial_group_rr_<id> before). Created and dropped with the group, by the trigger
-- dial_groups_rr_sequence (migration 20261124000000_dial_answer_rotation_sequence). DROP first:
-- TRUNCATE does not fire DELETE triggers and may leave the sequence of a group whose slug is used
-- again.
CREATE OR REPLACE FUNCTION dial_group_rr_sequence() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format('DROP SEQUENCE IF EXISTS %I', 'dial_group_rr_' || md5(OLD.slug));
        RETURN OLD;
    END IF;
    EXECUTE format('DROP SEQUENCE IF EXISTS %I', 'dial_group_rr_' || md5(NEW.slug));
    EXECUTE format('CREATE SEQUENCE %I AS bigint MINVALUE 0 START 0', 'dial_group_rr_' || md5(NEW.slug));
    RETURN NEW;
END
$$;
-- <<< prisma/functions/dial_answer.sql
