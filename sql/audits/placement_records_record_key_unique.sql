-- Offending rows: record keys that appear more than once after supersession.
SELECT record_key, count(*) AS n FROM placement_records GROUP BY record_key HAVING count(*) > 1
