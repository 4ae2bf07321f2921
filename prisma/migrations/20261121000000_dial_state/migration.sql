-- CreateTable
CREATE TABLE "agent_states" (
    "number" TEXT NOT NULL,
    "busy" BOOLEAN NOT NULL DEFAULT false,
    "busy_since" TIMESTAMPTZ(3),
    "last_dialed_at" TIMESTAMPTZ(3),
    "last_connected_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "agent_states_pkey" PRIMARY KEY ("number")
);

-- CreateTable
CREATE TABLE "caller_agents" (
    "caller" TEXT NOT NULL,
    "agent" TEXT NOT NULL,
    "connected_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "caller_agents_pkey" PRIMARY KEY ("caller","agent")
);

-- CreateTable
CREATE TABLE "dial_calls" (
    "call_sid" TEXT NOT NULL,
    "endpoint" TEXT NOT NULL,
    "flow_slug" TEXT NOT NULL,
    "order" TEXT[],
    "tried" TEXT[],
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "dial_calls_pkey" PRIMARY KEY ("call_sid","endpoint","flow_slug")
);

-- CreateTable
CREATE TABLE "dial_answers" (
    "call_sid" TEXT NOT NULL,
    "endpoint" TEXT NOT NULL,
    "flow_slug" TEXT NOT NULL,
    "attempt_key" TEXT NOT NULL,
    "numbers" TEXT[],
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "dial_answers_pkey" PRIMARY KEY ("call_sid","endpoint","flow_slug","attempt_key")
);

-- CreateIndex
CREATE INDEX "caller_agents_caller_connected_at_idx" ON "caller_agents"("caller", "connected_at" DESC);

-- CreateIndex
CREATE INDEX "dial_calls_created_at_idx" ON "dial_calls"("created_at");

-- CreateIndex
CREATE INDEX "dial_answers_created_at_idx" ON "dial_answers"("created_at");
