-- Cross-agency reconciliation, per agency and departure month: records the agency reported, how many of
-- them other agencies also reported (same placement), and how many only this agency reported.
CREATE VIEW v_agency_reconciliation AS
SELECT
    r.source_agency AS agency,
    r.departure_year,
    r.departure_month,
    count(*) AS rows_reported,
    count(*) FILTER (WHERE p.n_sources > 1) AS matched_in_other_agencies,
    count(*) FILTER (WHERE p.n_sources = 1) AS unique_to_agency,
    round(count(*) FILTER (WHERE p.n_sources > 1) / count(*), 4) AS share_matched
FROM placement_records r
JOIN record_placement l USING (record_key)
JOIN placements p USING (placement_id)
GROUP BY ALL;
COMMENT ON VIEW v_agency_reconciliation IS 'Rekonsiliasi antar instansi per instansi dan bulan: dilaporkan, cocok di instansi lain, hanya di instansi ini / Cross-agency reconciliation per agency and month: reported, matched in other agencies, unique to this agency';
