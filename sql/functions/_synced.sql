-- dbsync._synced(p_sub_id int, p_goal pg_snapshot) returns boolean
--   True when every event visible in p_goal is applied by the subscription (visible
--   in its position tick's snapshot) and none of its tables is still to be copied,
--   nor an unlogged one that crash recovery emptied (see _unlogged_lost), nor one
--   whose rows DDL outside execute_ddl changed on the source only, until that is
--   acknowledged (dbsync._unreplicated_ddl). Never in
--   a database restored from a pg_dump of another (dbsync._restored_by_dump).
--   The queue is read with the group as a value, which prunes it to the group's
--   partitions (see _has_new_writers).
--   Parameters: p_sub_id, p_goal.
--   Returns: boolean.
--   Calls: dbsync._held_tables, dbsync._restored_by_dump, dbsync._unlogged_tables. Tables touched: dbsync.events,
--     dbsync.subscription_tables, dbsync.subscriptions, dbsync.tables, dbsync.ticks, dbsync.unlogged_intact (read).
create or replace function dbsync._synced(p_sub_id int, p_goal pg_snapshot) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int;
    v_pos pg_snapshot;
begin
    select s.group_id, p.snap into v_group, v_pos
    from dbsync.subscriptions s
    join dbsync.ticks p on p.group_id = s.group_id and p.tick_id = s.position_tick
    where s.sub_id = p_sub_id;
    if not found then
        return null;
    end if;
    -- Restored from a pg_dump of another database: nothing is applied (see begin_batch),
    -- and the query below would read changes written since as applied.
    if dbsync._restored_by_dump() then
        return false;
    end if;
    -- Unlogged tables emptied by a crash and not yet put up to be copied again.
    if not exists (select from dbsync.unlogged_intact)
       and exists (select from dbsync.subscription_tables st join dbsync._unlogged_tables() u using (table_id)
                   where st.sub_id = p_sub_id) then
        return false;
    end if;
    return not exists (
               select from dbsync.subscription_tables st
               join dbsync.tables t using (table_id)
               where st.sub_id = p_sub_id and t.removed_at is null
                 and st.state <> 'streaming')
       and not exists (select from dbsync._held_tables() h where h.group_id = v_group)
       and not exists (
               select from dbsync.events e
               where e.group_id = v_group
                 and (e.txid >= pg_snapshot_xmax(v_pos) or e.txid = any (array(select pg_snapshot_xip(v_pos))))
                 and pg_visible_in_snapshot(e.txid, p_goal)
                 and not pg_visible_in_snapshot(e.txid, v_pos));
end
$$;
