-- dbsync._queue_ddl(p_group_id int, p_ddl text, p_search_path text) returns void
--   Queues DDL as an 'X' event of the group, then regenerates the capture of every
--   table of the group, so events after it carry the new shape. Other writers of an
--   altered table waited for the DDL's lock, so their events come after this one.
create or replace function dbsync._queue_ddl(p_group_id int, p_ddl text, p_search_path text) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_table int;
begin
    insert into dbsync.events (group_id, slot, ev_id, shape_id, op, row)
    select p_group_id, g.cur_slot, nextval(format('dbsync.%I', 'events_seq_' || p_group_id)::regclass),
           null, 'X', array[p_ddl, p_search_path]
    from dbsync.groups g where g.group_id = p_group_id;
    insert into dbsync.ddl_log (group_id, command_tag, statement, via_execute_ddl)
    values (p_group_id, 'execute_ddl', p_ddl, true);
    for v_table in select table_id from dbsync.tables
                   where group_id = p_group_id and removed_at is null
                     and exists (select from pg_class c where c.oid = relid) loop
        perform dbsync._sync_partitions(v_table, true);
        perform dbsync._install_capture(v_table);
    end loop;
end
$$;
