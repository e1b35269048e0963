-- dbsync.maintain(p_group_id int, rotate_after interval default '30 s', min_spacing interval default null) returns boolean
--   Queue upkeep of one group, without row-by-row DELETE. Called by the sidecar.
--   0. Nothing when the group's upkeep ran less than min_spacing ago (groups.maintained_at,
--      read first without a lock, then under the group's row lock, so a second process
--      waiting for it sees the first one's): several sidecars each maintain every group
--      on their own timer.
--   1. A slot that stopped being current in an earlier call gets its switched_xmax:
--      this (later) transaction's own xid. A writer that read the old slot number
--      had its xid before the switch was published, so its xid is lower. (A snapshot's
--      xmax would not do: it is latestCompletedXid + 1, and a running writer can
--      have a higher xid.)
--   2. A slot is truncated once every subscription's position snapshot has all
--      transactions below its switched_xmax finished (xmin >= switched_xmax): they
--      are then all applied. With no subscription nothing in the queue is needed.
--   3. When the current slot is older than rotate_after, the next one is empty, and an
--      event was numbered since the last switch (groups.rotated_ev_id: an idle group's
--      current slot is empty, and switching from it would only cost a TRUNCATE and an
--      upkeep tick, a batch on every target, per rotate_after), writers move to the
--      next slot (published in dbsync.group_state_<id>, which
--      writers read without a snapshot: their xid is assigned by their own write,
--      before the trigger reads the slot, so a writer that still used the old slot
--      has an xid below any later transaction's, including step 1's).
--   4. Ticks no subscription stands on or will need are deleted.
--   Also: unlogged tables that crash recovery emptied are copied again (_unlogged_lost).
--   Returns true when a slot waits only for the subscriptions' positions to move
--   past it: an idle group takes no ticks, so the caller should force one. Not
--   while a transaction below the slot's switched_xmax still runs: a tick taken now
--   would have it running too, so the slot would wait on, and every subscription
--   would be woken for a batch that only moves its target to that tick (on a busy
--   source, where some batch's tick transaction is nearly always open, about half
--   the forced ticks were such); the next upkeep looks again.
--   Parameters: p_group_id, rotate_after, min_spacing (null: no spacing).
--   Returns: see above (false when spaced out).
--   Calls: dbsync._publish_group_state, dbsync._unlogged_lost. Tables touched: dbsync.groups,
--     dbsync.queue_slots, dbsync.ticks (written); dbsync.subscriptions (read); truncates
--     the group's queue slots dbsync.events_<id>_<slot>.
drop function if exists dbsync.maintain(int, interval);
drop function if exists dbsync.maintain(int, interval, interval);
-- (A sidecar of the previous version, still running during an upgrade, calls it with
-- two arguments: no spacing, as before.)
create function dbsync.maintain(p_group_id int, rotate_after interval default '30 s', min_spacing interval default null)
returns boolean
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group dbsync.groups;
    v_slot dbsync.queue_slots;
    v_next smallint;
    v_min_xmin xid8;
    v_keep bigint;
    v_last_ev bigint;
    -- The oldest switched_xmax of a slot waiting to be truncated.
    v_wait xid8;
begin
    -- Spaced out, as seen without a lock: no row lock, so no transaction id and no
    -- commit to flush (several processes' passes overlap when a pass is slow, and the
    -- groups they read as due at once reach here from each).
    if exists (select from dbsync.groups g where g.group_id = p_group_id and g.maintained_at > now() - min_spacing) then
        return false;
    end if;
    -- The group's row first, as dbsync.tick takes it: tick then reads the queue
    -- partitions that the TRUNCATE below locks, and the other order deadlocks.
    select * into v_group from dbsync.groups where group_id = p_group_id for no key update;
    if not found then
        return false;
    end if;
    if v_group.maintained_at > now() - min_spacing then
        return false;
    end if;
    update dbsync.groups set maintained_at = now() where group_id = p_group_id;
    perform dbsync._unlogged_lost();
    update dbsync.queue_slots
    set switched_xmax = pg_current_xact_id()
    where group_id = p_group_id and switched_at is not null and switched_xmax is null;

    -- (No min(xid8) aggregate before PostgreSQL 15.)
    select pg_snapshot_xmin(t.snap) into v_min_xmin
    from dbsync.subscriptions s
    join dbsync.ticks t on t.group_id = s.group_id and t.tick_id = s.position_tick
    where s.group_id = p_group_id
    order by 1
    limit 1;

    for v_slot in select * from dbsync.queue_slots
                  where group_id = p_group_id and switched_xmax is not null
                    and (v_min_xmin is null or v_min_xmin >= switched_xmax) loop
        -- A reader holding the slot (a long wait_for_sync) must not make the
        -- TRUNCATE queue for its lock, with every tick and batch behind it.
        begin
            execute format('lock table dbsync.%I in access exclusive mode nowait',
                           'events_' || p_group_id || '_' || v_slot.slot);
        exception when lock_not_available then
            continue;
        end;
        execute format('truncate dbsync.%I', 'events_' || p_group_id || '_' || v_slot.slot);
        update dbsync.groups set truncated_xmax = greatest(truncated_xmax, v_slot.switched_xmax)
        where group_id = p_group_id;
        update dbsync.queue_slots set switched_at = null, switched_xmax = null
        where group_id = p_group_id and slot = v_slot.slot;
    end loop;

    v_next := (v_group.cur_slot + 1) % 3;
    -- Read before the switch is published: a writer that reads the new slot numbers
    -- its events after this (a writer still on the old slot may number them after
    -- it too; then the next call switches again, needlessly but harmlessly).
    v_last_ev := coalesce(pg_sequence_last_value(format('dbsync.%I', 'events_seq_' || p_group_id)::regclass), 0);
    if v_group.rotated_at < now() - rotate_after
       and v_last_ev is distinct from v_group.rotated_ev_id
       and exists (select from dbsync.queue_slots
                   where group_id = p_group_id and slot = v_next and switched_at is null) then
        update dbsync.groups set cur_slot = v_next, rotated_at = now(), rotated_ev_id = v_last_ev
        where group_id = p_group_id;
        update dbsync.queue_slots set switched_at = now()
        where group_id = p_group_id and slot = v_group.cur_slot;
    end if;
    -- Writers read the slot from the state sequence; also repairs a value left by a
    -- call that rolled back after it published.
    perform dbsync._publish_group_state(p_group_id);

    select least(min(s.position_tick), min(st.copy_tick)) into v_keep
    from dbsync.subscriptions s
    left join dbsync.subscription_tables st on st.sub_id = s.sub_id and st.copy_tick > s.position_tick
    where s.group_id = p_group_id;
    delete from dbsync.ticks
    where group_id = p_group_id
      and tick_id < coalesce(v_keep, v_group.last_tick_id)
      and tick_id < v_group.last_tick_id
      and created_at < now() - interval '1 minute';
    select q.switched_xmax into v_wait from dbsync.queue_slots q
    where q.group_id = p_group_id and q.switched_xmax is not null
    order by 1 limit 1;
    return v_wait is not null
       and (select created_at from dbsync.ticks
            where group_id = p_group_id and tick_id = v_group.last_tick_id) < now() - rotate_after
       -- (The xmin, not the running ones listed: a transaction at or above the
       -- snapshot's xmax is running unlisted. This one's own xid, at or above
       -- v_wait, does not count: it ends before the tick.)
       and pg_snapshot_xmin(pg_current_snapshot()) >= v_wait;
end
$$;
