-- dbsync._verify_done(p_verification_id bigint, p_key_reached text[], p_reached_end boolean) returns void
--   A verification compared its whole range: done, its hold on the stream
--   released, where its range ended recorded (background verification goes on from
--   there, dbsync._verify_record).
--   Parameters: p_verification_id; p_key_reached, the last source key compared; p_reached_end,
--     whether the range ran to the end of the table.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.verifications (state, hold, outcome columns).
--   SECURITY INVOKER: the sidecar role may write these columns itself
--   (dbsync.grant_sidecar); a role that may not gets a permission error.
create or replace function dbsync._verify_done(p_verification_id bigint, p_key_reached text[],
                                               p_reached_end boolean) returns void
language sql set search_path = pg_catalog, pg_temp as $$
    update dbsync.verifications
    set state = 'done', hold_tick = null, hold_snapshot = null, finished_at = now(),
        duration = now() - started_at, key_reached = p_key_reached, reached_end = p_reached_end
    where verification_id = p_verification_id;
$$;
