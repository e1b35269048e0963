-- dbsync.sidecar_subscriptions(p_group_id int default null) returns table(...)
--   The subscriptions a sidecar applies: those not paused, oldest first; with
--   p_group_id, only that group's (a wake-up for the group).
--   Parameters: p_group_id, a group or NULL for all.
--   Returns: name, group_id, target_conninfo.
--   Calls: nothing. Tables touched: dbsync.subscriptions (read).
--   SECURITY INVOKER, as dbsync.sidecar_subscription.
create or replace function dbsync.sidecar_subscriptions(p_group_id int default null)
returns table (name text, group_id int, target_conninfo text)
language sql stable set search_path = pg_catalog, pg_temp as $$
    select s.name, s.group_id, s.target_conninfo
    from dbsync.subscriptions s
    where not s.paused and (p_group_id is null or s.group_id = p_group_id)
    order by s.sub_id;
$$;
