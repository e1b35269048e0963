-- dbsync.copy_chunks(p_sub_id int, p_tick bigint, p_chunks jsonb) returns void
--   The sidecar is about to apply the batch that ends at tick p_tick, which copies
--   the chunks p_chunks of chunked copies: [{table_id, copy_request, chunk}], chunk
--   as batch_plan gave it ({first, last, key, order, rows_before, chunks_before}),
--   or {"whole": true} for a table copied whole.
--   Recorded (subscription_tables.chunk_next) before the batch commits on the
--   target, so that record_progress can move each table's boundary (or end a whole
--   copy) when the position reaches p_tick, even when the batch's report is lost
--   and the position is taken from the target: a copy the target committed is not
--   made again. begin_batch clears what a batch that never committed
--   left. See sql/functions/_copy_chunks.sql. Called by the sidecar.
--   Parameters: p_sub_id, p_tick, p_chunks.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.subscription_tables (written).
create or replace function dbsync.copy_chunks(p_sub_id int, p_tick bigint, p_chunks jsonb) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update dbsync.subscription_tables st
    set chunk_next = (c.value -> 'chunk') || jsonb_build_object('tick', p_tick, 'copy_request', st.copy_request)
    from jsonb_array_elements(coalesce(p_chunks, '[]')) c
    where st.sub_id = p_sub_id and st.table_id = (c.value ->> 'table_id')::int
      and st.copy_request = (c.value ->> 'copy_request')::bigint and st.state <> 'streaming';
$$;
