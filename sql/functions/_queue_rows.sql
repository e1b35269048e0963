-- dbsync._queue_rows(p_table_id int, p_shape_id int, rel regclass, op "char") returns void
--   Queues every row of rel (a partition of the table) as events of op 'U' or 'D',
--   in the given shape. The caller pins the output settings (see _install_capture).
create or replace function dbsync._queue_rows(p_table_id int, p_shape_id int, rel regclass, op "char")
returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int := (select group_id from dbsync.tables where table_id = p_table_id);
begin
    -- Names go in as format() arguments, never into its format string.
    execute format(
        'insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
         select %s, g.cur_slot, nextval(%L), %s, %L, array[%s]
         from only %s o, dbsync.groups g where g.group_id = %s',
        v_group, format('dbsync.%I', 'events_seq_' || v_group), p_shape_id, op,
        (select string_agg(format('o.%I::text', c), ', ' order by i)
         from dbsync.shapes s, unnest(s.columns) with ordinality u(c, i) where s.shape_id = p_shape_id),
        rel, v_group);
end
$$;
