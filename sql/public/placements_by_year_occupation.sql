-- Open data: placements per occupation (ISCO-08 unit group) and year.
-- page:
-- row: occupation_code
-- col: year
SELECT occupation_code, departure_year::VARCHAR AS year, count(*) AS placements
FROM placements GROUP BY ALL
