-- dbsync.batch_keys(p_group_id int, p_from bigint, p_shape_id int) returns setof text[]
--   The distinct keys of one shape (one table's key at one time) that changed in
--   the batch from tick p_from to the caller's snapshot: the sidecar's reader, whose
--   snapshot is the batch's end, joins them to the table to read each key's row
--   there (see dbsync.batch_plan). SECURITY DEFINER so that the sidecar's role needs
--   no right on the queue itself.
create or replace function dbsync.batch_keys(p_group_id int, p_from bigint, p_shape_id int)
returns setof text[]
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select distinct e.row
    from dbsync._events_between(p_group_id,
                                (select a.snap from dbsync.ticks a where a.group_id = p_group_id and a.tick_id = p_from),
                                pg_current_snapshot()) e
    where e.shape_id = p_shape_id and e.op = 'K'
$$;
