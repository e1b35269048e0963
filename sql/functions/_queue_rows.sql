-- dbsync._queue_rows(p_table_id int, p_shape_id int, rel regclass) returns void
--   Queues the key of every row of rel (a partition of the table, attached,
--   detached or truncated) as 'K' events of the shape: the sidecar then reads what
--   those keys hold at the batch's snapshot. The caller pins the output settings
--   when the key's types need it (see _install_capture).
--   Parameters: p_table_id, p_shape_id, rel.
--   Returns: nothing.
--   Calls: dbsync._text_of. Tables touched: dbsync.events (written); dbsync.shapes,
--     dbsync.tables (read).
create or replace function dbsync._queue_rows(p_table_id int, p_shape_id int, rel regclass)
returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int := (select group_id from dbsync.tables where table_id = p_table_id);
begin
    -- The xid before an event is numbered (dbsync._poll_groups counts on it): a
    -- BEFORE TRUNCATE trigger may be its transaction's first write. Once a call.
    perform pg_current_xact_id();
    -- Names go in as format() arguments, never into its format string.
    execute format(
        'insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
         select %s, (pg_catalog.pg_sequence_last_value(%L::pg_catalog.regclass) %% 4)::int2,
                pg_catalog.nextval(%L::pg_catalog.regclass), %s, ''K'', array[%s]
         from only %s o',
        v_group, format('dbsync.%I', 'group_state_' || v_group), format('dbsync.%I', 'events_seq_' || v_group),
        p_shape_id,
        (select string_agg(dbsync._text_of(a.atttypid, format('o.%I', a.attname)), ', ' order by u.o)
         from dbsync.shapes s
         cross join lateral unnest(s.key_attnums) with ordinality u(n, o)
         join pg_attribute a on a.attrelid = rel and a.attname = s.columns[u.o] and not a.attisdropped
         where s.shape_id = p_shape_id),
        rel);
end
$$;
