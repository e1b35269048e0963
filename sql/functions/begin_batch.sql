-- dbsync.begin_batch(p_subscription text, p_from bigint default null) returns table
--   (sub_id int, group_id int, tick_from bigint, tick_to bigint, snapshot_name text, tick_key bigint)
--   The sidecar's apply loop, one call per batch on its control connection (right
--   after record_progress of the previous batch has committed: the reader must see
--   it, and it cannot see what this transaction writes), or with p_from while the
--   target commits the previous batch, which ends at tick p_from and copies nothing
--   (its report comes with the call after this one, once that commit is done: no
--   position reaches the source before the target has it):
--   1. when there is something to apply (events committed since the position,
--      tables to copy, or sequences that moved), takes a tick of the group whose snapshot it exports: the
--      batch is (position, tick], and the sidecar's reader transaction imports the
--      snapshot, so it reads every row exactly as of the batch's end; the group's
--      last tick instead of a new one when nothing was committed since that one
--      (taken for another subscription of the group: see dbsync._export_tick);
--   2. a running verification that holds the subscription (dbsync._verify_hold)
--      ends the batch at its tick instead, read through the snapshot the verify job
--      exported; the subscription does not move past a hold it stands at.
--   3. nothing committed since the position, but the group has a later tick (taken
--      for another subscription of the group): the batch (position, latest tick]
--      with no snapshot, since it holds no event: the sidecar only moves the
--      target's position.
--   A database restored from a pg_dump of another (dbsync._restored_by_dump) raises
--   an error that says to set dbsync up again.
--   No row: nothing to apply, paused (also by a pause that committed while this call
--   ran: nothing committed after pause() returned is in a batch), held, or no such
--   subscription. With p_from, also when only sequences moved (the previous batch's
--   are not reported yet: the sidecar asks again without p_from).
--   Must run in READ COMMITTED, in a transaction the caller keeps open until the
--   reader has run SET TRANSACTION SNAPSHOT (the export lives as long as it), then
--   commits (that also releases the group's tick lock). Called by the sidecar.
--   Parameters: p_subscription, p_from (the position the batch starts at, at or
--     after the recorded one; null: the recorded position).
--   Returns: rows of (sub_id, group_id, tick_from, tick_to, snapshot_name, tick_key):
--     tick_key is tick_to's key (null for a tick made before migration 0024), which
--     the target records with the tick (see target_position).
--   Calls: dbsync._export_tick, dbsync._has_new_writers, dbsync._restored_by_dump,
--     dbsync._sequences_behind, dbsync._tick_key, dbsync._verify_hold. Tables touched: dbsync.subscription_tables (written);
--     dbsync.groups, dbsync.subscriptions, dbsync.tables, dbsync.ticks,
--     dbsync.verifications (read).
create or replace function dbsync.begin_batch(p_subscription text, p_from bigint default null)
returns table (sub_id int, group_id int, tick_from bigint, tick_to bigint, snapshot_name text, tick_key bigint)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions;
    v_hold bigint;
    v_hold_snapshot text;
    v_last bigint;
    v_pos pg_snapshot;
    v_tick bigint;
    v_snapshot_name text;
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'begin_batch: must run in a READ COMMITTED transaction' using errcode = 'active_sql_transaction';
    end if;
    select * into v_sub from dbsync.subscriptions s where s.name = p_subscription;
    if not found then
        return;
    end if;
    -- A database restored from a pg_dump of the source: a batch from the position would
    -- read the old database's tables by OIDs that are now others', and take changes by
    -- transaction ids this cluster may not have reached (they read as applied).
    if dbsync._restored_by_dump() then
        raise exception 'begin_batch: this database was restored from a pg_dump of another one, and dbsync''s state still names that one''s tables and transactions'
            using errcode = 'object_not_in_prerequisite_state',
                  detail = 'Tables are known by OID and positions by transaction ids: after pg_restore both are others. Nothing is applied.',
                  hint = 'Set dbsync up again here: dbsync uninstall --yes, dbsync migrate, then add_table and add_subscription (copy_data => true) as before.';
    end if;
    if v_sub.paused then
        return;
    end if;
    if p_from < v_sub.position_tick then
        raise exception 'begin_batch: subscription "%" stands at tick %, after %', p_subscription, v_sub.position_tick, p_from
            using errcode = 'invalid_parameter_value';
    end if;
    v_sub.position_tick := coalesce(p_from, v_sub.position_tick);
    -- Chunks recorded for a batch that did not commit (dbsync.copy_chunks): every
    -- batch the target committed was reported before this call (record_progress
    -- with it, or target_position when the sidecar connected), but the one ending
    -- at p_from, which recorded none.
    update dbsync.subscription_tables st set chunk_next = null
    where st.sub_id = v_sub.sub_id and st.chunk_next is not null;

    v_hold := dbsync._verify_hold(p_subscription);
    if v_hold is not null then
        select v.hold_snapshot into v_hold_snapshot
        from dbsync.verifications v
        where v.sub_id = v_sub.sub_id and v.hold_tick = v_hold and v.hold_snapshot is not null
        limit 1;
        if v_hold > v_sub.position_tick and v_hold_snapshot is not null then
            return query select v_sub.sub_id, v_sub.group_id, v_sub.position_tick, v_hold, v_hold_snapshot,
                                dbsync._tick_key(v_sub.group_id, v_hold);
        end if;
        return;
    end if;

    select g.last_tick_id into v_last from dbsync.groups g where g.group_id = v_sub.group_id;
    select t.snap into v_pos from dbsync.ticks t where t.group_id = v_sub.group_id and t.tick_id = v_sub.position_tick;
    if v_pos is null then
        raise exception 'begin_batch: subscription "%" stands at tick %, which the queue no longer has',
                        p_subscription, v_sub.position_tick
            using errcode = 'object_not_in_prerequisite_state',
                  hint = format('The target cannot be brought up to date from the queue: select dbsync.resync_subscription(%L).', p_subscription);
    end if;
    if not exists (select from dbsync.subscription_tables st join dbsync.tables t using (table_id)
                   where st.sub_id = v_sub.sub_id and t.removed_at is null and st.state <> 'streaming')
       and not dbsync._has_new_writers(v_sub.group_id, v_pos)
       and (p_from is not null or not dbsync._sequences_behind(v_sub.sub_id)) then
        -- Nothing committed since the position: ticks that the group's other
        -- subscriptions (or upkeep) took since hold no event for this one. It moves
        -- to the latest without a tick of its own (which would put the others
        -- behind in turn, and each then apply an empty batch for it) and without a
        -- snapshot: there is nothing to read.
        if v_sub.position_tick < v_last then
            return query select v_sub.sub_id, v_sub.group_id, v_sub.position_tick, v_last, null::text,
                                dbsync._tick_key(v_sub.group_id, v_last);
        end if;
        return;
    end if;
    select x.tick_id, x.snapshot_name into v_tick, v_snapshot_name from dbsync._export_tick(v_sub.group_id, v_sub.position_tick) x;
    -- A pause that committed after this call read the subscription, but before the
    -- tick's snapshot, would let the batch carry changes committed after pause()
    -- returned: read it again (a new statement, so a new snapshot). A pause that
    -- commits later cannot matter: the snapshot holds nothing committed after it.
    -- The tick stays (the group's ticks are shared; an unused one costs nothing).
    if (select s.paused from dbsync.subscriptions s where s.sub_id = v_sub.sub_id) then
        return;
    end if;
    return query select v_sub.sub_id, v_sub.group_id, v_sub.position_tick, v_tick, v_snapshot_name,
                        dbsync._tick_key(v_sub.group_id, v_tick);
end
$$;
