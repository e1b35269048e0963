-- dbsync._sequences_behind(p_sub_id int, p_goal jsonb default null) returns boolean
--   Whether the target may not have a sequence the subscription's group carries as
--   the source has it: the value last set there (the next value nextval gives,
--   dbsync.sidecar_sequences) is neither the source's now nor the one in p_goal
--   ({seq_id: value}, taken when a wait_for_sync began), nor between the two in the
--   sequence's direction (a busy sequence moves on while the target catches up).
--   Any other difference, backwards too (setval, RESTART), makes the target behind:
--   a failover must hand out what the source would have. PL/pgSQL keeps its plan:
--   has_work calls it for every subscription at every poll.
--   Parameters: p_sub_id, p_goal.
--   Returns: boolean.
--   Calls: dbsync.sidecar_sequences. Tables touched: dbsync.subscription_sequences,
--     dbsync.subscriptions (read).
create or replace function dbsync._sequences_behind(p_sub_id int, p_goal jsonb default null) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int := (select s.group_id from dbsync.subscriptions s where s.sub_id = p_sub_id);
begin
    return (
        select exists (
            select from dbsync.sidecar_sequences(v_group) q
            left join dbsync.subscription_sequences p on p.sub_id = p_sub_id and p.seq_id = q.seq_id
            cross join lateral (select coalesce(q.next_value, q.value)::bigint as now, q.increment::bigint > 0 as up) n
            cross join lateral (select coalesce((p_goal->>q.seq_id::text)::bigint, n.now) as goal) g
            where p.pushed is distinct from n.now and p.pushed is distinct from g.goal
              and not case when n.up then p.pushed > g.goal and p.pushed <= n.now
                           else p.pushed < g.goal and p.pushed >= n.now end is true));
end
$$;

-- dbsync._sequence_goal(p_sub_id int) returns jsonb
--   The state of each sequence the subscription's group carries, {seq_id: value}:
--   the next value nextval gives (dbsync.sidecar_sequences), as the sidecar reports it.
--   Parameters: p_sub_id.
--   Returns: jsonb.
--   Calls: dbsync.sidecar_sequences. Tables touched: dbsync.subscriptions (read).
create or replace function dbsync._sequence_goal(p_sub_id int) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return (
        select coalesce(jsonb_object_agg(q.seq_id::text, coalesce(q.next_value, q.value)::bigint), '{}')
        from dbsync.subscriptions s
        cross join lateral dbsync.sidecar_sequences(s.group_id) q
        where s.sub_id = p_sub_id);
end
$$;
