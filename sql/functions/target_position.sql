-- dbsync.target_position(p_sub_id int, p_target_tick bigint, p_target_key bigint default null)
--   returns bigint
--   The sidecar connected to the subscription's target, which says it stands at
--   p_target_tick, whose key it recorded as p_target_key (its dbsync.applied, the
--   truth for exactly-once apply; null: unknown, a tick of before migration 0024 or
--   a position a sidecar of an older version wrote). Returns
--   the tick to continue from, after recording it:
--   * the position itself;
--   * a later tick the queue still has: the target committed batches whose report
--     to the source was lost (a crash between the two commits);
--   * an earlier tick whose later events the queue still holds: the target lost
--     commits (synchronous_commit = off and a crash): the position goes back there;
--   * after resync_subscription, the position, whatever the target says: every
--     table is copied again (the sidecar writes it to the target);
--   * p_target_tick NULL (the target has no row for the subscription): the position,
--     if no batch was ever recorded as applied; else an error (the target lost it).
--   A target behind the queue's retention (restored from an older backup, or a
--   failover to a standby that lagged for long) or at a tick this queue never made (another source, a source
--   restored from a backup) cannot be brought up to date from the queue: that
--   raises an error that names the fix, so the subscription shows it in
--   dbsync.status instead of skipping batches. So does a target whose tick has
--   another key than this source's tick of that id (dbsync._tick_key): the source
--   failed over to a standby that lagged, or was restored from a backup, and made
--   its ticks again under the ids the target had stood at; the id alone would pass
--   for a tick the target reached. Called by the sidecar.
--   Parameters: p_sub_id, p_target_tick, p_target_key (a sidecar of an older version
--     calls it without: unknown).
--   Returns: bigint.
--   Calls: dbsync._tick_key, dbsync.record_progress. Tables touched: dbsync.subscription_sequences,
--     dbsync.subscription_tables, dbsync.subscriptions (written); dbsync.groups,
--     dbsync.ticks (read).
create or replace function dbsync.target_position(p_sub_id int, p_target_tick bigint, p_target_key bigint default null)
returns bigint
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_sub dbsync.subscriptions;
    v_key bigint;
begin
    select * into v_sub from dbsync.subscriptions s where s.sub_id = p_sub_id for update;
    if v_sub.reset_target then
        update dbsync.subscriptions set reset_target = false where sub_id = p_sub_id;
        return v_sub.position_tick;
    end if;
    -- No record on the target: new to the subscription, unless the source recorded
    -- batches it applied there (applied_at is set by the first report that moved
    -- the position).
    if p_target_tick is null then
        if v_sub.applied_at is null then
            return v_sub.position_tick;
        end if;
        raise exception 'the target of subscription "%" has no record of it, but the source recorded it applied up to tick %',
                        v_sub.name, v_sub.position_tick
            using errcode = 'object_not_in_prerequisite_state',
                  detail = 'Its row in dbsync.applied is gone: restored from a backup older than the subscription, a crash that lost its last commits (synchronous_commit = off), or schema dbsync dropped there. What it holds is unknown.',
                  hint = format('Copy every table again with select dbsync.resync_subscription(%L); nothing is applied until then.', v_sub.name);
    end if;
    -- Before anything is decided by the id (equal to the position's, or a tick the
    -- queue has).
    v_key := dbsync._tick_key(v_sub.group_id, p_target_tick);
    if v_key <> p_target_key then
        raise exception 'the target of subscription "%" stands at tick %, but this source''s tick % is another one', v_sub.name,
                        p_target_tick, p_target_tick
            using errcode = 'object_not_in_prerequisite_state',
                  detail = format('The target recorded key %s with the tick, this source has key %s: the source failed over to a standby that lagged, or was restored from a backup, and made its ticks again. What the target holds since their common past is unknown.',
                                  p_target_key, v_key),
                  hint = format('Copy every table again with select dbsync.resync_subscription(%L); nothing is applied until then.', v_sub.name);
    end if;
    if p_target_tick = v_sub.position_tick then
        return p_target_tick;
    end if;
    if p_target_tick > v_sub.position_tick
       and exists (select from dbsync.ticks t where t.group_id = v_sub.group_id and t.tick_id = p_target_tick) then
        perform dbsync.record_progress(p_sub_id, p_target_tick, 0, 0);
        return p_target_tick;
    end if;
    -- Behind, but the queue still holds everything after its tick (no slot truncated
    -- above that tick's xmin): apply again from there. Tables copied after it are
    -- copied again (the copy was among what the target lost; a chunked copy with a
    -- chunk after it starts again), and sequences are pushed again.
    if p_target_tick < v_sub.position_tick
       and exists (select from dbsync.ticks t join dbsync.groups g on g.group_id = t.group_id
                   where t.group_id = v_sub.group_id and t.tick_id = p_target_tick
                     and (g.truncated_xmax is null or pg_snapshot_xmin(t.snap) >= g.truncated_xmax)) then
        update dbsync.subscription_tables
        set state = 'pending', copy_request = copy_request + 1, copy_tick = null
        where sub_id = p_sub_id and (copy_tick > p_target_tick or (chunk_tick > p_target_tick and state <> 'streaming'));
        delete from dbsync.subscription_sequences where sub_id = p_sub_id;
        update dbsync.subscriptions set position_tick = p_target_tick where sub_id = p_sub_id;
        raise notice 'subscription "%": the target stands at tick %, behind the source''s record (tick %); applying again from there',
                     v_sub.name, p_target_tick, v_sub.position_tick;
        return p_target_tick;
    end if;
    raise exception 'the target of subscription "%" stands at tick %, but the source % tick %', v_sub.name,
                    p_target_tick, case when p_target_tick < v_sub.position_tick then 'already applied up to' else 'never made' end,
                    case when p_target_tick < v_sub.position_tick then v_sub.position_tick else p_target_tick end
        using errcode = 'object_not_in_prerequisite_state',
              detail = case when p_target_tick < v_sub.position_tick
                            then 'The target went back in time: restored from a backup, or a failover to a standby that lagged. The changes in between are no longer in the queue.'
                            else 'The target holds changes this source does not know: it was fed by another source, or the source was restored from a backup.' end,
              hint = format('Copy every table again with select dbsync.resync_subscription(%L); nothing is applied until then.', v_sub.name);
end
$$;
