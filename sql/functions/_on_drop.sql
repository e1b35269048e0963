-- dbsync._on_drop() returns event_trigger
--   The sql_drop event trigger (installed with the DDL one). A dropped replicated
--   table stops being captured (its rows stay on the targets) and leaves
--   dbsync.table_status, with a WARNING; so does a dropped carried sequence (by DROP
--   SEQUENCE, or with the table that owns it): it leaves dbsync.sequences, whose row
--   would otherwise name an oid that no longer is one, and the targets keep theirs
--   where the last batch set it. A dropped partition of a replicated table
--   took its rows with it without any trigger seeing them: every subscription copies
--   that table again, so no target keeps rows the source no longer has. A DROP
--   TRIGGER of a capture trigger is refused unless dbsync runs it (_own_ddl). A DROP
--   INDEX (or the CASCADE of a DROP COLLATION and the like) that leaves a replicated
--   table's key without a unique index is refused, as an ALTER TABLE that drops its
--   primary key is (dbsync._check_capturable). So is a
--   key column dropped with what it depended on (DROP DOMAIN ... CASCADE); another
--   column so dropped is listed as DDL not run through execute_ddl.
--   Fires in sessions with session_replication_role = replica too (ENABLE ALWAYS),
--   and works there in origin mode (dbsync._origin_mode).
--   Parameters: none.
--   Returns: nothing (an event trigger).
--   Calls: dbsync._capture_stale, dbsync._check_capturable, dbsync._ddl_group,
--     dbsync._drop_capture_functions, dbsync._install_capture, dbsync._key_is_unique,
--     dbsync._origin_mode, dbsync._request_copy, dbsync._unreplicated_ddl. Tables touched: dbsync.partitions,
--     dbsync.sequences, dbsync.subscription_tables, dbsync.tables (written).
create or replace function dbsync._on_drop() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
    v_mode text := dbsync._origin_mode();
