-- dbsync.status: one row per subscription, what a DBA checks first.
--   state: paused | error (last batch failed, retrying; a table's copy cannot
--   start; DDL outside execute_ddl changed a table's rows on the source only and
--   waits for dbsync.acknowledge_ddl; or background verification found rows that
--   differ on the target) |
--   copying (tables still to copy) | streaming. backlog_events: events captured and not yet applied (from the
--   group's sequence, so it may count a few rolled-back ones). lag_seconds: 0 when
--   nothing is pending, else how old the target's state is: the time since the tick
--   the target stands at.
--   verify_differences: rows that background verification (`dbsync run
--   --verify-interval`) found differing on the target, over the subscription's
--   tables (see dbsync.table_status and dbsync.verify_progress); last_verified_at:
--   when it last compared a range of them.
--   A reader that may not read dbsync.verifications (a monitoring role,
--   dbsync.grant_monitor) gets last_error without what may quote row values
--   (dbsync._shows_values).
create or replace view dbsync.status as
select s.name,
       g.name as group_name,
       case when s.paused then 'paused'
            when s.last_error is not null then 'error'
            when exists (select from dbsync.subscription_tables st join dbsync.tables t using (table_id)
                         where st.sub_id = s.sub_id and t.removed_at is null and st.state = 'error') then 'error'
            when exists (select from dbsync.subscription_tables st join dbsync.tables t using (table_id)
                         where st.sub_id = s.sub_id and t.removed_at is null
                           and st.state in ('pending', 'copying')) then 'copying'
            when hd.table_name is not null then 'error'
            when vd.table_name is not null then 'error'
            else 'streaming' end as state,
       s.paused,
       b.backlog as backlog_events,
       case when b.backlog = 0 then 0::double precision
            else extract(epoch from clock_timestamp() - p.created_at)::double precision end as lag_seconds,
       s.position_tick as last_applied_tick,
       s.applied_at as last_applied_at,
       s.rows_per_second,
       s.batches_applied,
       s.events_applied,
       dbsync._without_values(coalesce(s.last_error, te.last_error, hd.message, vd.message), r.shows) as last_error,
       s.last_error_sqlstate,
       coalesce(s.last_error_table, te.table_name, hd.table_name, vd.table_name) as last_error_table,
       s.last_error_tick,
       coalesce(s.last_error_at, te.last_error_at, hd.logged_at, vd.found_at) as last_error_at,
       s.error_count,
       s.created_at,
       coalesce(vs.differences, 0) as verify_differences,
       vs.verified_at as last_verified_at
from dbsync.subscriptions s
join dbsync.groups g using (group_id)
-- What the reader may see of row values in the texts (dbsync._shows_values).
cross join (select dbsync._shows_values() as shows) r
-- A left join: a subscription whose tick the queue lost (see target_position) must
-- still show, with its error.
left join dbsync.ticks p on p.group_id = s.group_id and p.tick_id = s.position_tick
left join lateral (
    select st.last_error, st.last_error_at, format('%I.%I', t.schema_name, t.table_name) as table_name
    from dbsync.subscription_tables st join dbsync.tables t using (table_id)
    where st.sub_id = s.sub_id and t.removed_at is null and st.state = 'error'
    order by st.last_error_at desc limit 1
) te on true
left join lateral (
    select sum(v.differences)::bigint as differences, max(v.verified_at) as verified_at
    from dbsync.verify_progress v join dbsync.tables t using (table_id)
    where v.sub_id = s.sub_id and t.removed_at is null
) vs on true
-- The first change outside execute_ddl that a table of the group waits on
-- (dbsync._unreplicated_ddl); the message is table_status's.
left join lateral (
    select h.table_name, h.logged_at, dbsync._held_message(h.ddl_id, h.command_tag, h.table_name) as message
    from dbsync._held_tables() h
    where h.group_id = s.group_id
    order by h.ddl_id limit 1
) hd on true
-- The table whose differences were found last; the message is table_status's.
left join lateral (
    select format('%I.%I', t.schema_name, t.table_name) as table_name, v.found_at,
           dbsync._differences_message(s.name, t.schema_name, t.table_name, v.differences, vs.differences,
                                       v.differing_keys, r.shows) as message
    from dbsync.verify_progress v join dbsync.tables t using (table_id)
    where v.sub_id = s.sub_id and t.removed_at is null and v.differences > 0
    order by v.found_at desc, v.table_id limit 1
) vd on true
cross join lateral (
    select greatest(dbsync._last_ev_id(s.group_id) - p.max_ev_id, 0) as backlog
) b;
