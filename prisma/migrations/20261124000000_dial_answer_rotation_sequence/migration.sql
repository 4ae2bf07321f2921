-- Cheaper dial_answer() (measured in Postgres CPU per Dial Whom callback, 8 concurrent clients,
-- new calls plus one re-fetch in three: about 110 → 90 µs):
--
-- 1. The round-robin position of a group is a sequence, dial_group_rr_<id>, instead of
--    dial_groups.rr_position. nextval() takes no row lock and leaves no dead tuple, where the
--    UPDATE of the group's one row did both for every new call, and queued concurrent first
--    requests on that row. It is still in Postgres, so shared by every instance, and per group.
--    A sequence does not roll back: a call whose transaction fails after taking a position leaves
--    a gap (the rotation skips one member once). A simulation (p_preview) reads the position
--    without taking it.
-- 2. A call's first request inserts its dial_calls row with the order already fixed, instead of
--    inserting it with no order and updating it: requests of one call now take turns on a
--    transaction-level advisory lock on the call (shared memory, nothing written) instead of on
--    the row.
--
-- rr_position is no longer read or advanced. It stays for instances of the previous version
-- during a rolling upgrade (their Prisma client selects it); a later migration can drop it.

-- Created and dropped with the group. DROP first: TRUNCATE … RESTART IDENTITY does not fire
-- DELETE triggers and may hand out the id of a group whose sequence is still there.
CREATE FUNCTION dial_group_rr_sequence() RETURNS trigger
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

CREATE TRIGGER dial_groups_rr_sequence AFTER INSERT OR DELETE ON dial_groups
    FOR EACH ROW EXECUTE FUNCTION dial_group_rr_sequence();

-- Existing groups carry on where their rotation stood.
DO $$
DECLARE
    g RECORD;
BEGIN
    FOR g IN SELECT id, rr_position FROM dial_groups LOOP
        EXECUTE format('CREATE SEQUENCE %I AS bigint MINVALUE 0 START %s', 'dial_group_rr_' || g.id, g.rr_position);
    END LOOP;
END
$$;

-- A new parameter, so a new function: with both, a call naming the old parameters would be ambiguous.
-- Callers of the previous version (rolling upgrade) keep working through p_preview's default.
DROP FUNCTION dial_answer(TEXT, TEXT, TEXT, TEXT, TEXT[], TEXT[], TEXT[], TEXT, TEXT, TEXT, TIMESTAMPTZ, TEXT, TEXT, TIMESTAMPTZ, TIMESTAMPTZ);

-- Dial Whom / Connect in one round trip and one commit (issue 6, bench/README.md): everything a
-- dial callback reads and writes in Postgres, in one function that src/store/dial-state.ts calls
-- once per callback.
--
-- What the call's first request needs from shared state is finished here; the rest of the order
-- comes from src/routing/dial.ts (orderPlan) as p_base, which is the members by priority, or
-- already drawn for `random` / `weighted`:
--   p_arrange 'rotate'        round robin: start p_base at the group's position, which advances
--   p_arrange 'least_recent'  members dialed longest ago first, never dialed before them, ties in
--                             p_base order
--   p_sticky_caller           the caller's last connected agent (after p_sticky_since) goes first
--
-- Concurrency: requests of one call take turns on an advisory lock on the call (held until
-- commit), taken before its dial_calls row is read: the first finds no row, fixes the order, takes
-- the round-robin position and inserts the row; the others wait, and then (each statement of a
-- plpgsql function takes a fresh snapshot) see its order. When an identical poll stored this
-- attempt's answer first, the INSERT of the answer conflicts and the SELECT after it sees the
-- stored one, so every poll of one attempt gets the same answer.
--
-- Lock order within the function: caller_agents row, the call's advisory lock, its dial_calls row.
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
    p_busy_expired     TIMESTAMPTZ,
    -- a simulation, in a transaction that is rolled back: read the round-robin position, do not
    -- take it (a sequence does not roll back)
    p_preview          BOOLEAN DEFAULT false
) RETURNS TEXT[]
LANGUAGE plpgsql
AS $$
DECLARE
    v_numbers TEXT[];
    v_order   TEXT[];
    v_tried   TEXT[];
    v_sticky  TEXT;
    v_shift   BIGINT;
    v_rr      REGCLASS;
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

    -- Requests of one call take turns from here to the commit. Two-int form: a key space of its own
    -- ('dial'), apart from the migrator's and the retention job's bigint keys. Calls whose sids
    -- share a hash only wait for each other.
    PERFORM pg_advisory_xact_lock(1684627820, hashtext(p_call_sid));

    -- A later request of the call: every number tried so far, and the order fixed at its first.
    UPDATE dial_calls AS c SET tried = ARRAY(SELECT DISTINCT x FROM unnest(c.tried || p_tried) AS x)
     WHERE c.call_sid = p_call_sid AND c.endpoint = p_endpoint AND c.flow_slug = p_flow_slug
    RETURNING c."order", c.tried INTO v_order, v_tried;

    IF NOT FOUND THEN
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
        INSERT INTO dial_calls (call_sid, endpoint, flow_slug, "order", tried)
        VALUES (p_call_sid, p_endpoint, p_flow_slug, v_order, p_tried);
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
        -- An identical poll stored its answer first (committed before this call's lock was free).
        SELECT a.numbers INTO v_numbers FROM dial_answers a
         WHERE a.call_sid = p_call_sid AND a.endpoint = p_endpoint AND a.flow_slug = p_flow_slug AND a.attempt_key = p_attempt_key;
    END IF;
    RETURN v_numbers;
END
$$;
