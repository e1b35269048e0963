-- dbsync._capture_insert(p_group_id int, p_shape_id int, p_op "char", p_key text, p_from text) returns text
--   The INSERT of a capture function (see _capture_function): p_key (SQL for one
--   key as text[], or NULL for a TRUNCATE marker) for every row of p_from (a FROM
--   clause, or '' for one row) as events of op p_op and shape p_shape_id, into the
--   group's current slot. Through dbsync.events: routing costs about what naming the
--   slot's table does (its partition constraint is checked then), without a branch
--   per slot (bench/capture-profile.ts).
create or replace function dbsync._capture_insert(p_group_id int, p_shape_id int, p_op "char", p_key text, p_from text)
returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select format('insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
    select %s, (v_state operator(pg_catalog.%%) 4)::pg_catalog.int2, pg_catalog.nextval(%L::pg_catalog.regclass), %s, %L, %s %s;',
                  p_group_id, format('dbsync.%I', 'events_seq_' || p_group_id), p_shape_id, p_op,
                  coalesce(p_key, 'null::pg_catalog.text[]'), p_from)
$$;
