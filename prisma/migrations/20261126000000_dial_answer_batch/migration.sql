-- Dial Whom / Connect requests answered in batches (issue 6, bench/README.md). One statement, one
-- transaction and one round trip for every request queued while the previous batch ran, instead
-- of one each per request: Postgres starts and commits one transaction, and exoroute wakes one
-- backend, per batch.
--
-- Each request is answered by dial_answer() exactly as alone, in the order given, so a later
-- request of the same call in the batch sees what an earlier one wrote (the same transaction).
-- The call's advisory lock is held until the batch commits; exoroute runs one batch at a time, so
-- batches of one instance never wait for each other.
--
-- p_requests: a JSON array of objects whose keys are dial_answer()'s parameters without the p_
-- prefix, plus `idx`, which the row answering the request carries back.
CREATE FUNCTION dial_answer_batch(p_requests JSON) RETURNS TABLE (idx INT, numbers TEXT[])
LANGUAGE plpgsql
AS $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN
        SELECT * FROM json_to_recordset(p_requests) AS x(
            idx INT, call_sid TEXT, endpoint TEXT, flow_slug TEXT, attempt_key TEXT, tried TEXT[],
            candidates TEXT[], base TEXT[], arrange TEXT, rr_group TEXT, sticky_caller TEXT,
            sticky_since TIMESTAMPTZ, connected_caller TEXT, connected_agent TEXT, at TIMESTAMPTZ,
            busy_expired TIMESTAMPTZ)
    LOOP
        idx := r.idx;
        numbers := dial_answer(
            p_call_sid => r.call_sid, p_endpoint => r.endpoint, p_flow_slug => r.flow_slug,
            p_attempt_key => r.attempt_key, p_tried => r.tried, p_candidates => r.candidates,
            p_base => r.base, p_arrange => r.arrange, p_rr_group => r.rr_group,
            p_sticky_caller => r.sticky_caller, p_sticky_since => r.sticky_since,
            p_connected_caller => r.connected_caller, p_connected_agent => r.connected_agent,
            p_at => r.at, p_busy_expired => r.busy_expired);
        RETURN NEXT;
    END LOOP;
END
$$;
