-- CreateTable
CREATE TABLE "vip_lists" (
    "id" SERIAL NOT NULL,
    "slug" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "vip_lists_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "vip_entries" (
    "id" SERIAL NOT NULL,
    "list_id" INTEGER NOT NULL,
    "number" TEXT NOT NULL,
    "name" TEXT,
    "tier" TEXT,
    "note" TEXT,
    "expires_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "vip_entries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "schedules" (
    "id" SERIAL NOT NULL,
    "slug" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "timezone" TEXT NOT NULL,
    "weekly" JSONB NOT NULL,
    "exceptions" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "schedules_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "dial_groups" (
    "id" SERIAL NOT NULL,
    "slug" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "strategy" TEXT NOT NULL,
    "sticky" JSONB,
    "connect" JSONB NOT NULL,
    "rr_position" BIGINT NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "dial_groups_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "dial_group_members" (
    "id" SERIAL NOT NULL,
    "group_id" INTEGER NOT NULL,
    "number" TEXT NOT NULL,
    "name" TEXT,
    "priority" INTEGER NOT NULL DEFAULT 0,
    "weight" INTEGER NOT NULL DEFAULT 1,
    "active" BOOLEAN NOT NULL DEFAULT true,
    "schedule_slug" TEXT,

    CONSTRAINT "dial_group_members_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "flows" (
    "id" SERIAL NOT NULL,
    "slug" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "mode" TEXT NOT NULL DEFAULT 'sync',
    "rules" JSONB NOT NULL,
    "otherwise" JSONB NOT NULL,
    "on_error" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "flows_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "cdrs" (
    "id" BIGSERIAL NOT NULL,
    "received_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "endpoint" TEXT NOT NULL,
    "flow_slug" TEXT,
    "call_sid" TEXT,
    "call_from" TEXT,
    "call_from_raw" TEXT,
    "call_to" TEXT,
    "call_to_raw" TEXT,
    "direction" TEXT,
    "call_status" TEXT,
    "call_type" TEXT,
    "digits" TEXT,
    "custom_field" TEXT,
    "dial_call_status" TEXT,
    "dial_whom_number" TEXT,
    "legs" JSONB,
    "params" JSONB NOT NULL,
    "decision" JSONB,
    "matched_rule" TEXT,
    "outcome" TEXT NOT NULL,
    "reason" TEXT,
    "http_status" INTEGER NOT NULL,
    "response_body" TEXT,
    "handling_ms" DOUBLE PRECISION NOT NULL,
    "attempt" INTEGER NOT NULL DEFAULT 1,
    "idempotency_key" TEXT NOT NULL,

    CONSTRAINT "cdrs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMPTZ(3),
    "last_used_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_entries" (
    "id" BIGSERIAL NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "api_key_id" UUID,
    "action" TEXT NOT NULL,
    "entity" TEXT NOT NULL,
    "entity_id" TEXT NOT NULL,
    "before" JSONB,
    "after" JSONB,

    CONSTRAINT "audit_entries_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "vip_lists_slug_key" ON "vip_lists"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "vip_entries_list_id_number_key" ON "vip_entries"("list_id", "number");

-- CreateIndex
CREATE UNIQUE INDEX "schedules_slug_key" ON "schedules"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "dial_groups_slug_key" ON "dial_groups"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "dial_group_members_group_id_number_key" ON "dial_group_members"("group_id", "number");

-- CreateIndex
CREATE UNIQUE INDEX "flows_slug_key" ON "flows"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "cdrs_idempotency_key_key" ON "cdrs"("idempotency_key");

-- CreateIndex
CREATE INDEX "cdrs_call_sid_id_idx" ON "cdrs"("call_sid", "id");

-- CreateIndex
CREATE INDEX "cdrs_call_from_id_idx" ON "cdrs"("call_from", "id");

-- CreateIndex
CREATE INDEX "cdrs_flow_slug_id_idx" ON "cdrs"("flow_slug", "id");

-- CreateIndex
CREATE INDEX "cdrs_received_at_idx" ON "cdrs" USING BRIN ("received_at");

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_hash_key" ON "api_keys"("hash");

-- CreateIndex
CREATE INDEX "audit_entries_at_idx" ON "audit_entries"("at" DESC);

-- AddForeignKey
ALTER TABLE "vip_entries" ADD CONSTRAINT "vip_entries_list_id_fkey" FOREIGN KEY ("list_id") REFERENCES "vip_lists"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "dial_group_members" ADD CONSTRAINT "dial_group_members_group_id_fkey" FOREIGN KEY ("group_id") REFERENCES "dial_groups"("id") ON DELETE CASCADE ON UPDATE CASCADE;
