-- dbsync._ddl_settings() returns jsonb
--   The settings of this session that decide how DDL's literals are read and how the
--   values it converts are written as text: '01/02/2024' is the 1st of February
--   under DateStyle DMY, 'a\\b' is three characters with standard_conforming_strings
--   off, '2024-01-01 00:00' another instant in another TimeZone. execute_ddl reads
--   them before it runs the DDL (a SET LOCAL at the DDL's end must not count) and
--   the targets run the DDL under them (src/target/apply.ts runDdl), not under the
--   apply session's pinned ones (src/db.ts PINNED).
--   Left out: the locale settings lc_numeric and lc_time (a locale the target lacks
--   would stop every execute_ddl there; README Limits).
--   Returns: {name: value}. Calls: nothing. Tables touched: none.
--   Parameters: none.
create or replace function dbsync._ddl_settings() returns jsonb
language sql stable set search_path = pg_catalog, pg_temp as $$
    select jsonb_object_agg(n, current_setting(n))
    from unnest(array['DateStyle', 'IntervalStyle', 'TimeZone', 'timezone_abbreviations',
                      'extra_float_digits', 'bytea_output', 'lc_monetary',
                      'standard_conforming_strings', 'backslash_quote', 'array_nulls',
                      'xmloption', 'xmlbinary', 'transform_null_equals',
                      'quote_all_identifiers', 'default_text_search_config',
                      'check_function_bodies']) n
$$;
