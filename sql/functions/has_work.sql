-- dbsync.has_work(p_subscription text) returns boolean
--   Whether begin_batch would find something to apply now: events committed since
--   the subscription's position, tables to copy, or sequences to carry. Takes no tick and no lock. False
--   for a paused or unknown subscription. Called by the sidecar before it sleeps,
--   and for every subscription at every poll: PL/pgSQL keeps its plan for the session.
--   Parameters: p_subscription.
--   Returns: true when there is work.
--   Calls: dbsync._has_new_writers, dbsync._sequences_behind. Tables touched:
--     dbsync.groups, dbsync.subscription_tables, dbsync.subscriptions, dbsync.tables,
--     dbsync.ticks (read).
create or replace function dbsync.has_work(p_subscription text) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return (
        select coalesce((
            select not s.paused
                   and (s.position_tick < g.last_tick_id
                        or exists (select from dbsync.subscription_tables st join dbsync.tables t using (table_id)
                                   where st.sub_id = s.sub_id and t.removed_at is null and st.state <> 'streaming')
                        or dbsync._has_new_writers(s.group_id, p.snap)
                        or dbsync._sequences_behind(s.sub_id))
            from dbsync.subscriptions s
            join dbsync.groups g using (group_id)
            join dbsync.ticks p on p.group_id = s.group_id and p.tick_id = s.position_tick
            where s.name = p_subscription), false));
end
$$;
