-- dbsync._on_ddl() returns event_trigger
--   The DDL event trigger (installed by migrate when the migrating role may create
--   event triggers). For each captured table a command altered: keeps capture on the
--   table's current key (regenerated when the key's columns, their names or types
--   changed; only for the tables the command touched, so DDL locks nothing else), keeps the partition TRUNCATE triggers and queues the keys of rows
--   that came or went with a partition. Inside execute_ddl (dbsync._ddl_group) a
--   table of another group is refused, since its targets would not get the DDL;
--   outside it the change is logged in dbsync.ddl_log and a WARNING says that the
--   targets need the same change. DDL that would make capture miss rows (a key
--   column made nullable or no longer unique, capture triggers disabled) is refused
--   (dbsync._check_capturable), as is renaming a capture trigger; capture triggers
--   set back to fire ORIGIN only are made ALWAYS again. Fires in sessions with
--   session_replication_role = replica too (ENABLE ALWAYS), and works there in
--   origin mode (dbsync._origin_mode).
--   Parameters: none.
--   Returns: nothing (an event trigger).
--   Calls: dbsync._capture_stale, dbsync._capture_triggers, dbsync._check_capturable,
--     dbsync._ddl_group, dbsync._enable_always, dbsync._install_capture,
--     dbsync._origin_mode, dbsync._sync_partitions. Tables touched: dbsync.ddl_log (written); dbsync.tables
--     (read).
create or replace function dbsync._on_ddl() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
    t dbsync.tables;
    v_group int := dbsync._ddl_group();
    v_mode text := dbsync._origin_mode();
begin
    -- A capture trigger renamed could then be dropped as if it were the owner's own
    -- (the drop event trigger knows them by name).
    for r in select tg.tgrelid::regclass as rel
             from pg_event_trigger_ddl_commands() c
             join pg_trigger tg on tg.oid = c.objid
             join pg_proc p on p.oid = tg.tgfoid
             where c.classid = 'pg_trigger'::regclass and p.pronamespace = 'dbsync'::regnamespace
               and p.proname like 'capture\_%' and tg.tgname not like 'dbsync\_capture\_%' loop
        raise exception 'dbsync: the capture triggers of % cannot be renamed', r.rel
            using errcode = 'object_in_use',
                  hint = 'dbsync finds them by name. Remove the table from replication with dbsync.remove_table first.';
    end loop;
    for r in select distinct c.objid, c.command_tag
             from pg_event_trigger_ddl_commands() c
             where c.object_type in ('table', 'table column') and c.classid = 'pg_class'::regclass loop
        for t in select tb.* from dbsync.tables tb
                 where tb.removed_at is null
                   and (tb.relid = r.objid
                        or tb.relid in (select a.relid from pg_partition_ancestors(r.objid) a)) loop
            if v_group is not null and v_group <> 0 and t.group_id <> v_group then
                raise exception 'execute_ddl: %.% belongs to group "%", not "%"', t.schema_name, t.table_name,
                                (select g.name from dbsync.groups g where g.group_id = t.group_id),
                                (select g.name from dbsync.groups g where g.group_id = v_group)
                    using errcode = 'invalid_parameter_value',
                          hint = format('Run this DDL with dbsync.execute_ddl(%L, ...), so that the targets of that group get it.',
                                        (select g.name from dbsync.groups g where g.group_id = t.group_id));
            end if;
            -- Group 0: dbsync's own ALTER of its triggers (_enable_always), in the
            -- middle of keeping this table's capture; only the check is left to do.
            if v_group is not distinct from 0 then
                perform dbsync._check_capturable(t.table_id);
                continue;
            end if;
            perform dbsync._sync_partitions(t.table_id, true);
            if t.relid = r.objid then
                -- Only when the key moved: most DDL leaves capture as it is, and
                -- regenerating takes locks and catalog churn on every call.
                if dbsync._capture_stale(t.table_id) then
                    perform dbsync._install_capture(t.table_id);
                end if;
                if v_group is null then
                    insert into dbsync.ddl_log (group_id, table_name, command_tag, statement, via_execute_ddl)
                    values (t.group_id, format('%I.%I', t.schema_name, t.table_name), r.command_tag, current_query(), false);
                    raise warning 'dbsync: % of replicated table %.% was not run through dbsync.execute_ddl',
                                  r.command_tag, t.schema_name, t.table_name
                        using hint = 'Make the same change on every target of the group (see dbsync.unreplicated_ddl), '
                                     'then select dbsync.acknowledge_ddl(ddl_id); replication of this table stops with an '
                                     'error until the target matches.';
                end if;
            end if;
            -- ENABLE TRIGGER ALL (or ENABLE TRIGGER on one of dbsync's) makes a capture
            -- trigger fire ORIGIN only: sessions in session_replication_role = replica
            -- would then write without capture. Back to ALWAYS; a disabled one (or one
            -- firing in replica mode only) is refused below instead.
            if not exists (select from dbsync._capture_triggers(t.relid, false) tg where tg.enabled in ('D', 'R')) then
                perform dbsync._enable_always(t.relid);
            end if;
            -- After _install_capture: it may have moved the key to a new primary key.
            perform dbsync._check_capturable(t.table_id);
        end loop;
    end loop;
    if v_mode is not null then
        perform pg_catalog.set_config('session_replication_role', v_mode, true);
    end if;
end
$$;
