-- dbsync.end_copy(p_sub_id int, p_table_id int, p_tick bigint, p_rows bigint, p_error text default null) returns void
--   The sidecar reports the end of a copy started at tick p_tick. Success: the table
--   is 'catching_up' until the stream reaches the copy tick (then 'streaming').
--   Failure: 'error' with the message; the copy tick is dropped so the stream of the
--   other tables goes on, and the next attempt takes a new one. A report about an
--   older attempt (another copy tick) changes nothing.
create or replace function dbsync.end_copy(p_sub_id int, p_table_id int, p_tick bigint, p_rows bigint,
                                           p_error text default null) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update dbsync.subscription_tables st
    set state = case when p_error is not null then 'error'
                     when s.position_tick >= p_tick then 'streaming'
                     else 'catching_up' end,
        copy_tick = case when p_error is null then p_tick end,
        rows_copied = coalesce(p_rows, st.rows_copied),
        copy_ended_at = case when p_error is null then now() end,
        last_error = p_error,
        last_error_at = case when p_error is not null then now() end
    from dbsync.subscriptions s
    where s.sub_id = st.sub_id and st.sub_id = p_sub_id and st.table_id = p_table_id
      and (st.copy_tick = p_tick or (p_error is not null and st.copy_tick is null));
$$;
