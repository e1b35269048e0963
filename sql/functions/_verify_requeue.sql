-- dbsync._verify_requeue(p_verification_id bigint) returns void
--   A verification interrupted by a stopping sidecar: queued again (the next
--   sidecar starts it over), its hold on the stream released.
--   Parameters: p_verification_id.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.verifications (state, hold).
--   SECURITY INVOKER: the sidecar role may write these columns itself
--   (dbsync.grant_sidecar); a role that may not gets a permission error.
create or replace function dbsync._verify_requeue(p_verification_id bigint) returns void
language sql set search_path = pg_catalog, pg_temp as $$
    update dbsync.verifications
    set state = 'queued', hold_tick = null, hold_snapshot = null
    where verification_id = p_verification_id;
$$;
