-- Open data: placements (counted once) per departure month and destination country.
-- page: year
-- row: destination_country
-- col: month
SELECT departure_year::VARCHAR AS year, destination_country, lpad(departure_month::VARCHAR, 2, '0') AS month,
       count(*) AS placements
FROM placements GROUP BY ALL
