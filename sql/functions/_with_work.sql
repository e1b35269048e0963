-- dbsync._with_work(p_sub_id int default null, p_clean int[] default null, p_dirty int[] default null) returns setof int
--   The subscriptions that begin_batch would find something to apply for now:
--   events committed since their position, tables to copy, or sequences to carry;
--   p_sub_id's alone, or with NULL every subscription's (the sidecar's poll, once
--   a second per process: one query for all, where a call of has_work per
--   subscription cost about 1.5 ms each with 100 of them; 0.1 ms now, new
--   writers being looked for once per group and position). Paused subscriptions
--   have none. Takes no tick and no lock.
--   p_clean, p_dirty: groups the caller knows to have no new writers since their
--   last tick, or to have some (dbsync._poll_groups, which keeps verdicts between
--   polls): their queue is not looked into here.
--   Parameters: p_sub_id, p_clean, p_dirty.
--   Returns: the sub_id of each subscription with work.
--   Calls: dbsync._has_new_writers, dbsync._sequences_behind. Tables touched:
--     dbsync.groups, dbsync.subscription_tables, dbsync.subscriptions, dbsync.tables,
--     dbsync.ticks (read).
create or replace function dbsync._with_work(p_sub_id int default null, p_clean int[] default null, p_dirty int[] default null)
returns setof int
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    -- (An array, so that one subscription's rows are found by index.)
    v_subs int[] := case when p_sub_id is null then array(select s.sub_id from dbsync.subscriptions s)
                         else array[p_sub_id] end;
begin
    -- (PL/pgSQL: its plans are kept for the session.)
    return query
    with subs as materialized (
        select s.sub_id, s.group_id, s.position_tick, p.snap,
               -- A tick taken since the position, or a copy to make (one scan of
               -- the tables waiting for one).
               s.position_tick < g.last_tick_id
               or s.sub_id in (select st.sub_id from dbsync.subscription_tables st join dbsync.tables t using (table_id)
                               where t.removed_at is null and st.state <> 'streaming'
                                 and st.sub_id = any (v_subs)) as ready
        from dbsync.subscriptions s
        join dbsync.groups g using (group_id)
        join dbsync.ticks p on p.group_id = s.group_id and p.tick_id = s.position_tick
        where s.sub_id = any (v_subs)
          and not s.paused
    ),
    -- Events without a tick yet: asked once per group and position, where a
    -- group's subscriptions mostly stand together (its targets).
    fresh as materialized (
        select d.group_id, d.position_tick,
               case when d.group_id = any (p_dirty) then true
                    when d.group_id = any (p_clean) then false
                    else dbsync._has_new_writers(d.group_id, d.snap) end as yes
        from (select distinct on (x.group_id, x.position_tick) x.group_id, x.position_tick, x.snap
              from subs x where not x.ready
              order by x.group_id, x.position_tick) d
    )
    select x.sub_id
    from subs x
    left join fresh f on f.group_id = x.group_id and f.position_tick = x.position_tick
    where x.ready or f.yes
       -- (Only where the group carries sequences: a call per subscription cost
       -- about 2 ms a poll at 100 subscriptions, a fifth of it.)
       or (x.group_id in (select q.group_id from dbsync.sequences q) and dbsync._sequences_behind(x.sub_id));
end
$$;
