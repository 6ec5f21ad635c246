-- Offending rows: counts that do not reconcile.
--  records <= sum of rows_accepted of processed batches; records = distinct staged record keys;
--  every record belongs to exactly one placement, and placements count each record once.
WITH staged_dups AS (
    SELECT record_key, count(*) AS n FROM staged_records
    WHERE hash(record_key) IN (SELECT hash(record_key) FROM staged_records GROUP BY 1 HAVING count(*) > 1)
    GROUP BY record_key HAVING count(*) > 1
), c AS (
    SELECT
        (SELECT count(*) FROM placement_records) AS records,
        (SELECT coalesce(sum(rows_accepted), 0) FROM data_quality WHERE status = 'processed') AS accepted,
        (SELECT count(*) FROM staged_records) - (SELECT coalesce(sum(n - 1), 0) FROM staged_dups) AS staged_keys,
        (SELECT count(*) FROM record_placement) AS linked,
        (SELECT count(*) FROM record_placement SEMI JOIN placement_records USING (record_key)) AS linked_known,
        (SELECT coalesce(sum(n_records), 0) FROM placements) AS placement_members
)
SELECT 'records > rows_accepted' AS problem, records, accepted AS other FROM c WHERE records > accepted
UNION ALL SELECT 'records <> distinct staged record_keys', records, staged_keys FROM c WHERE records <> staged_keys
UNION ALL SELECT 'records <> records linked to a placement', records, linked FROM c WHERE records <> linked
UNION ALL SELECT 'links to unknown records', linked, linked_known FROM c WHERE linked <> linked_known
UNION ALL SELECT 'placement members <> records', records, placement_members FROM c WHERE records <> placement_members