begin
    -- A capture trigger dropped by anyone but dbsync: writes would go uncaptured.
    if tg_tag = 'DROP TRIGGER' and dbsync._ddl_group() is distinct from 0 then
        for r in select t.schema_name, t.table_name
                 from pg_event_trigger_dropped_objects() d
                 join dbsync.tables t on t.removed_at is null
                  and (t.relid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', d.address_names[1], d.address_names[2]))
                       or t.relid in (select a.relid from pg_partition_ancestors(
                                          pg_catalog.to_regclass(pg_catalog.format('%I.%I', d.address_names[1], d.address_names[2]))) a))
                 where d.object_type = 'trigger' and d.address_names[3] like E'dbsync\\_capture\\_%' loop
            raise exception 'dbsync: the capture triggers of %.% cannot be dropped', r.schema_name, r.table_name
                using errcode = 'object_in_use',
                      hint = 'Writes made without them would never reach the targets. Remove the table from replication with dbsync.remove_table first.';
        end loop;
    end if;
    for r in select t.table_id, t.schema_name, t.table_name
             from pg_event_trigger_dropped_objects() d
             join dbsync.tables t on t.relid = d.objid and t.removed_at is null
             where d.classid = 'pg_class'::regclass and d.objsubid = 0 loop
        update dbsync.tables set removed_at = now() where table_id = r.table_id;
        delete from dbsync.partitions where table_id = r.table_id;
        perform dbsync._drop_capture_functions(r.table_id);
        raise warning 'dbsync: replicated table %.% was dropped; it is no longer replicated (its rows stay on the targets)',
                      r.schema_name, r.table_name
            using hint = 'Drop it on the targets too if it should go there as well (dbsync.execute_ddl runs DDL on both sides).';
    end loop;
    -- Without a word, the sidecar stopped setting it and wait_for_sync said in sync:
    -- a DBA who meant to carry a sequence made again under its name must add it again.
    for r in with gone as (
                 delete from dbsync.sequences q
                 using pg_event_trigger_dropped_objects() d
                 where d.classid = 'pg_class'::regclass and d.objsubid = 0 and d.objid = q.relid
                 returning d.schema_name, d.object_name)
             select g.schema_name, g.object_name from gone g loop
        raise warning 'dbsync: carried sequence %.% was dropped; it is no longer carried (the targets keep theirs as the last batch set it)',
                      r.schema_name, r.object_name
            using hint = 'Drop it on the targets too if it should go there as well; a sequence made again under its name is carried once given to dbsync.add_sequence.';
    end loop;
    for r in with gone as (
                 delete from dbsync.partitions p
                 using pg_event_trigger_dropped_objects() d
                 where d.classid = 'pg_class'::regclass and d.objsubid = 0 and d.objid = p.relid
                 returning p.table_id)
             select distinct g.table_id from gone g loop
        perform dbsync._request_copy(null, array[r.table_id]);
        raise notice 'dbsync: a partition of a replicated table was dropped; its subscriptions copy the table again';
    end loop;
    -- Columns dropped with what they depended on (DROP TYPE, DROP DOMAIN, DROP
    -- FUNCTION ... CASCADE): as for ALTER TABLE ... DROP COLUMN (_on_ddl), a key
    -- column is refused, another is listed as DDL the targets need too.
    if tg_tag <> 'ALTER TABLE' then
        for r in select distinct t.table_id, t.group_id from pg_event_trigger_dropped_objects() d
                 join dbsync.tables t on t.relid = d.objid and t.removed_at is null
                 where d.classid = 'pg_class'::regclass and d.objsubid > 0 loop
            perform dbsync._check_capturable(r.table_id);
            if dbsync._capture_stale(r.table_id) then
                perform dbsync._install_capture(r.table_id);
            end if;
            if dbsync._ddl_group() is distinct from r.group_id then
                perform dbsync._unreplicated_ddl(r.table_id, tg_tag);
            end if;
        end loop;
    end if;
    -- (After the columns: a key column dropped so is named.) The catalogs no longer
    -- say which table a dropped index was on, only its schema (a table's indexes are
    -- in the table's): the tables with their relation or a partition there are checked. Not only for DROP INDEX: the CASCADE of a
    -- DROP COLLATION, OPERATOR CLASS or FAMILY, FUNCTION, SCHEMA or EXTENSION that an index
    -- depends on drops it too (any role that owns the collation may), and the key
    -- then took duplicates on the source. Not for ALTER TABLE: one that drops the
    -- primary key and adds another moves the key (_on_ddl, which checks it).
    if tg_tag <> 'ALTER TABLE' then
        for r in select t.schema_name, t.table_name, t.key_columns from dbsync.tables t
                 where t.removed_at is null
                   and exists (select from pg_event_trigger_dropped_objects() d
                               join pg_namespace n on n.nspname = d.schema_name
                               join pg_class c on c.relnamespace = n.oid
                               where d.object_type = 'index'
                                 and (c.oid = t.relid
                                      or c.oid in (select p.relid from dbsync.partitions p where p.table_id = t.table_id)))
                   and not dbsync._key_is_unique(t.relid::regclass, t.key_columns) loop
            -- DROP INDEX CONCURRENTLY has committed its first steps when this runs:
            -- refused, it leaves the index invalid and no longer kept up to date.
            raise exception 'dbsync: the key (%) of %.% is no longer unique', array_to_string(r.key_columns, ', '),
                            r.schema_name, r.table_name
                using errcode = 'invalid_table_definition',
                      hint = 'Keep a unique index on the key columns: create the new one before dropping the old, or remove '
                             'the table with dbsync.remove_table first. A DROP INDEX CONCURRENTLY refused here has left the index '
                             'invalid, so the key is not enforced until REINDEX INDEX makes it valid again.';
        end loop;
    end if;
    if v_mode is not null then
        perform pg_catalog.set_config('session_replication_role', v_mode, true);
    end if;
end
$$;
