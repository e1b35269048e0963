-- dbsync.record_error(p_sub_id int, p_message text, p_sqlstate text, p_table text, p_tick bigint) returns void
--   The sidecar reports that applying the subscription's next batch (ending at
--   p_tick) failed; it stays at its position and retries with back-off.
--   Parameters: p_sub_id, p_message, p_sqlstate, p_table, p_tick.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.subscriptions (written).
create or replace function dbsync.record_error(p_sub_id int, p_message text, p_sqlstate text,
                                               p_table text, p_tick bigint) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update dbsync.subscriptions
    set last_error = p_message, last_error_sqlstate = p_sqlstate, last_error_table = p_table,
        last_error_tick = p_tick, last_error_at = now(), error_count = error_count + 1
    where sub_id = p_sub_id;
$$;
