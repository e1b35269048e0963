-- dbsync._verify_failed(p_verification_id bigint, p_error text, p_rows_compared bigint, p_chunks int) returns void
--   A verification failed: error, with why and how far it got; its hold on the
--   stream released.
--   Parameters: p_verification_id; p_error, the message (with its hint); p_rows_compared and
--     p_chunks, how far it got.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.verifications (state, hold, outcome columns).
--   SECURITY INVOKER: the sidecar role may write these columns itself
--   (dbsync.grant_sidecar); a role that may not gets a permission error.
create or replace function dbsync._verify_failed(p_verification_id bigint, p_error text, p_rows_compared bigint,
                                                 p_chunks int) returns void
language sql set search_path = pg_catalog, pg_temp as $$
    update dbsync.verifications
    set state = 'error', error = p_error, hold_tick = null, hold_snapshot = null, finished_at = now(),
        duration = now() - coalesce(started_at, requested_at), rows_compared = p_rows_compared, chunks = p_chunks
    where verification_id = p_verification_id;
$$;
