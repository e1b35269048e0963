-- dbsync.sidecar_subscription(p_name text) returns table(...)
--   What the sidecar reads about one subscription before it applies a batch (its
--   target, position, whether it is paused) and while a verification waits for the
--   target (its last error). No row for an unknown subscription.
--   Parameters: p_name, the subscription.
--   Returns: sub_id, name, sub_uuid, group_id, target_conninfo, conninfo_by_owner, paused,
--     position_tick (float8: JavaScript reads it as a number), reset_target,
--     last_error, last_error_at, position_key (the key of the position's tick, see
--     dbsync._tick_key; bigint, not float8, whose text is rounded to 15 digits in a
--     session with extra_float_digits below 1: a key has up to 16).
--   Calls: dbsync._tick_key. Tables touched: dbsync.subscriptions (read).
--   SECURITY INVOKER: the sidecar role reads dbsync.subscriptions itself
--   (dbsync.grant_sidecar); a role that may not read it gets a permission error.
create or replace function dbsync.sidecar_subscription(p_name text)
returns table (sub_id int, name text, sub_uuid uuid, group_id int, target_conninfo text, conninfo_by_owner boolean, paused boolean,
               position_tick float8, reset_target boolean, last_error text, last_error_at timestamptz,
               position_key bigint)
language sql stable set search_path = pg_catalog, pg_temp as $$
    select s.sub_id, s.name, s.sub_uuid, s.group_id, s.target_conninfo, s.conninfo_by_owner, s.paused, s.position_tick::float8,
           s.reset_target, s.last_error, s.last_error_at, dbsync._tick_key(s.group_id, s.position_tick)
    from dbsync.subscriptions s
    where s.name = p_name;
$$;
