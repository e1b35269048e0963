-- dbsync._pin_output() returns text[]
--   Called by capture triggers when the writing session has a setting under which
--   some value's output text would not read back as the same value elsewhere
--   (DateStyle other than ISO, IntervalStyle other than postgres,
--   extra_float_digits below 1, lc_monetary other than C for money). Sets them,
--   transaction-local, to dbsync's and returns the previous values for
--   _restore_output. Capture does this by hand rather than with SET clauses on the
--   trigger function because those cost every captured statement some 50 µs, while
--   sessions that need them are rare. TimeZone and bytea_output matter only for keys
--   matched by their text (composites: see _compared_as_text), where the text must
--   be the reader's; elsewhere timestamptz text carries its offset, and both bytea
--   formats read back exactly.
--   Parameters: none.
--   Returns: text[].
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._pin_output() returns text[]
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_saved text[] := array[current_setting('datestyle'), current_setting('intervalstyle'),
                            current_setting('extra_float_digits'), current_setting('lc_monetary'),
                            current_setting('timezone'), current_setting('bytea_output')];
begin
    perform set_config('datestyle', 'ISO, YMD', true), set_config('intervalstyle', 'postgres', true),
            set_config('extra_float_digits', '3', true), set_config('lc_monetary', 'C', true),
            set_config('timezone', 'UTC', true), set_config('bytea_output', 'hex', true);
    return v_saved;
end
$$;

-- dbsync._restore_output(saved text[]) returns void
--   Puts back what _pin_output changed, so the writer's session sees its own settings.
--   (PL/pgSQL: before PostgreSQL 11 a SQL function returning void may not end in a
--   SELECT of values.)
--   Parameters: saved.
--   Returns: nothing.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._restore_output(saved text[]) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    perform set_config('datestyle', saved[1], true), set_config('intervalstyle', saved[2], true),
            set_config('extra_float_digits', saved[3], true), set_config('lc_monetary', saved[4], true),
            set_config('timezone', saved[5], true), set_config('bytea_output', saved[6], true);
end
$$;
