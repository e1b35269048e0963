-- dbsync._request_copy(p_sub_id int, p_table_ids int[]) returns bigint
--   A new copy request for tables of a subscription: state 'pending', copy_request
--   one up (a chunked copy under way starts again from its first chunk), its
--   progress and last error cleared. The sidecar copies each at the snapshot of a
--   later batch. For resync_table, resync_subscription, a dropped partition
--   (_on_drop) and execute_ddl's new columns that only a copy can fill
--   (_ddl_recopy). NULL p_sub_id: every subscription; NULL p_table_ids: every table.
--   Parameters: p_sub_id, p_table_ids.
--   Returns: how many tables of subscriptions.
--   Calls: nothing. Tables touched: dbsync.subscription_tables (written).
create or replace function dbsync._request_copy(p_sub_id int, p_table_ids int[]) returns bigint
language sql security definer set search_path = pg_catalog, pg_temp as $$
    with requested as (
        update dbsync.subscription_tables st
        set state = 'pending', copy_request = st.copy_request + 1, copy_tick = null, rows_copied = 0,
            copy_started_at = null, copy_ended_at = null, last_error = null, last_error_at = null
        where (p_sub_id is null or st.sub_id = p_sub_id)
          and (p_table_ids is null or st.table_id = any (p_table_ids))
        returning 1)
    select count(*) from requested
$$;
