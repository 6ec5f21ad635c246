-- Offending rows: processed batches whose staged accepted rows differ from the ledger's rows_accepted,
-- or whose rows read <> accepted + quarantined.
SELECT q.batch_id, q.rows_read, q.rows_accepted, q.rows_quarantined, coalesce(s.n, 0) AS staged_rows
FROM data_quality q
LEFT JOIN (SELECT batch_id, count(*) AS n FROM staged_records GROUP BY batch_id) s USING (batch_id)
WHERE q.status = 'processed'
  AND (coalesce(s.n, 0) <> q.rows_accepted OR q.rows_read <> q.rows_accepted + q.rows_quarantined)
UNION ALL
SELECT s.batch_id, NULL, NULL, NULL, s.n
FROM (SELECT batch_id, count(*) AS n FROM staged_records GROUP BY batch_id) s
ANTI JOIN data_quality q ON q.batch_id = s.batch_id AND q.status = 'processed'
