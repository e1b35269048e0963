-- dbsync.sidecar_groups(min_spacing interval default null) returns setof int
--   The groups due for the sidecar's upkeep (dbsync.maintain, one group at a time,
--   each in a transaction of its own): those whose upkeep last ran min_spacing ago
--   or more, read without a lock. Every sidecar process runs its upkeep pass on its
--   own timer, and maintain skips a group maintained within the spacing only after
--   taking its row lock (a transaction id and a commit each): asked first, the
--   process whose pass comes second finds no group due and calls maintain for none
--   (50 groups, 2 processes: 10 calls a second instead of 20). maintain still checks
--   under the lock: two passes reading at once both see a group due.
--   Parameters: min_spacing (null: every group, as for a sidecar that predates it).
--   Returns: group_id, in order.
--   Calls: nothing. Tables touched: dbsync.groups (read).
--   SECURITY INVOKER, as dbsync.sidecar_subscription.
drop function if exists dbsync.sidecar_groups();
create or replace function dbsync.sidecar_groups(min_spacing interval default null) returns setof int
language sql stable set search_path = pg_catalog, pg_temp as $$
    select g.group_id from dbsync.groups g
    where min_spacing is null or g.maintained_at is null or g.maintained_at <= now() - min_spacing
    order by g.group_id;
$$;
