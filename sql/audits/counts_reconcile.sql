-- Offending rows: counts that do not reconcile.
--  records <= sum of rows_accepted of processed batches; records = distinct staged record keys;
--  every record belongs to exactly one placement.
WITH c AS (
    SELECT
        (SELECT count(*) FROM placement_records) AS records,
        (SELECT coalesce(sum(rows_accepted), 0) FROM data_quality WHERE status = 'processed') AS accepted,
        (SELECT count(DISTINCT record_key) FROM staged_records) AS staged_keys,
        (SELECT count(*) FROM record_placement) AS linked,
        (SELECT count(DISTINCT record_key) FROM record_placement) AS linked_keys,
        (SELECT coalesce(sum(n_records), 0) FROM placements) AS placement_members
)
SELECT 'records > rows_accepted' AS problem, records, accepted AS other FROM c WHERE records > accepted
UNION ALL SELECT 'records <> distinct staged record_keys', records, staged_keys FROM c WHERE records <> staged_keys
UNION ALL SELECT 'records <> records linked to a placement', records, linked FROM c WHERE records <> linked
UNION ALL SELECT 'record linked to several placements', linked, linked_keys FROM c WHERE linked <> linked_keys
UNION ALL SELECT 'placement members <> records', records, placement_members FROM c WHERE records <> placement_members
