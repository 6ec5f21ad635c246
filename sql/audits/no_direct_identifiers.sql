-- Offending rows: a table, view, Parquet or CSV file of the release with a column named like a direct
-- identifier of the schema (nik, full_name, passport_number, birth_date) or an obvious variant.
SELECT r.source, r.column_name
FROM _release_columns r
WHERE lower(r.column_name) IN (SELECT lower(name) FROM _direct_identifiers)
   OR regexp_matches(lower(r.column_name), '(^|_)(nik|ktp|passport|paspor|full_?name|nama|birth_?date|tanggal_lahir|dob)($|_)')
