-- CDR JSON columns as json, not jsonb (issue 6). Nothing queries inside them: they are stored,
-- answered and exported as they came. jsonb parses every document into its binary form on insert
-- and prints it back on export; json only checks the text and keeps it as sent (key order
-- included). Measured: 41 instead of 52 µs of Postgres CPU per CDR (COPY batches of 22, medians of
-- 5 alternating rounds; bench/README.md).
--
-- This rewrites the table under an exclusive lock: on a large CDR table, run it in a maintenance
-- window (or before the table grows; exoroute applies it at its first start after the upgrade).
ALTER TABLE "cdrs"
    ALTER COLUMN "legs" TYPE JSON USING "legs"::json,
    ALTER COLUMN "params" TYPE JSON USING "params"::json,
    ALTER COLUMN "decision" TYPE JSON USING "decision"::json;
