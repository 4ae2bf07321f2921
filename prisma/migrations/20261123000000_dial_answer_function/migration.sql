-- Dial Whom / Connect in one round trip and one commit (issue 6, bench/README.md): everything a
-- dial callback reads and writes in Postgres, in one function that src/store/dial-state.ts calls
-- once per callback. It replaces seven separate statements (the answer already given, the
-- caller–agent connection, the numbers tried, agent facts, the round-robin position, the sticky
-- agent, fixing the order, storing the answer), each of which was a transaction and a WAL flush.
--
-- What the call's first request needs from shared state is finished here; the rest of the order
-- comes from src/routing/dial.ts (orderPlan) as p_base, which is the members by priority, or
-- already drawn for `random` / `weighted`:
--   p_arrange 'rotate'        round robin: start p_base at the group's position, which advances
--   p_arrange 'least_recent'  members dialed longest ago first, never dialed before them, ties in
--                             p_base order
--   p_sticky_caller           the caller's last connected agent (after p_sticky_since) goes first
--
-- Concurrency: the call's dial_calls row is written (and so locked until commit) before its order
-- is read, so requests for one call take their turn: the first fixes the order and takes the
-- round-robin position, the others see its order. Each statement of a plpgsql function takes a
-- fresh snapshot, so when an identical poll stored this attempt's answer first, the SELECT after
-- the conflicting INSERT sees it, and every poll of one attempt gets the same answer.
--
-- Lock order within the function: caller_agents row, dial_calls row, dial_groups row (taken last
-- and only for a call's first request; held until the commit, which does not wait for a flush).
CREATE FUNCTION dial_answer(
    p_call_sid         TEXT,
    p_endpoint         TEXT,
    p_flow_slug        TEXT,
    -- the attempt: numbers the request says were tried and the DialCallStatus
    p_attempt_key      TEXT,
    -- numbers the request says were tried (DialWhomNumber, Legs)
    p_tried            TEXT[],
    -- numbers that may be offered now (active members in their shift, or the flow's numbers)
    p_candidates       TEXT[],
    -- the order to fix at the call's first request, before p_arrange and sticky
    p_base             TEXT[],
    -- 'as_is' | 'rotate' | 'least_recent'
    p_arrange          TEXT,
    -- 'rotate': the dial group whose round-robin position is taken
    p_rr_group         TEXT,
    -- sticky groups: the caller, and how far back a connection counts
    p_sticky_caller    TEXT,
    p_sticky_since     TIMESTAMPTZ,
    -- DialCallStatus=completed: the caller was connected to this agent
    p_connected_caller TEXT,
    p_connected_agent  TEXT,
    p_at               TIMESTAMPTZ,
    -- an agent reported busy before this (AGENT_BUSY_TTL_SECONDS ago) counts as free
    p_busy_expired     TIMESTAMPTZ
) RETURNS TEXT[]
LANGUAGE plpgsql
AS $$
DECLARE
    v_numbers TEXT[];
    v_order   TEXT[];
    v_tried   TEXT[];
    v_sticky  TEXT;
    v_shift   BIGINT;
BEGIN
    -- A repeated poll of an attempt: the answer it got, and nothing is written.
    SELECT a.numbers INTO v_numbers FROM dial_answers a
     WHERE a.call_sid = p_call_sid AND a.endpoint = p_endpoint AND a.flow_slug = p_flow_slug AND a.attempt_key = p_attempt_key;
    IF FOUND THEN
        RETURN v_numbers;
    END IF;

    -- Asynchronous commit for dial state: the commit does not wait for its WAL flush. Safe because
    -- the callback's CDR is committed synchronously after this transaction, before the answer
    -- leaves, and flushing the WAL up to the CDR's commit flushes this transaction's commit too
    -- (the WAL is one sequence). Only when the CDR goes to the spool instead (Postgres failing) and
    -- Postgres then crashes can the last ~0.6 s (3 × wal_writer_delay) of dial state be lost: the
    -- calls concerned may be offered an agent again or rotate unevenly. Dial state is advisory;
    -- the CDR is the record. Transaction-local: nothing else on the connection is affected.
    PERFORM set_config('synchronous_commit', 'off', true);

    IF p_connected_caller IS NOT NULL AND p_connected_agent IS NOT NULL THEN
        INSERT INTO caller_agents (caller, agent, connected_at) VALUES (p_connected_caller, p_connected_agent, p_at)
        ON CONFLICT (caller, agent) DO UPDATE SET connected_at = GREATEST(caller_agents.connected_at, EXCLUDED.connected_at);
    END IF;

    -- The call: every number tried so far, and the order fixed at its first request (NULL if this
    -- is the first). From here the row is locked until commit.
    INSERT INTO dial_calls AS c (call_sid, endpoint, flow_slug, "order", tried)
    VALUES (p_call_sid, p_endpoint, p_flow_slug, NULL, p_tried)
    ON CONFLICT (call_sid, endpoint, flow_slug) DO UPDATE
       SET tried = ARRAY(SELECT DISTINCT x FROM unnest(c.tried || EXCLUDED.tried) AS x)
    RETURNING c."order", c.tried INTO v_order, v_tried;

    IF v_order IS NULL THEN
        v_order := p_base;
        IF p_sticky_caller IS NOT NULL THEN
            SELECT ca.agent INTO v_sticky FROM caller_agents ca
             WHERE ca.caller = p_sticky_caller AND ca.agent = ANY (p_base) AND ca.connected_at > p_sticky_since
             ORDER BY ca.connected_at DESC LIMIT 1;
        END IF;
        IF p_arrange = 'least_recent' THEN
            SELECT COALESCE(array_agg(b.n ORDER BY s.last_dialed_at NULLS FIRST, b.i), '{}') INTO v_order
              FROM unnest(p_base) WITH ORDINALITY AS b(n, i)
              LEFT JOIN agent_states s ON s.number = b.n;
        ELSIF p_arrange = 'rotate' THEN
            -- Every new call takes a position, with or without members on duty.
            UPDATE dial_groups SET rr_position = rr_position + 1 WHERE slug = p_rr_group
            RETURNING rr_position - 1 INTO v_shift;
            IF cardinality(p_base) > 0 THEN
                v_shift := COALESCE(v_shift, 0) % cardinality(p_base);
                v_order := p_base[v_shift + 1 :] || p_base[: v_shift];
            END IF;
        END IF;
        IF v_sticky IS NOT NULL THEN
            v_order := array_prepend(v_sticky, array_remove(v_order, v_sticky));
        END IF;
        UPDATE dial_calls SET "order" = v_order
         WHERE call_sid = p_call_sid AND endpoint = p_endpoint AND flow_slug = p_flow_slug;
    END IF;

    -- The answer: the order's numbers that may be offered now, not tried in this call, not busy.
    SELECT COALESCE(array_agg(o.n ORDER BY o.i), '{}') INTO v_numbers
      FROM unnest(v_order) WITH ORDINALITY AS o(n, i)
     WHERE o.n = ANY (p_candidates)
       AND NOT (o.n = ANY (COALESCE(v_tried, '{}')))
       AND NOT EXISTS (SELECT 1 FROM agent_states s WHERE s.number = o.n AND s.busy AND s.busy_since > p_busy_expired);

    INSERT INTO dial_answers (call_sid, endpoint, flow_slug, attempt_key, numbers)
    VALUES (p_call_sid, p_endpoint, p_flow_slug, p_attempt_key, v_numbers)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        -- An identical poll stored its answer first (committed before this call's row was free).
        SELECT a.numbers INTO v_numbers FROM dial_answers a
         WHERE a.call_sid = p_call_sid AND a.endpoint = p_endpoint AND a.flow_slug = p_flow_slug AND a.attempt_key = p_attempt_key;
    END IF;
    RETURN v_numbers;
END
$$;
