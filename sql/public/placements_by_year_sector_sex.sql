-- Open data: placements per year, sector and sex.
-- page: year
-- row: sector
-- col: sex
SELECT departure_year::VARCHAR AS year, sector, sex, count(*) AS placements
FROM placements GROUP BY ALL
