-- Placements (counted once across agencies) per departure month, by destination, sex, sector, scheme,
-- occupation and province of origin. Answers "placements per destination per month" in one query:
--   SELECT departure_year, departure_month, destination_country, sum(placements)
--   FROM v_monthly_placements GROUP BY ALL ORDER BY ALL;
CREATE VIEW v_monthly_placements AS
SELECT
    p.departure_year,
    p.departure_month,
    make_date(p.departure_year, p.departure_month, 1) AS month_start,
    p.destination_country,
    c.name_id AS destination_name_id,
    c.name_en AS destination_name_en,
    p.sex,
    p.sector,
    p.placement_scheme,
    p.occupation_code,
    p.origin_province_code,
    pr.name_id AS origin_province_name,
    count(*) AS placements
FROM placements p
LEFT JOIN countries c ON c.code = p.destination_country
LEFT JOIN provinces pr ON pr.code = p.origin_province_code
GROUP BY ALL;
COMMENT ON VIEW v_monthly_placements IS 'Penempatan per bulan menurut negara tujuan, jenis kelamin, sektor, skema, jabatan dan provinsi asal / Monthly placements by destination, sex, sector, scheme, occupation and province of origin';
COMMENT ON COLUMN v_monthly_placements.month_start IS 'Hari pertama bulan keberangkatan / First day of the departure month';
COMMENT ON COLUMN v_monthly_placements.destination_name_id IS 'Nama negara tujuan (Indonesia) / Destination country name (Indonesian)';
COMMENT ON COLUMN v_monthly_placements.destination_name_en IS 'Nama negara tujuan (Inggris) / Destination country name (English)';
COMMENT ON COLUMN v_monthly_placements.origin_province_name IS 'Nama provinsi asal / Province of origin name';
COMMENT ON COLUMN v_monthly_placements.placements IS 'Jumlah penempatan (dihitung sekali lintas instansi) / Placements (counted once across agencies)';
