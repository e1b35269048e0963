-- dbsync.sidecar_readiness() returns table(...)
--   What the sidecar's /readyz reports, from one read of dbsync.status: every
--   subscription not paused, with its target (to try a connection) and, when
--   dbsync.status says error, why.
--   Parameters: none.
--   Returns: name, target_conninfo, failing (state is error), last_error,
--     last_error_table.
--   Calls: the view dbsync.status. Tables touched: dbsync.subscriptions (read).
--   SECURITY INVOKER: the view withholds row values as for any reader
--   (dbsync._shows_values).
create or replace function dbsync.sidecar_readiness()
returns table (name text, target_conninfo text, failing boolean, last_error text, last_error_table text)
language sql stable set search_path = pg_catalog, pg_temp as $$
    select s.name, s.target_conninfo, st.state = 'error', st.last_error, st.last_error_table
    from dbsync.subscriptions s
    join dbsync.status st on st.name = s.name
    where not s.paused
    order by s.name;
$$;
