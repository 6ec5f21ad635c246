-- Open data: placements per year, province of origin and sex.
-- page: year
-- row: origin_province_code
-- col: sex
SELECT departure_year::VARCHAR AS year, origin_province_code, sex, count(*) AS placements
FROM placements GROUP BY ALL
