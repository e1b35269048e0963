-- dbsync.sidecar_stop() returns void
--   A stopping sidecar says that nobody listens now: capture triggers stop sending
--   NOTIFY for every group (dbsync.set_sleeping false), so writers do not pay for
--   it (a cluster-wide lock at commit) while no sidecar runs.
--   Parameters: none.
--   Returns: nothing.
--   Calls: dbsync.set_sleeping. Tables touched: dbsync.groups (read; written by
--   set_sleeping).
--   SECURITY INVOKER: set_sleeping is SECURITY DEFINER and checks its own grant.
--   PL/pgSQL, not SQL: set_sleeping returns whether it changed the flag, and before
--   PostgreSQL 11 a SQL function returning void may not end in a SELECT of a value.
create or replace function dbsync.sidecar_stop() returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    perform dbsync.set_sleeping(g.group_id, false) from dbsync.groups g where g.sleeping;
end
$$;
