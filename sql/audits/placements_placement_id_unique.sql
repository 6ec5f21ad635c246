-- Offending rows: placement ids that appear more than once.
SELECT placement_id, count(*) AS n FROM placements GROUP BY placement_id HAVING count(*) > 1
