-- Dial Whom / Connect: the part of "who to ring" that lives in Postgres. This file is THE
-- definition of these functions and their parameter type. Migrations install it by copying it
-- whole (never the reverse); test/store/dial-sql-source.test.ts fails when the functions of a
-- freshly migrated database differ from this file. To change them: edit this file, then add a
-- migration that is a copy of it (when dial_request changes, one that first drops the type with
-- CASCADE, which drops the functions that use it).
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
-- calls dial_answer() for a request alone, or dial_answer_batch() for the requests that queued
-- while the previous statement ran.

-- One Dial Whom / Connect request: the TypeScript side is DialRequest (src/routing/dial/request.ts),
-- marshalled by asDialRequest (src/store/dial-state.ts): a request alone as ROW($1, …)::dial_request,
-- a batch as JSON objects read by name with json_populate_recordset.
CREATE TYPE dial_request AS (
    call_sid         TEXT,
    endpoint         TEXT,
    flow_slug        TEXT,
    -- the attempt: numbers the request says were tried and the DialCallStatus
    attempt_key      TEXT,
    -- numbers the request says were tried (DialWhomNumber, Legs)
    tried            TEXT[],
    -- numbers that may be offered now (active members in their shift, or the flow's numbers)
    candidates       TEXT[],
    -- the order to fix at the call's first request, before `arrange` and sticky: the members by
    -- priority, or already drawn for `random` / `weighted` (orderPlan in src/routing/dial/order.ts)
    base             TEXT[],
    -- 'as_is'; 'rotate' (round robin: start `base` at the group's position, which advances);
    -- 'least_recent' (members dialed longest ago first, never dialed before them, ties in `base` order)
    arrange          TEXT,
    -- 'rotate': the dial group whose round-robin position is taken
    rr_group         TEXT,
    -- sticky groups: the caller, whose last connected agent (after sticky_since) goes first
    sticky_caller    TEXT,
    sticky_since     TIMESTAMPTZ,
    -- DialCallStatus=completed: the caller was connected to this agent
    connected_caller TEXT,
    connected_agent  TEXT,
    at               TIMESTAMPTZ,
    -- an agent reported busy before this (AGENT_BUSY_TTL_SECONDS ago) counts as free
    busy_expired     TIMESTAMPTZ
);

-- The numbers to offer for one request: the call's order (fixed at its first request) among the
-- candidates, not tried in this call, not busy; stored per attempt, so that every poll of one
-- attempt gets the same answer, and a repeated poll writes nothing.
--
-- Concurrency: requests of one call take turns on an advisory lock on the call (held until
-- commit), taken before its dial_calls row is read: the first finds no row, fixes the order, takes
-- the round-robin position and inserts the row; the others wait, and then (each statement of a
-- plpgsql function takes a fresh snapshot, which a single SQL statement would not) see its order
-- and the answers stored so far. Lock order: the caller_agents row, the call's advisory lock, its
-- dial_calls row.
--
-- p_preview: a simulation, in a transaction that is rolled back: read the round-robin position,
-- do not take it (a sequence does not roll back).
CREATE OR REPLACE FUNCTION dial_answer(req dial_request, p_preview BOOLEAN DEFAULT false) RETURNS TEXT[]
LANGUAGE plpgsql
AS $$
DECLARE
    v_numbers TEXT[];
    v_answer  JSONB;
    v_known   BOOLEAN;
    v_order   TEXT[];
    v_tried   TEXT[];
    v_sticky  TEXT;
    v_shift   BIGINT;
    v_rr      REGCLASS;
BEGIN
    IF req.connected_caller IS NOT NULL AND req.connected_agent IS NOT NULL THEN
        -- A repeated poll of an attempt writes nothing, not even the connection: its answer, now.
        SELECT c.answers -> req.attempt_key INTO v_answer FROM dial_calls c
         WHERE c.call_sid = req.call_sid AND c.endpoint = req.endpoint AND c.flow_slug = req.flow_slug;
        IF v_answer IS NOT NULL THEN
            RETURN ARRAY(SELECT jsonb_array_elements_text(v_answer));
        END IF;
        INSERT INTO caller_agents (caller, agent, connected_at) VALUES (req.connected_caller, req.connected_agent, req.at)
        ON CONFLICT (caller, agent) DO UPDATE SET connected_at = GREATEST(caller_agents.connected_at, EXCLUDED.connected_at);
    END IF;

    -- Asynchronous commit for dial state: the commit does not wait for its WAL flush. Safe because
    -- the callback's CDR is committed synchronously after this transaction, before the answer
    -- leaves, and flushing the WAL up to the CDR's commit flushes this transaction's commit too
    -- (the WAL is one sequence). Only when the CDR goes to the spool instead (Postgres failing) and
    -- Postgres then crashes can the last moments (3 × wal_writer_delay) of dial state be lost: the
    -- calls concerned may be offered an agent again or rotate unevenly. Dial state is advisory;
    -- the CDR is the record. Transaction-local: nothing else on the connection is affected.
    PERFORM set_config('synchronous_commit', 'off', true);

    -- Requests of one call take turns from here to the commit. Two-int form: a key space of its own
    -- ('dial'), apart from the migrator's and the retention job's bigint keys. Calls whose sids
    -- share a hash only wait for each other.
    PERFORM pg_advisory_xact_lock(1684627820, hashtext(req.call_sid));

    -- The call as the requests before this one left it (a fresh snapshot, taken after the lock).
    SELECT c."order", c.tried, c.answers -> req.attempt_key INTO v_order, v_tried, v_answer FROM dial_calls c
     WHERE c.call_sid = req.call_sid AND c.endpoint = req.endpoint AND c.flow_slug = req.flow_slug;
    v_known := FOUND;

    IF v_answer IS NOT NULL THEN
        -- A repeated poll of an attempt: the answer it got, and nothing is written.
        RETURN ARRAY(SELECT jsonb_array_elements_text(v_answer));
    ELSIF v_known THEN
        -- A later request of the call: every number tried so far, and the order fixed at its first.
        v_tried := ARRAY(SELECT DISTINCT x FROM unnest(v_tried || req.tried) AS x);
    ELSE
        -- The call's first request fixes its order.
        v_order := req.base;
        v_tried := req.tried;
        IF req.sticky_caller IS NOT NULL THEN
            SELECT ca.agent INTO v_sticky FROM caller_agents ca
             WHERE ca.caller = req.sticky_caller AND ca.agent = ANY (req.base) AND ca.connected_at > req.sticky_since
             ORDER BY ca.connected_at DESC LIMIT 1;
        END IF;
        IF req.arrange = 'least_recent' THEN
            SELECT COALESCE(array_agg(b.n ORDER BY s.last_dialed_at NULLS FIRST, b.i), '{}') INTO v_order
              FROM unnest(req.base) WITH ORDINALITY AS b(n, i)
              LEFT JOIN agent_states s ON s.number = b.n;
        ELSIF req.arrange = 'rotate' THEN
            -- Every new call takes a position, with or without members on duty. A group that is
            -- gone (deleted while a snapshot still named it) starts at its first member.
            SELECT to_regclass(format('%I', 'dial_group_rr_' || g.id)) INTO v_rr FROM dial_groups g WHERE g.slug = req.rr_group;
            IF v_rr IS NULL THEN
                v_shift := 0;
            ELSIF p_preview THEN
                EXECUTE format('SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM %s', v_rr) INTO v_shift;
            ELSE
                v_shift := nextval(v_rr);
            END IF;
            IF cardinality(req.base) > 0 THEN
                v_shift := v_shift % cardinality(req.base);
                v_order := req.base[v_shift + 1 :] || req.base[: v_shift];
            END IF;
        END IF;
        IF v_sticky IS NOT NULL THEN
            v_order := array_prepend(v_sticky, array_remove(v_order, v_sticky));
        END IF;
    END IF;

    -- The answer: the order's numbers that may be offered now, not tried in this call, not busy.
    SELECT COALESCE(array_agg(o.n ORDER BY o.i), '{}') INTO v_numbers
      FROM unnest(v_order) WITH ORDINALITY AS o(n, i)
     WHERE o.n = ANY (req.candidates)
       AND NOT (o.n = ANY (COALESCE(v_tried, '{}')))
       AND NOT EXISTS (SELECT 1 FROM agent_states s WHERE s.number = o.n AND s.busy AND s.busy_since > req.busy_expired);

    -- Stored with the call: the order, the numbers tried and this attempt's answer, in one row.
    IF v_known THEN
        UPDATE dial_calls AS c SET tried = v_tried, answers = c.answers || jsonb_build_object(req.attempt_key, v_numbers)
         WHERE c.call_sid = req.call_sid AND c.endpoint = req.endpoint AND c.flow_slug = req.flow_slug;
    ELSE
        INSERT INTO dial_calls (call_sid, endpoint, flow_slug, "order", tried, answers)
        VALUES (req.call_sid, req.endpoint, req.flow_slug, v_order, req.tried, jsonb_build_object(req.attempt_key, v_numbers));
    END IF;
    RETURN v_numbers;
END
$$;

-- The requests that queued while the previous statement ran, in one statement and one
-- transaction: Postgres starts and commits one transaction, and exoroute wakes one backend, per
-- batch. Each request is answered by dial_answer() exactly as alone, in the order given, so a
-- later request of the same call sees what an earlier one wrote (the same transaction). The calls'
-- advisory locks are held until the batch commits; exoroute runs one batch at a time, so batches
-- of one instance never wait for each other.
--
-- p_requests: a JSON array of dial_request objects (attributes by name; other keys are ignored).
-- Each row answers the request at position `idx` (from 0).
CREATE OR REPLACE FUNCTION dial_answer_batch(p_requests JSON) RETURNS TABLE (idx INT, numbers TEXT[])
LANGUAGE plpgsql
AS $$
DECLARE
    req dial_request;
BEGIN
    idx := -1;
    FOR req IN SELECT * FROM json_populate_recordset(NULL::dial_request, p_requests) LOOP
        idx := idx + 1;
        numbers := dial_answer(req);
        RETURN NEXT;
    END LOOP;
END
$$;

-- A dial group's round-robin position is a sequence, dial_group_rr_<id>: nextval() takes no row
-- lock and leaves no dead tuple, and is shared by every instance. A sequence does not roll back: a
-- call whose transaction fails after taking a position leaves a gap (the rotation skips one member
-- once). Created and dropped with the group, by the trigger dial_groups_rr_sequence (migration
-- 20261124000000_dial_answer_rotation_sequence). DROP first: TRUNCATE … RESTART IDENTITY does not
-- fire DELETE triggers and may hand out the id of a group whose sequence is still there.
CREATE OR REPLACE FUNCTION dial_group_rr_sequence() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format('DROP SEQUENCE IF EXISTS %I', 'dial_group_rr_' || OLD.id);
        RETURN OLD;
    END IF;
    EXECUTE format('DROP SEQUENCE IF EXISTS %I', 'dial_group_rr_' || NEW.id);
    EXECUTE format('CREATE SEQUENCE %I AS bigint MINVALUE 0 START 0', 'dial_group_rr_' || NEW.id);
    RETURN NEW;
END
$$;
