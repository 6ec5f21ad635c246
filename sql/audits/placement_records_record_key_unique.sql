-- Offending rows: record keys that appear more than once after supersession.
-- (An integer hash narrows the candidates; the exact check runs on those only.)
SELECT record_key, count(*) AS n
FROM placement_records
WHERE hash(record_key) IN (SELECT hash(record_key) FROM placement_records GROUP BY 1 HAVING count(*) > 1)
GROUP BY record_key HAVING count(*) > 1
