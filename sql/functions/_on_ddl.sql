-- dbsync._on_ddl() returns event_trigger
--   The DDL event trigger (installed by migrate when the migrating role may create
--   event triggers). For each captured table altered outside execute_ddl: keeps
--   capture working on the new shape (writes never fail, no column is silently left
--   out), records the change in dbsync.ddl_log, and warns that targets need the same
--   change. For partitions created, attached or detached: keeps the partition
--   TRUNCATE triggers and queues the rows that came or went.
create or replace function dbsync._on_ddl() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
    t dbsync.tables;
begin
    -- execute_ddl queues the DDL first and then does this work itself, so that the
    -- events it makes come after the DDL in the stream.
    if coalesce(current_setting('dbsync.in_execute_ddl', true), 'off') = 'on' then
        return;
    end if;
    for r in select distinct c.objid, c.command_tag
             from pg_event_trigger_ddl_commands() c
             where c.object_type in ('table', 'table column') and c.classid = 'pg_class'::regclass loop
        for t in select tb.* from dbsync.tables tb
                 where tb.removed_at is null
                   and (tb.relid = r.objid
                        or tb.relid in (select a.relid from pg_partition_ancestors(r.objid) a)) loop
            perform dbsync._sync_partitions(t.table_id, true);
            if t.relid = r.objid then
                perform dbsync._install_capture(t.table_id);
                insert into dbsync.ddl_log (group_id, table_name, command_tag, statement, via_execute_ddl)
                values (t.group_id, format('%I.%I', t.schema_name, t.table_name), r.command_tag, current_query(), false);
                raise warning 'dbsync: % of replicated table %.% was not run through dbsync.execute_ddl',
                              r.command_tag, t.schema_name, t.table_name
                    using hint = 'Make the same change on every target of the group (see dbsync.unreplicated_ddl); '
                                 'replication of this table stops with an error until the target matches.';
            end if;
        end loop;
    end loop;
end
$$;
