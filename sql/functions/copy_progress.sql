-- dbsync.copy_progress(p_sub_id int, p_table_id int, p_copy_request bigint, p_rows bigint,
--                      p_rows_estimated bigint default null) returns void
--   The sidecar reports how far the copy of a table inside the batch it is applying
--   has got, for dbsync.table_status. Display only: the copy counts as done when the
--   batch commits on the target (record_progress). Called by the sidecar.
--   Parameters: p_sub_id, p_table_id, p_copy_request, p_rows, p_rows_estimated.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.subscription_tables (written).
create or replace function dbsync.copy_progress(p_sub_id int, p_table_id int, p_copy_request bigint, p_rows bigint,
                                                p_rows_estimated bigint default null) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update dbsync.subscription_tables
    set state = 'copying', rows_copied = p_rows,
        rows_estimated = coalesce(p_rows_estimated, rows_estimated),
        copy_started_at = case when state = 'copying' then copy_started_at else now() end,
        copy_ended_at = null
    where sub_id = p_sub_id and table_id = p_table_id and copy_request = p_copy_request and state <> 'streaming';
$$;
