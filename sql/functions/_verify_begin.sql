-- dbsync._verify_begin(p_verification_id bigint) returns table (tick_id bigint, snapshot_name text)
--   Starts (or restarts) a verification: takes a tick of the subscription's group
--   whose snapshot is exported for the verify job's source transaction to import,
--   and in the same transaction holds the subscription at that tick (hold_tick, see
--   dbsync._verify_hold), so the stream sees the tick and the hold together and the
--   target stops exactly at it. Marks the verification 'running' and resets its
--   counters. Changes no subscription or table state.
--   The caller must hold the verification's advisory lock (0x64627376, id), run this
--   in READ COMMITTED and keep the transaction open until the reading transaction
--   has run SET TRANSACTION SNAPSHOT, then, in this same transaction, store in
--   hold_snapshot the snapshot that reading transaction exports (pg_export_snapshot()
--   after the import): dbsync.begin_batch reads the batch that ends at the hold
--   through it, so the hold only takes effect with it. Then commit (see
--   dbsync._export_tick): the tick, the hold and its snapshot become visible together.
--   The reading transaction must stay open while the hold is needed.
--   Called by the sidecar.
--   Parameters: p_verification_id.
--   Returns: rows of (tick_id, snapshot_name).
--   Calls: dbsync._export_tick, dbsync._lock_class. Tables touched: dbsync.verifications
--     (written); dbsync.subscriptions (read).
create or replace function dbsync._verify_begin(p_verification_id bigint)
returns table (tick_id bigint, snapshot_name text)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int;
    v_tick bigint;
    v_name text;
begin
    select s.group_id into v_group
    from dbsync.verifications v join dbsync.subscriptions s using (sub_id)
    where v.verification_id = p_verification_id;
    if not found then
        raise exception '_verify_begin: verification % not found', p_verification_id using errcode = 'undefined_object';
    end if;
    -- Wait for the batch ticks being taken under a hold check that cannot see this
    -- hold, and keep new ones from being taken until it is committed (see
    -- dbsync._verify_hold): no batch then ends past this tick.
    perform pg_advisory_xact_lock(dbsync._lock_class('verify_group'), v_group);
    select x.tick_id, x.snapshot_name into v_tick, v_name from dbsync._export_tick(v_group) x;
    update dbsync.verifications v
    set state = 'running', tick_id = v_tick, hold_tick = v_tick, hold_snapshot = null,
        started_at = now(), compare_started_at = null, finished_at = null, duration = null,
        rows_compared = 0, chunks = 0, chunks_differing = 0, differing_count = 0,
        rows_missing = 0, rows_extra = 0, rows_different = 0, differing_keys = '{}',
        rows_repaired = 0, error = null, key_reached = null, reached_end = null
    where v.verification_id = p_verification_id;
    -- Wake the applier: it must bring the target to this tick.
    perform pg_notify('dbsync', v_group::text);
    return query select v_tick, v_name;
end
$$;
