-- dbsync._verify_release(p_verification_id bigint) returns void
--   A verification without repair lets the stream go on once both sides are at
--   its tick: its hold goes, and the group's sidecar is woken (NOTIFY dbsync) for the
--   batches it held back. Nothing when it holds nothing.
--   Parameters: p_verification_id.
--   Returns: nothing.
--   Calls: pg_notify. Tables touched: dbsync.verifications (hold), dbsync.subscriptions (read).
--   SECURITY INVOKER: the sidecar role may write these columns itself
--   (dbsync.grant_sidecar); a role that may not gets a permission error.
create or replace function dbsync._verify_release(p_verification_id bigint) returns void
language sql set search_path = pg_catalog, pg_temp as $$
    with v as (update dbsync.verifications set hold_tick = null, hold_snapshot = null
               where verification_id = p_verification_id and (hold_tick is not null or hold_snapshot is not null)
               returning sub_id)
    select pg_notify('dbsync', s.group_id::text) from v join dbsync.subscriptions s on s.sub_id = v.sub_id;
$$;
