-- A call's answers kept in its dial_calls row (issue 6, bench/README.md): one row written per dial
-- request instead of two. dial_answer() stored each attempt's answer as a row of dial_answers, with
-- its own primary-key and created_at index entries, and looked it up before anything else; in
-- dial_calls.answers (attempt key -> numbers) the answer is written by the same INSERT or UPDATE
-- that records the call's order and tried numbers, and read with them. Measured in Postgres CPU
-- per Dial Whom request (batches of 16, new calls plus one re-fetch in three): 79 -> 66 µs (median).
--
-- Semantics are unchanged: every poll of one attempt gets the same answer, a repeated poll writes
-- nothing, requests of one call take turns on the call's advisory lock, and the lock order is
-- the caller_agents row, the call's advisory lock, its dial_calls row.
--
-- dial_answers is no longer written. It stays, with what it holds, until the retention job has
-- emptied it (rows older than two days, src/store/retention.ts); a later migration can drop it.
-- Its answers are copied into the calls they belong to, so that calls in progress during the
-- upgrade keep them.

ALTER TABLE dial_calls ADD COLUMN answers JSONB NOT NULL DEFAULT '{}';

-- Nothing writes dial_answers while its rows are copied. A request that the previous body is
-- answering at this moment waits, and stores its answer there after this commits: a repeated poll
-- of that one attempt is answered afresh.
LOCK TABLE dial_answers IN SHARE MODE;
UPDATE dial_calls AS c SET answers = a.answers
  FROM (SELECT call_sid, endpoint, flow_slug, jsonb_object_agg(attempt_key, to_jsonb(COALESCE(numbers, '{}'))) AS answers
          FROM dial_answers GROUP BY call_sid, endpoint, flow_slug) AS a
 WHERE c.call_sid = a.call_sid AND c.endpoint = a.endpoint AND c.flow_slug = a.flow_slug;

-- The same parameters and defaults as before (20261124000000_dial_answer_rotation_sequence, which
-- documents them), so callers of either version call this body.
CREATE OR REPLACE FUNCTION dial_answer(
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
    p_busy_expired     TIMESTAMPTZ,
    -- a simulation, in a transaction that is rolled back: read the round-robin position, do not
    -- take it (a sequence does not roll back)
    p_preview          BOOLEAN DEFAULT false
) RETURNS TEXT[]
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
    IF p_connected_caller IS NOT NULL AND p_connected_agent IS NOT NULL THEN
        -- A repeated poll of an attempt writes nothing, not even the connection: its answer, now.
        SELECT c.answers -> p_attempt_key INTO v_answer FROM dial_calls c
         WHERE c.call_sid = p_call_sid AND c.endpoint = p_endpoint AND c.flow_slug = p_flow_slug;
        IF v_answer IS NOT NULL THEN
            RETURN ARRAY(SELECT jsonb_array_elements_text(v_answer));
        END IF;
        INSERT INTO caller_agents (caller, agent, connected_at) VALUES (p_connected_caller, p_connected_agent, p_at)
        ON CONFLICT (caller, agent) DO UPDATE SET connected_at = GREATEST(caller_agents.connected_at, EXCLUDED.connected_at);
    END IF;

    -- Asynchronous commit for dial state: the commit does not wait for its WAL flush. Safe because
    -- the callback's CDR is committed synchronously after this transaction, before the answer
    -- leaves, and flushing the WAL up to the CDR's commit flushes this transaction's commit too
    -- (the WAL is one sequence). Only when the CDR goes to the spool instead (Postgres failing) and
    -- Postgres then crashes can the last ~0.6 s (3 × wal_writer_delay) of dial state be lost: the
    -- calls concerned may be offered an agent again or rotate unevenly. Dial state is advisory;
    -- the CDR is the record. Transaction-local: nothing else on the connection is affected.
    PERFORM set_config('synchronous_commit', 'off', true);

    -- Requests of one call take turns from here to the commit. Two-int form: a key space of its own
    -- ('dial'), apart from the migrator's and the retention job's bigint keys. Calls whose sids
    -- share a hash only wait for each other.
    PERFORM pg_advisory_xact_lock(1684627820, hashtext(p_call_sid));

    -- The call as the requests before this one left it (a fresh snapshot, taken after the lock).
    SELECT c."order", c.tried, c.answers -> p_attempt_key INTO v_order, v_tried, v_answer FROM dial_calls c
     WHERE c.call_sid = p_call_sid AND c.endpoint = p_endpoint AND c.flow_slug = p_flow_slug;
    v_known := FOUND;

    IF v_answer IS NOT NULL THEN
        -- A repeated poll of an attempt: the answer it got, and nothing is written.
        RETURN ARRAY(SELECT jsonb_array_elements_text(v_answer));
    ELSIF v_known THEN
        -- A later request of the call: every number tried so far, and the order fixed at its first.
        v_tried := ARRAY(SELECT DISTINCT x FROM unnest(v_tried || p_tried) AS x);
    ELSE
        -- The call's first request fixes its order.
        v_order := p_base;
        v_tried := p_tried;
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
            -- Every new call takes a position, with or without members on duty. A group that is
            -- gone (deleted while a snapshot still named it) starts at its first member.
            SELECT to_regclass(format('%I', 'dial_group_rr_' || g.id)) INTO v_rr FROM dial_groups g WHERE g.slug = p_rr_group;
            IF v_rr IS NULL THEN
                v_shift := 0;
            ELSIF p_preview THEN
                EXECUTE format('SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM %s', v_rr) INTO v_shift;
            ELSE
                v_shift := nextval(v_rr);
            END IF;
            IF cardinality(p_base) > 0 THEN
                v_shift := v_shift % cardinality(p_base);
                v_order := p_base[v_shift + 1 :] || p_base[: v_shift];
            END IF;
        END IF;
        IF v_sticky IS NOT NULL THEN
            v_order := array_prepend(v_sticky, array_remove(v_order, v_sticky));
        END IF;
    END IF;

    -- The answer: the order's numbers that may be offered now, not tried in this call, not busy.
    SELECT COALESCE(array_agg(o.n ORDER BY o.i), '{}') INTO v_numbers
      FROM unnest(v_order) WITH ORDINALITY AS o(n, i)
     WHERE o.n = ANY (p_candidates)
       AND NOT (o.n = ANY (COALESCE(v_tried, '{}')))
       AND NOT EXISTS (SELECT 1 FROM agent_states s WHERE s.number = o.n AND s.busy AND s.busy_since > p_busy_expired);

    -- Stored with the call: the order, the numbers tried and this attempt's answer, in one row.
    IF v_known THEN
        UPDATE dial_calls AS c SET tried = v_tried, answers = c.answers || jsonb_build_object(p_attempt_key, v_numbers)
         WHERE c.call_sid = p_call_sid AND c.endpoint = p_endpoint AND c.flow_slug = p_flow_slug;
    ELSE
        INSERT INTO dial_calls (call_sid, endpoint, flow_slug, "order", tried, answers)
        VALUES (p_call_sid, p_endpoint, p_flow_slug, v_order, p_tried, jsonb_build_object(p_attempt_key, v_numbers));
    END IF;
    RETURN v_numbers;
END
$$;
