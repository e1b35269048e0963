-- dbsync._differences_message(p_sub text, p_schema name, p_table name, p_differences bigint, p_total bigint, p_keys text[], p_shows boolean) returns text
--   The last_error of a table in which background verification found p_differences
--   rows differing on subscription p_sub's target (dbsync.table_status, and
--   dbsync.status with p_total, the subscription's count over all its tables): which
--   table, its first keys (only when p_shows: see dbsync._shows_values), and the call
--   that copies it again.
--   Parameters: p_sub, p_schema, p_table, p_differences, p_total, p_keys, p_shows.
--   Returns: text.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._differences_message(p_sub text, p_schema name, p_table name, p_differences bigint,
                                                       p_total bigint, p_keys text[], p_shows boolean) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select format('%s row(s) of %I.%I differ on the target (found by background verification%s)',
                  p_differences, p_schema, p_table,
                  case when p_shows
                       then ', keys: ' || array_to_string(p_keys[1:10], ', ') || case when p_differences > 10 then ', ...' else '' end
                       else '; its keys are in dbsync.verifications' end)
           || format('; copy the table again with select dbsync.resync_table(%L, %L)', p_sub, format('%I.%I', p_schema, p_table))
           || case when p_total > p_differences
                   then format(' (%s row(s) differ in all, see dbsync.table_status)', p_total) else '' end
$$;
