-- Placements that only one agency reported (candidates for follow-up with the other agencies).
--   SELECT source_agency, count(*) FROM v_single_source_placements GROUP BY ALL;
CREATE VIEW v_single_source_placements AS
SELECT
    placement_id,
    source_agencies[1] AS source_agency,
    destination_country,
    departure_date,
    departure_year,
    departure_month,
    sex,
    sector,
    placement_scheme,
    n_records
FROM placements
WHERE n_sources = 1;
COMMENT ON VIEW v_single_source_placements IS 'Penempatan yang hanya dilaporkan satu instansi / Placements reported by one agency only';
