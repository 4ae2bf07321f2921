-- The audit entries of one entity by time: a phone availability change looks up the calling agent's
-- changes of the last day (is this request a repeat of one call's?) under the row lock, which the
-- index on `at` alone made a read of every entry of that day.
CREATE INDEX IF NOT EXISTS "audit_entries_entity_id_at_idx" ON "audit_entries"("entity_id", "at");
