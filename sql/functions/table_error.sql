-- dbsync.table_error(p_sub_id int, p_table_id int, p_message text) returns void
--   The sidecar could not start the copy of a table (e.g. it is missing on the
--   target): the table shows 'error' with the message in dbsync.table_status and
--   dbsync.status, and the copy is tried again with each batch while the other
--   tables stream. Called by the sidecar.
--   Parameters: p_sub_id, p_table_id, p_message.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.subscription_tables (written).
create or replace function dbsync.table_error(p_sub_id int, p_table_id int, p_message text) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update dbsync.subscription_tables
    set state = 'error', last_error = p_message,
        last_error_at = case when last_error is distinct from p_message then now() else last_error_at end
    where sub_id = p_sub_id and table_id = p_table_id and state <> 'streaming';
$$;
