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
COMMENT ON COLUMN v_agency_reconciliation.rows_reported IS 'Catatan yang dilaporkan instansi pada bulan itu / Records the agency reported that month';
COMMENT ON COLUMN v_agency_reconciliation.matched_in_other_agencies IS 'Catatan yang penempatannya juga dilaporkan instansi lain / Records whose placement another agency also reported';
COMMENT ON COLUMN v_agency_reconciliation.unique_to_agency IS 'Catatan yang penempatannya hanya dilaporkan instansi ini / Records whose placement only this agency reported';
COMMENT ON COLUMN v_agency_reconciliation.share_matched IS 'Proporsi catatan yang cocok di instansi lain (0-1) / Share of records matched in other agencies (0-1)';
