-- dbsync._synced(p_sub_id int, p_goal pg_snapshot) returns boolean
--   True when every event visible in p_goal is applied by the subscription (visible
--   in its position tick's snapshot) and none of its tables is still to be copied.
create or replace function dbsync._synced(p_sub_id int, p_goal pg_snapshot) returns boolean
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select not exists (
               select from dbsync.subscription_tables st
               join dbsync.tables t using (table_id)
               where st.sub_id = p_sub_id and t.removed_at is null
                 and st.state <> 'streaming')
       and not exists (
               select from dbsync.events e
               where e.group_id = s.group_id
                 and (e.txid >= pg_snapshot_xmax(p.snap) or e.txid = any (array(select pg_snapshot_xip(p.snap))))
                 and pg_visible_in_snapshot(e.txid, p_goal)
                 and not pg_visible_in_snapshot(e.txid, p.snap))
    from dbsync.subscriptions s
    join dbsync.ticks p on p.group_id = s.group_id and p.tick_id = s.position_tick
    where s.sub_id = p_sub_id
$$;
