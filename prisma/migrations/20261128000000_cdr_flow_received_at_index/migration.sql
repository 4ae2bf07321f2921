-- CDR lists are ordered by (received_at DESC, id DESC) (src/store/cdrs.ts). A flow filter with a
-- time range (or a flow with few CDRs) then walks this index backwards and stops after a page; the
-- (flow_slug, id) index it replaces served the former order by id.
--
-- On a large existing table the build blocks CDR inserts while it runs. Build it beforehand with
-- `CREATE INDEX CONCURRENTLY IF NOT EXISTS "cdrs_flow_slug_received_at_id_idx" ON "cdrs"("flow_slug",
-- "received_at", "id")`; this migration then finds it and only drops the old index.

-- CreateIndex
CREATE INDEX IF NOT EXISTS "cdrs_flow_slug_received_at_id_idx" ON "cdrs"("flow_slug", "received_at", "id");

-- DropIndex
DROP INDEX IF EXISTS "cdrs_flow_slug_id_idx";
