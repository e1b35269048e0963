-- dbsync._sync_partitions(p_table_id int, p_queue_rows boolean) returns void
--   Keeps a captured partitioned table's BEFORE TRUNCATE triggers on exactly its
--   leaf partitions (PostgreSQL clones row triggers to new partitions, not
--   statement triggers), and on PostgreSQL 10, which has no row triggers on a
--   partitioned table, its row triggers too. With p_queue_rows, the keys of rows that entered the
--   table by ATTACH PARTITION or left it by DETACH PARTITION are queued: no row
--   trigger sees either. Its triggers, and the row trigger cloned onto the
--   partition, fire ALWAYS (_enable_always). Called by _install_capture (without
--   queueing: the rows present at add_table are the initial copy's business) and by
--   the DDL event trigger.
--   Parameters: p_table_id, p_queue_rows.
--   Returns: nothing.
--   Calls: dbsync._enable_always, dbsync._queue_rows, dbsync._server_has. Tables touched:
--     dbsync.partitions (written); dbsync.shapes, dbsync.tables (read); triggers on the
--     replicated table (dynamic).
create or replace function dbsync._sync_partitions(p_table_id int, p_queue_rows boolean) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp
    set datestyle = 'ISO, YMD' set intervalstyle = 'postgres' set timezone = 'UTC'
    set extra_float_digits = 3 set bytea_output = 'hex' set lc_monetary = 'C' as $$
declare
    t dbsync.tables;
    v_shape dbsync.shapes;
    v_fn regprocedure;
    v_leaf_rows boolean := not dbsync._server_has('partitioned_row_trigger');
    r record;
begin
    select * into t from dbsync.tables where table_id = p_table_id and removed_at is null;
    if not found or not t.partitioned then
        return;
    end if;
    select * into v_shape from dbsync.shapes where table_id = p_table_id order by shape_id desc limit 1;
    v_fn := format('dbsync.%I()', 'capture_' || p_table_id)::regprocedure;
    -- Partitions that left the table: their rows are gone from it.
    for r in select tg.tgrelid::regclass as rel, tg.tgname
             from pg_trigger tg
             where tg.tgfoid = v_fn and tg.tgname = 'dbsync_capture_part_trunc'
               and tg.tgrelid not in (select relid from pg_partition_tree(t.relid)) loop
        if p_queue_rows then
            perform dbsync._queue_rows(t.table_id, v_shape.shape_id, r.rel);
        end if;
        execute format('drop trigger %I on %s', r.tgname, r.rel);
        if v_leaf_rows then
            execute format('drop trigger if exists dbsync_capture_row on %s', r.rel);
        end if;
    end loop;
    -- Partitions that joined it: new rows, and a TRUNCATE trigger of their own.
    for r in select p.relid::regclass as rel
             from pg_partition_tree(t.relid) p
             where p.isleaf and p.relid <> t.relid
               and not exists (select from pg_trigger tg where tg.tgrelid = p.relid and tg.tgfoid = v_fn
                                                          and tg.tgname = 'dbsync_capture_part_trunc') loop
        if p_queue_rows then
            perform dbsync._queue_rows(t.table_id, v_shape.shape_id, r.rel);
        end if;
        execute format('create trigger dbsync_capture_part_trunc before truncate on %s for each statement execute function %s',
                       r.rel, v_fn);
        if v_leaf_rows then
            execute format('create trigger dbsync_capture_row after insert or update or delete on %s for each row execute function %s',
                           r.rel, v_fn);
        end if;
        perform dbsync._enable_always(r.rel);
    end loop;
    -- The partitions, for the sql_drop event trigger (see _on_drop).
    delete from dbsync.partitions p
    where p.table_id = p_table_id and p.relid not in (select relid from pg_partition_tree(t.relid));
    insert into dbsync.partitions (relid, table_id)
    select p.relid, p_table_id from pg_partition_tree(t.relid) p
    where p.isleaf and p.relid <> t.relid
    on conflict (relid) do update set table_id = excluded.table_id;
end
$$;
