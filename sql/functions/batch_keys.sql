-- dbsync.batch_keys(p_group_id int, p_from bigint) returns table (shape_id int, k text[])
--   The distinct keys that changed in the batch from tick p_from to the caller's
--   snapshot, with the shape (one table's key at one time) each was recorded in:
--   the sidecar's reader, whose snapshot is the batch's end, joins them to the
--   tables to read each key's row there (see dbsync.batch_plan). One scan of the
--   batch's events serves every table of the batch. SECURITY DEFINER so that the
--   sidecar's role needs no right on the queue itself. PL/pgSQL so that the query
--   is planned with the group's value: only its queue partitions (see
--   _has_new_writers). The snapshot is passed as a value too: a sub-select among
--   _events_between's arguments keeps the planner from inlining it, and the
--   function then reads every group's partitions (170 ms and 400 locks with 50
--   groups, against a few ms).
create or replace function dbsync.batch_keys(p_group_id int, p_from bigint)
returns table (shape_id int, k text[])
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_from pg_snapshot := (select a.snap from dbsync.ticks a where a.group_id = p_group_id and a.tick_id = p_from);
begin
    return query
    select distinct e.shape_id, e.row
    from dbsync._events_between(p_group_id, v_from, pg_current_snapshot()) e
    where e.op = 'K';
end
$$;
