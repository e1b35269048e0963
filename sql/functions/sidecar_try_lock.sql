-- dbsync.sidecar_try_lock(p_lock text, p_key int) returns boolean
--   Takes the session advisory lock (dbsync._lock_class(p_lock), p_key) for the
--   calling session if no other session holds it: a subscription's applier
--   ('apply', sub_id), a running verification ('verify', verification_id). Held
--   until dbsync.sidecar_unlock or the session ends.
--   Parameters: p_lock, a name of dbsync._lock_class; p_key, what is locked.
--   Returns: whether the lock is now held.
--   Calls: dbsync._lock_class, pg_try_advisory_lock. Tables touched: none.
--   SECURITY INVOKER: any role may take an advisory lock; this only names it.
create or replace function dbsync.sidecar_try_lock(p_lock text, p_key int) returns boolean
language sql set search_path = pg_catalog, pg_temp as $$
    select pg_try_advisory_lock(dbsync._lock_class(p_lock), p_key);
$$;
