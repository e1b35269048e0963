-- dbsync._sequences_behind(p_sub_id int, p_goal jsonb default null) returns boolean
--   Whether a sequence carried by the subscription's group is ahead of the value
--   last set on its target (beyond it in the sequence's direction: below it for a
--   negative increment): of its value now, or of the values in p_goal
--   ({seq_id: value}, taken when a wait_for_sync began). PL/pgSQL keeps its plan:
--   has_work calls it for every subscription at every poll.
--   Parameters: p_sub_id, p_goal.
--   Returns: boolean.
--   Calls: nothing. Tables touched: dbsync.sequences, dbsync.subscription_sequences,
--     dbsync.subscriptions, pg_sequence (read).
create or replace function dbsync._sequences_behind(p_sub_id int, p_goal jsonb default null) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return (
        select exists (
            select from dbsync.subscriptions s
            join dbsync.sequences q on q.group_id = s.group_id
            join pg_sequence ps on ps.seqrelid = q.relid
            left join dbsync.subscription_sequences p on p.sub_id = s.sub_id and p.seq_id = q.seq_id
            cross join lateral (select coalesce((p_goal->>q.seq_id::text)::bigint, pg_sequence_last_value(q.relid)) as goal) g
            where s.sub_id = p_sub_id
              and case when ps.seqincrement > 0 then g.goal > coalesce(p.pushed, -9223372036854775808)
                       else g.goal < coalesce(p.pushed, 9223372036854775807) end));
end
$$;

-- dbsync._sequence_goal(p_sub_id int) returns jsonb
--   The current value of each sequence the subscription's group carries, {seq_id: value}.
--   Parameters: p_sub_id.
--   Returns: jsonb.
--   Calls: nothing. Tables touched: dbsync.sequences, dbsync.subscriptions (read).
create or replace function dbsync._sequence_goal(p_sub_id int) returns jsonb
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce(jsonb_object_agg(q.seq_id::text, pg_sequence_last_value(q.relid)), '{}')
    from dbsync.subscriptions s
    join dbsync.sequences q on q.group_id = s.group_id
    where s.sub_id = p_sub_id and pg_sequence_last_value(q.relid) is not null
$$;
