-- dbsync._verify_comparing(p_verification_id bigint) returns void
--   A verification's two sides are both at its tick: comparing starts now
--   (what `dbsync verify` shows as its progress from here on).
--   Parameters: p_verification_id.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.verifications (compare_started_at).
--   SECURITY INVOKER: the sidecar role may write these columns itself
--   (dbsync.grant_sidecar); a role that may not gets a permission error.
create or replace function dbsync._verify_comparing(p_verification_id bigint) returns void
language sql set search_path = pg_catalog, pg_temp as $$
    update dbsync.verifications set compare_started_at = now() where verification_id = p_verification_id;
$$;
