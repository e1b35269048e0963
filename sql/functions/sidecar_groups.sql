-- dbsync.sidecar_groups() returns setof int
--   Every group's id, for the sidecar's upkeep (dbsync.maintain, one group at a
--   time, each in a transaction of its own).
--   Parameters: none.
--   Returns: group_id, in order.
--   Calls: nothing. Tables touched: dbsync.groups (read).
--   SECURITY INVOKER, as dbsync.sidecar_subscription.
create or replace function dbsync.sidecar_groups() returns setof int
language sql stable set search_path = pg_catalog, pg_temp as $$
    select g.group_id from dbsync.groups g order by g.group_id;
$$;
