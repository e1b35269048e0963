-- dbsync._tick_key(p_group_id int, p_tick bigint) returns bigint
--   The key of a tick of a group (dbsync.ticks.tick_key, migration 0024): with its id,
--   what names the tick, since a source that failed over to a standby that lagged
--   (or was restored from a backup) makes ticks again under ids it had used. The
--   target records it with its position (see target_position). Null for a tick made
--   before 0024, and for a tick the queue does not have. SECURITY DEFINER: the
--   sidecar role reads dbsync.subscriptions (sidecar_subscription), not dbsync.ticks.
--   Parameters: p_group_id, p_tick.
--   Returns: bigint, below 2^53.
--   Calls: nothing. Tables touched: dbsync.ticks (read).
create or replace function dbsync._tick_key(p_group_id int, p_tick bigint) returns bigint
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select t.tick_key from dbsync.ticks t where t.group_id = p_group_id and t.tick_id = p_tick
$$;
