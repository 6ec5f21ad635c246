-- Offending rows: placement ids that appear more than once, in placements or in the record links.
SELECT 'placements' AS in_table, placement_id, count(*) AS n
FROM placements
WHERE hash(placement_id) IN (SELECT hash(placement_id) FROM placements GROUP BY 1 HAVING count(*) > 1)
GROUP BY placement_id HAVING count(*) > 1
UNION ALL
SELECT 'record_placement', l.placement_id, 0 FROM record_placement l ANTI JOIN placements p USING (placement_id)
