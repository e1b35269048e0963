-- dbsync.sidecar_unlock(p_lock text, p_key int) returns boolean
--   Releases a session advisory lock dbsync.sidecar_try_lock took.
--   Parameters: p_lock, a name of dbsync._lock_class; p_key, what is locked.
--   Returns: whether the session held it.
--   Calls: dbsync._lock_class, pg_advisory_unlock. Tables touched: none.
--   SECURITY INVOKER, as dbsync.sidecar_try_lock.
create or replace function dbsync.sidecar_unlock(p_lock text, p_key int) returns boolean
language sql set search_path = pg_catalog, pg_temp as $$
    select pg_advisory_unlock(dbsync._lock_class(p_lock), p_key);
$$;
