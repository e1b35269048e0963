-- dbsync._batch_summary(p_group_id int, p_from bigint, p_to bigint,
--                       p_after bigint default null, p_before bigint default null)
--   returns table (shape_id int, events bigint, last_truncate bigint)
--   The events of batch (p_from, p_to] of a group per shape, optionally only those
--   with ev_id between p_after and p_before (the part of a batch between two DDL
--   events): how many, and the id of the last TRUNCATE. shape_id null: the DDL
--   events queued by execute_ddl. Read by dbsync.advance for the whole batch and by
--   the sidecar for the parts of a batch with DDL.
--   enable_sort is off for the call: the planner estimates batch_events at a few
--   rows and sorted the whole batch by shape to count it (410 ms for 400,000
--   events, where hashing took 150).
create or replace function dbsync._batch_summary(p_group_id int, p_from bigint, p_to bigint,
                                                 p_after bigint default null, p_before bigint default null)
returns table (shape_id int, events bigint, last_truncate bigint)
language plpgsql stable set enable_sort = off set search_path = pg_catalog, pg_temp as $$
begin
    -- PL/pgSQL, not SQL: its body is checked when first run, after batch_events
    -- exists (function files are installed in name order).
    return query
    select e.shape_id, count(*), max(e.ev_id) filter (where e.op = 'T')
    from dbsync.batch_events(p_group_id, p_from, p_to) e
    where (p_after is null or e.ev_id > p_after) and (p_before is null or e.ev_id < p_before)
    group by e.shape_id;
end
$$;
