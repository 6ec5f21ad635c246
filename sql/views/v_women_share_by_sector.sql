-- Share of women among placements, per year and sector (sex known only).
--   SELECT * FROM v_women_share_by_sector WHERE departure_year = 2024;
CREATE VIEW v_women_share_by_sector AS
SELECT
    departure_year,
    coalesce(sector, 'UNKNOWN') AS sector,
    count(*) FILTER (WHERE sex IN ('F', 'M')) AS placements,
    count(*) FILTER (WHERE sex = 'F') AS women,
    round(count(*) FILTER (WHERE sex = 'F') / nullif(count(*) FILTER (WHERE sex IN ('F', 'M')), 0), 4)
        AS share_women
FROM placements
GROUP BY ALL;
COMMENT ON VIEW v_women_share_by_sector IS 'Proporsi perempuan per tahun dan sektor / Share of women by year and sector';
COMMENT ON COLUMN v_women_share_by_sector.placements IS 'Penempatan dengan jenis kelamin diketahui / Placements whose sex is known';
COMMENT ON COLUMN v_women_share_by_sector.women IS 'Penempatan perempuan / Placements of women';
COMMENT ON COLUMN v_women_share_by_sector.share_women IS 'Proporsi perempuan (0-1) / Share of women (0-1)';
