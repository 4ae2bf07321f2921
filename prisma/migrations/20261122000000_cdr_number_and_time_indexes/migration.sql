-- CDR lookups that stay fast at millions of rows (bench/README.md, "CDR queries").
--
-- `number` matches the caller, the called ExoPhone or the dialed agent: without an index on each
-- of the three columns Postgres cannot combine them (BitmapOr) and reads the whole table.
-- A time range is served by a btree on (received_at, id): it finds a range's rows, ids included,
-- without touching the table, and lets src/store/cdrs.ts tell how many rows lie in and after a
-- range. (The BRIN index stays: it is tiny and serves scans that BRIN suits.)
--
-- On a large existing table these builds block CDR inserts while they run. Build them beforehand
-- with `CREATE INDEX CONCURRENTLY IF NOT EXISTS …` (same names and columns); this migration then
-- finds them and does nothing.

-- CreateIndex
CREATE INDEX IF NOT EXISTS "cdrs_call_to_id_idx" ON "cdrs"("call_to", "id");

-- CreateIndex
CREATE INDEX IF NOT EXISTS "cdrs_dial_whom_number_id_idx" ON "cdrs"("dial_whom_number", "id");

-- CreateIndex
CREATE INDEX IF NOT EXISTS "cdrs_received_at_id_idx" ON "cdrs"("received_at", "id");
