-- dbsync.next_batch(subscription text, max_events bigint default 100000)
--   returns table (sub_id int, group_id int, tick_from bigint, tick_to bigint, table_ids int[])
--   The next batch a subscription should apply: from its position to the furthest
--   tick that keeps the batch near max_events (at least one tick), never crossing a
--   table's copy tick, nor passing the tick of a copy not yet committed, so that a
--   table's events are applied exactly from its copy on; nor passing the tick a
--   running verification holds (dbsync._verify_hold). table_ids: the tables whose events belong in this batch (copied, and copied
--   at or before tick_from). No row when there is nothing to apply or the
--   subscription is paused. Called by the sidecar.
create or replace function dbsync.next_batch(subscription text, max_events bigint default 100000)
returns table (sub_id int, group_id int, tick_from bigint, tick_to bigint, table_ids int[])
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    with s as (
        select s.sub_id, s.group_id, s.position_tick, p.max_ev_id as start_ev_id
        from dbsync.subscriptions s
        join dbsync.ticks p on p.group_id = s.group_id and p.tick_id = s.position_tick
        where s.name = next_batch.subscription and not s.paused
    ), lim as (
        select least(min(st.copy_tick), dbsync._verify_hold(next_batch.subscription)) as tick
        from s join dbsync.subscription_tables st on st.sub_id = s.sub_id
        where st.copy_tick > s.position_tick
           -- A copy still running holds the stream at its tick.
           or (st.state = 'copying' and st.copy_tick >= s.position_tick)
    ), upto as (
        select coalesce(
                   (select max(t.tick_id) from dbsync.ticks t
                    where t.group_id = s.group_id and t.tick_id > s.position_tick
                      and t.tick_id <= coalesce(lim.tick, t.tick_id)
                      and t.max_ev_id - s.start_ev_id <= max_events),
                   (select min(t.tick_id) from dbsync.ticks t
                    where t.group_id = s.group_id and t.tick_id > s.position_tick
                      and t.tick_id <= coalesce(lim.tick, t.tick_id))) as tick
        from s, lim
    )
    select s.sub_id, s.group_id, s.position_tick, upto.tick,
           array(select st.table_id from dbsync.subscription_tables st
                 where st.sub_id = s.sub_id and st.state in ('catching_up', 'streaming')
                   and st.copy_tick <= s.position_tick
                 order by st.table_id)
    from s, upto
    where upto.tick is not null
$$;
