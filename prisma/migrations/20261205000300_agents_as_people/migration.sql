-- Agents as people (issue 26): what every instance must know about an agent beyond busy/free, and
-- a schedule's emergency override.
--
-- agent_availability: away/available as set through the admin API or by the agent's own phone
-- call. Routing data like the rules: loaded into every instance's snapshot and reloaded on NOTIFY,
-- so the dial path filters away agents without a query. A row stays after the agent is set back
-- to available, to say who did it and when.
CREATE TABLE "agent_availability" (
    "number" TEXT NOT NULL,
    -- 'available' | 'away'
    "status" TEXT NOT NULL,
    "reason" TEXT,
    -- away until then (NULL: until set back)
    "until" TIMESTAMPTZ(3),
    -- 'api-key:<id>' or 'phone:<CallSid>'
    "set_by" TEXT NOT NULL,
    "set_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "agent_availability_pkey" PRIMARY KEY ("number")
);

-- Per-call facts next to busy/free, written by the dial path in the same statement as today:
-- the call an agent is on, wrap-up after it, and consecutive missed offers with the pause they
-- caused. Existing rows get no wrap-up, no misses and no pause.
ALTER TABLE "agent_states"
    ADD COLUMN "busy_call_sid" TEXT,
    ADD COLUMN "wrap_up_until" TIMESTAMPTZ(3),
    ADD COLUMN "missed_offers" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "paused_until" TIMESTAMPTZ(3),
    ADD COLUMN "paused_reason" TEXT;

-- One row per agent offered in a call (an agent is offered at most once per call, so re-fetches
-- and dial events that report the same attempt land on one row): an agent's recent offers, and
-- today's offers, answers and misses, are read from here.
CREATE TABLE "agent_offers" (
    "call_sid" TEXT NOT NULL,
    "number" TEXT NOT NULL,
    "group_slug" TEXT,
    "offered_at" TIMESTAMPTZ(3) NOT NULL,
    -- NULL while ringing or on the call; 'answered', 'no-answer', 'busy', 'failed' once known
    "outcome" TEXT,
    "ended_at" TIMESTAMPTZ(3),

    CONSTRAINT "agent_offers_pkey" PRIMARY KEY ("call_sid", "number")
);
CREATE INDEX "agent_offers_number_offered_at_idx" ON "agent_offers"("number", "offered_at" DESC);
CREATE INDEX "agent_offers_offered_at_idx" ON "agent_offers"("offered_at");

-- A schedule's override (PUT /admin/schedules/:slug/override): open or closed, with a reason,
-- ahead of weekly windows and dated exceptions until override_until (NULL: until deleted).
-- override_open NULL: no override.
ALTER TABLE "schedules"
    ADD COLUMN "override_open" BOOLEAN,
    ADD COLUMN "override_reason" TEXT,
    ADD COLUMN "override_until" TIMESTAMPTZ(3),
    ADD COLUMN "override_set_at" TIMESTAMPTZ(3);

-- Per dial group: wrap-up after a call, and how many consecutive missed offers pause an agent
-- for how long (0: never).
ALTER TABLE "dial_groups"
    ADD COLUMN "wrap_up_seconds" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "max_missed_offers" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "missed_pause_seconds" INTEGER NOT NULL DEFAULT 300;
