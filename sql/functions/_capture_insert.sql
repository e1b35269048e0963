-- dbsync._capture_insert(p_group_id int, p_shape_id int, p_op "char", p_key text, p_from text) returns text
--   PL/pgSQL for a capture trigger (see _install_capture): queue p_key (SQL for one
--   key as text[], or NULL for a TRUNCATE marker) for every row of p_from (a FROM
--   clause, or '' for one row) as events of op p_op and shape p_shape_id, into the
--   group's current slot. The slot's table is named directly, one branch per slot,
--   on the variable v_slot: routing a row through dbsync.events costs each
--   statement a partition lookup set up anew (measured by bench/capture-profile.ts).
--   The last branch takes any other value too, and its slot's partition constraint
--   then refuses the row: an error, never an event lost.
--   Every name and operator is qualified: capture functions run without SET
--   search_path.
create or replace function dbsync._capture_insert(p_group_id int, p_shape_id int, p_op "char", p_key text, p_from text)
returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select string_agg(
               format('%s
            insert into dbsync.%I (group_id, slot, ev_id, shape_id, op, row)
            select %s, v_slot, pg_catalog.nextval(%L::pg_catalog.regclass), %s, %L, %s %s;',
                      case s when 0 then 'if v_slot operator(pg_catalog.=) 0 then'
                             when 1 then 'elsif v_slot operator(pg_catalog.=) 1 then' else 'else' end,
                      'events_' || p_group_id || '_' || s,
                      p_group_id, format('dbsync.%I', 'events_seq_' || p_group_id), p_shape_id, p_op,
                      coalesce(p_key, 'null::pg_catalog.text[]'), p_from),
               E'\n        ' order by s)
           || E'\n        end if;'
    from generate_series(0, 2) s
$$;
