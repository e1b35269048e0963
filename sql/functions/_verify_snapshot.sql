-- dbsync._verify_snapshot(p_verification_id bigint, p_snapshot text) returns void
--   The snapshot a verification's reader exported at its tick: begin_batch ends
--   the applier's batch at the held tick through it (dbsync._verify_hold). Run in the
--   transaction of dbsync._verify_begin, so tick, hold and snapshot commit together.
--   Parameters: p_verification_id; p_snapshot, pg_export_snapshot()'s name.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.verifications (hold_snapshot).
--   SECURITY INVOKER: the sidecar role may write these columns itself
--   (dbsync.grant_sidecar); a role that may not gets a permission error.
create or replace function dbsync._verify_snapshot(p_verification_id bigint, p_snapshot text) returns void
language sql set search_path = pg_catalog, pg_temp as $$
    update dbsync.verifications set hold_snapshot = p_snapshot where verification_id = p_verification_id;
$$;
