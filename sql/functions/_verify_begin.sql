-- dbsync._verify_begin(p_verification_id bigint) returns table (tick_id bigint, snapshot_name text)
--   Starts (or restarts) a verification: takes a tick of the subscription's group
--   whose snapshot is exported for the verify job's source transaction to import,
--   and in the same transaction holds the subscription at that tick (hold_tick, see
--   dbsync._verify_hold), so the stream sees the tick and the hold together and the
--   target stops exactly at it. Marks the verification 'running' and resets its
--   counters. Changes no subscription or table state.
--   The caller must hold the verification's advisory lock (0x64627376, id), run this
--   in READ COMMITTED and keep the transaction open until the reading transaction
--   has run SET TRANSACTION SNAPSHOT, then commit. The tick steps mirror
--   dbsync.begin_copy: the group's tick lock, then one statement that takes the
--   snapshot, exports it and reads the event sequence.
--   Called by the sidecar.
create or replace function dbsync._verify_begin(p_verification_id bigint)
returns table (tick_id bigint, snapshot_name text)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int;
    v_last bigint;
    v_seq regclass;
    v_snap pg_snapshot;
    v_name text;
    v_hi bigint;
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception '_verify_begin: must run in a READ COMMITTED transaction' using errcode = 'active_sql_transaction';
    end if;
    select s.group_id into v_group
    from dbsync.verifications v join dbsync.subscriptions s using (sub_id)
    where v.verification_id = p_verification_id;
    if not found then
        raise exception '_verify_begin: verification % not found', p_verification_id using errcode = 'undefined_object';
    end if;
    select g.last_tick_id into v_last from dbsync.groups g where g.group_id = v_group for update;
    v_seq := format('dbsync.%I', 'events_seq_' || v_group)::regclass;
    select pg_current_snapshot(), pg_export_snapshot(), coalesce(pg_sequence_last_value(v_seq), 0)
      into v_snap, v_name, v_hi;
    insert into dbsync.ticks (group_id, tick_id, snap, max_ev_id)
    values (v_group, v_last + 1, v_snap, v_hi);
    update dbsync.groups set last_tick_id = v_last + 1 where group_id = v_group;
    update dbsync.verifications v
    set state = 'running', tick_id = v_last + 1, hold_tick = v_last + 1,
        started_at = now(), compare_started_at = null, finished_at = null, duration = null,
        rows_compared = 0, chunks = 0, chunks_differing = 0, differing_count = 0,
        rows_missing = 0, rows_extra = 0, rows_different = 0, differing_keys = '{}',
        rows_repaired = 0, error = null
    where v.verification_id = p_verification_id;
    -- Wake the applier: it must bring the target to this tick.
    perform pg_notify('dbsync', v_group::text);
    return query select v_last + 1, v_name;
end
$$;
