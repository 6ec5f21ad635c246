-- Offending rows: a staged batch that carries the same record key twice (staging must have quarantined it;
-- supersession within one file would otherwise pick a version arbitrarily).
SELECT batch_id, record_key, count(*) AS n
FROM staged_records
WHERE hash(batch_id, record_key) IN (
    SELECT hash(batch_id, record_key) FROM staged_records GROUP BY 1 HAVING count(*) > 1)
GROUP BY ALL HAVING count(*) > 1
