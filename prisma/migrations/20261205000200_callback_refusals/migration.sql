-- Refused callbacks past the per-address bound (src/store/refusals.ts) are not stored one by one:
-- each instance counts them in memory and adds its counts here, one row per source address and
-- minute, every few seconds and at shutdown. `address` is the source address (an IPv6 address's
-- /64 prefix), or 'other' for the addresses beyond the first ones of a minute.

-- CreateTable
CREATE TABLE IF NOT EXISTS "callback_refusals" (
    "id" BIGSERIAL NOT NULL,
    "minute" TIMESTAMPTZ(3) NOT NULL,
    "address" TEXT NOT NULL,
    "refusals" INTEGER NOT NULL DEFAULT 0,
    "wrong_secret" INTEGER NOT NULL DEFAULT 0,
    "outside_cidrs" INTEGER NOT NULL DEFAULT 0,
    "stored_as_cdrs" INTEGER NOT NULL DEFAULT 0,
    "throttled" INTEGER NOT NULL DEFAULT 0,
    "first_at" TIMESTAMPTZ(3) NOT NULL,
    "last_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "callback_refusals_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX IF NOT EXISTS "callback_refusals_minute_address_key" ON "callback_refusals"("minute", "address");

-- CreateIndex
CREATE INDEX IF NOT EXISTS "callback_refusals_address_minute_idx" ON "callback_refusals"("address", "minute");
