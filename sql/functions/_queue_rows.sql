-- dbsync._queue_rows(t dbsync.tables, s dbsync.shapes, rel regclass, op "char") returns void
--   Queues every row of rel (a partition of t) as events of op 'U' or 'D', in shape
--   s. The caller pins the output settings (see _install_capture).
create or replace function dbsync._queue_rows(t dbsync.tables, s dbsync.shapes, rel regclass, op "char")
returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    execute format(
        'insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
         select %s, g.cur_slot, nextval(%L), %s, %L, array[%s]
         from only %s o, dbsync.groups g where g.group_id = %s',
        t.group_id, format('dbsync.%I', 'events_seq_' || t.group_id), s.shape_id, op,
        (select string_agg(format('o.%I::text', c), ', ' order by i) from unnest(s.columns) with ordinality u(c, i)),
        rel, t.group_id);
end
$$;
