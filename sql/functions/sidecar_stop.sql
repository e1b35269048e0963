-- dbsync.sidecar_stop() returns void
--   A stopping sidecar says that nobody listens now: capture triggers stop sending
--   NOTIFY for every group (dbsync.set_sleeping false), so writers do not pay for
--   it (a cluster-wide lock at commit) while no sidecar runs.
--   Parameters: none.
--   Returns: nothing.
--   Calls: dbsync.set_sleeping. Tables touched: dbsync.groups (read; written by
--   set_sleeping).
--   SECURITY INVOKER: set_sleeping is SECURITY DEFINER and checks its own grant.
create or replace function dbsync.sidecar_stop() returns void
language sql set search_path = pg_catalog, pg_temp as $$
    select dbsync.set_sleeping(g.group_id, false) from dbsync.groups g where g.sleeping;
$$;
