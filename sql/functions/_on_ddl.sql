-- dbsync._on_ddl() returns event_trigger
--   The DDL event trigger (installed by migrate when the migrating role may create
--   event triggers). For each captured table a command altered: keeps capture on the
--   table's current key (regenerated when the key's columns, their names or types
--   changed, or a table became a partition or an inheritance child; only for the tables the command touched, so DDL locks nothing else), keeps the partition TRUNCATE triggers and queues the keys of rows
--   that came or went with a partition. Inside execute_ddl (dbsync._ddl_group) a
--   table of another group is refused, since its targets would not get the DDL;
--   outside it the change is logged in dbsync.ddl_log and a WARNING says that the
--   targets need the same change (dbsync._unreplicated_ddl); a column added there
--   whose existing rows got values each server computes for itself without a
--   rewrite (a default of now(): dbsync._own_values_added) has the table copied
--   again once the change is acknowledged (rewrites: dbsync._on_rewrite), as are a
--   table renamed or moved to another schema, or whose schema was renamed
--   (dbsync._follow_name), or one of whose columns was renamed (dbsync._column_names), and a
--   column retyped between timestamp and timestamptz (dbsync._timestamps_retyped,
--   no rewrite under UTC; a typed table's too, by ALTER TYPE ... CASCADE). So is an ALTER TYPE of
--   a type that a replicated column holds (dbsync._types_holding), unless
--   execute_ddl of that table's group runs it. DDL that would make capture miss rows (a key
--   column made nullable or no longer unique, capture triggers disabled) is refused
--   (dbsync._check_capturable), as is renaming a capture trigger; capture triggers
--   set back to fire ORIGIN only are made ALWAYS again. Fires in sessions with
--   session_replication_role = replica too (ENABLE ALWAYS), and works there in
--   origin mode (dbsync._origin_mode).
--   Parameters: none.
--   Returns: nothing (an event trigger).
--   Calls: dbsync._capture_stale, dbsync._capture_triggers, dbsync._check_capturable,
--     dbsync._check_snapshot, dbsync._ddl_group, dbsync._enable_always,
--     dbsync._column_names, dbsync._columns_recorded, dbsync._follow_name, dbsync._install_capture, dbsync._origin_mode, dbsync._own_values_added, dbsync._sync_partitions,
--     dbsync._timestamps_retyped, dbsync._types_holding, dbsync._unreplicated_ddl. Tables touched: dbsync.tables (read;
--     its names written by _follow_name).
create or replace function dbsync._on_ddl() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
    t dbsync.tables;
    v_group int := dbsync._ddl_group();
    v_mode text := dbsync._origin_mode();
    v_retyped boolean;
    v_renamed boolean;
    v_columns_renamed boolean;
begin
    -- A capture trigger renamed could then be dropped as if it were the owner's own
    -- (the drop event trigger knows them by name).
    for r in select tg.tgrelid::regclass as rel
             from pg_event_trigger_ddl_commands() c
             join pg_trigger tg on tg.oid = c.objid
             join pg_proc p on p.oid = tg.tgfoid
             where c.classid = 'pg_trigger'::regclass and p.pronamespace = 'dbsync'::regnamespace
               and p.proname like E'capture\\_%' and tg.tgname not like E'dbsync\\_capture\\_%' loop
        raise exception 'dbsync: the capture triggers of % cannot be renamed', r.rel
            using errcode = 'object_in_use',
                  hint = 'dbsync finds them by name. Remove the table from replication with dbsync.remove_table first.';
    end loop;
    perform dbsync._check_snapshot(array(select c.objid from pg_event_trigger_ddl_commands() c
                                         where c.classid = 'pg_class'::regclass));
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
                -- The name the targets know it by (RENAME, SET SCHEMA): kept in
                -- dbsync.tables. Outside execute_ddl they keep the old one until
                -- their DBA renames it, and a batch meanwhile writes the table's rows
                -- under its new name there: into another table, where one has it (two
                -- tables' names swapped). Held, then copied again (_unreplicated_ddl).
                v_renamed := dbsync._follow_name(t.table_id);
                -- Only when the key moved: most DDL leaves capture as it is, and
                -- regenerating takes locks and catalog churn on every call.
                if dbsync._capture_stale(t.table_id) then
                    perform dbsync._install_capture(t.table_id);
                end if;
                -- (Through execute_ddl too: their records must follow.)
                v_retyped := dbsync._timestamps_retyped(t.table_id);
                v_columns_renamed := dbsync._columns_recorded(t.table_id, 'column_names', dbsync._column_names(t.relid));
                if v_group is null then
                    -- A column added with a default that is stable, not volatile
                    -- (now(), current_user), fills the rows with a missing value, read
                    -- on each server for itself, and rewrites nothing (see _on_rewrite);
                    -- timestamp to timestamptz under UTC rewrites nothing either.
                    perform dbsync._unreplicated_ddl(t.table_id, case when v_renamed then 'ALTER TABLE ... RENAME'
                                                                      when v_columns_renamed then 'ALTER TABLE ... RENAME COLUMN'
                                                                      else r.command_tag end,
                                                     v_renamed or v_columns_renamed or v_retyped or dbsync._own_values_added(t.relid, false));
                end if;
            end if;
            -- ENABLE TRIGGER ALL (or ENABLE TRIGGER on one of dbsync's) makes a capture
            -- trigger fire ORIGIN only: sessions in session_replication_role = replica
            -- would then write without capture. Back to ALWAYS (and dbsync_capture_replica
            -- to replica mode); a disabled one (or one firing in replica mode only that
            -- should fire always) is refused below instead.
            if not exists (select from dbsync._capture_triggers(t.relid, false) tg
                           where tg.enabled = 'D' or tg.enabled = 'R' and tg.meant <> 'R') then
                perform dbsync._enable_always(t.relid);
            end if;
            -- After _install_capture: it may have moved the key to a new primary key.
            perform dbsync._check_capturable(t.table_id);
        end loop;
    end loop;
    -- ALTER TABLE recurses to inheritance children, and the commands name only the
    -- table altered: a child replicated itself that got a column filled so,
    -- retyped between timestamp and timestamptz (rewritten ones: _on_rewrite; one of
    -- another group under execute_ddl: _ddl_plan refuses it), or renamed (also by
    -- ALTER VIEW and the like). Through execute_ddl only their records follow. Not
    -- partitions, which add_table refuses (their table's capture covers them): a
    -- partitioned table's thousands are not walked.
    if v_group is distinct from 0 and tg_tag in ('ALTER TABLE', 'ALTER VIEW', 'ALTER MATERIALIZED VIEW', 'ALTER FOREIGN TABLE') then
        for r in with recursive kids(relid) as (
                     select i.inhrelid from pg_event_trigger_ddl_commands() c
                     join pg_inherits i on i.inhparent = c.objid
                     join pg_class k on k.oid = i.inhrelid and not k.relispartition
                     where c.classid = 'pg_class'::regclass and c.object_type in ('table', 'table column')
                     union
                     select i.inhrelid from kids p join pg_inherits i on i.inhparent = p.relid
                     join pg_class k on k.oid = i.inhrelid and not k.relispartition)
                 select tb.table_id, tb.relid from kids k join dbsync.tables tb on tb.relid = k.relid and tb.removed_at is null
                 order by tb.table_id loop
            v_retyped := dbsync._timestamps_retyped(r.table_id);
            v_columns_renamed := dbsync._columns_recorded(r.table_id, 'column_names', dbsync._column_names(r.relid));
            if v_group is null and (v_retyped or v_columns_renamed or dbsync._own_values_added(r.relid, false)) then
                perform dbsync._unreplicated_ddl(r.table_id, case when v_columns_renamed then 'ALTER TABLE ... RENAME COLUMN'
                                                                  else 'ALTER TABLE' end, true);
            end if;
        end loop;
    end if;
    -- ATTACH PARTITION names only the partitioned table: a replicated table attached
    -- so is then written through it, which fires no statement trigger of its own,
    -- and its capture moves to row triggers as an inheritance child's does
    -- (_capture_stale). A table detached keeps them, and moves back at its next DDL.
    for t in select tb.* from pg_event_trigger_ddl_commands() c
             join pg_inherits i on i.inhparent = c.objid
             join dbsync.tables tb on tb.relid = i.inhrelid and tb.removed_at is null
             where c.classid = 'pg_class'::regclass and v_group is distinct from 0 loop
        if dbsync._capture_stale(t.table_id) then
            perform dbsync._install_capture(t.table_id);
        end if;
    end loop;
    -- ALTER SCHEMA ... RENAME gives every table of the schema a new name, and the
    -- command names only the schema: held as a table's RENAME is (see above), also
    -- through execute_ddl of another group, whose targets do not get it.
    if tg_tag = 'ALTER SCHEMA' and v_group is distinct from 0 then
        for r in select tb.table_id, tb.group_id from dbsync.tables tb
                 join pg_class c on c.oid = tb.relid
                 join pg_namespace n on n.oid = c.relnamespace
                 where tb.removed_at is null and n.nspname::text <> tb.schema_name
                 order by tb.table_id loop
            perform dbsync._follow_name(r.table_id);
            if v_group is distinct from r.group_id then
                perform dbsync._unreplicated_ddl(r.table_id, 'ALTER SCHEMA ... RENAME', true);
            end if;
        end loop;
    end if;
    -- ALTER TYPE changes the values of every column holding the type (an enum value
    -- renamed, a composite's attribute dropped) and no row trigger sees it: the
    -- targets keep the old values. Listed like an ALTER TABLE for each replicated
    -- table with such a column, unless execute_ddl of the table's group runs it.
    if tg_tag = 'ALTER TYPE' then
        -- (A composite type's command names its relation.)
        for r in select distinct tb.table_id from pg_event_trigger_ddl_commands() c
                 left join pg_class k on c.classid = 'pg_class'::regclass and k.oid = c.objid and k.relkind = 'c'
                 cross join lateral dbsync._types_holding(case when c.classid = 'pg_type'::regclass then c.objid
                                                               else k.reltype end) h(typ)
                 join pg_attribute a on a.atttypid = h.typ and a.attnum > 0 and not a.attisdropped
                 join dbsync.tables tb on tb.relid = a.attrelid and tb.removed_at is null
                 where v_group is distinct from tb.group_id and v_group is distinct from 0 loop
            perform dbsync._unreplicated_ddl(r.table_id, 'ALTER TYPE');
        end loop;
        -- A typed table (CREATE TABLE ... OF) holds no column of its type: the type's
        -- attributes are its columns, and ALTER ATTRIBUTE ... CASCADE retypes them
        -- (RENAME ATTRIBUTE ... CASCADE renames them) with no command naming the
        -- table. Between timestamp and timestamptz under UTC that rewrites nothing
        -- (break-s20); its records follow through execute_ddl too.
        for r in select distinct tb.table_id, tb.group_id, tb.relid from pg_event_trigger_ddl_commands() c
                 join pg_class k on c.classid = 'pg_class'::regclass and k.oid = c.objid and k.relkind = 'c'
                 join pg_class x on x.reloftype = k.reltype
                 join dbsync.tables tb on tb.relid = x.oid and tb.removed_at is null
                 where v_group is distinct from 0 loop
            v_retyped := dbsync._timestamps_retyped(r.table_id);
            v_columns_renamed := dbsync._columns_recorded(r.table_id, 'column_names', dbsync._column_names(r.relid));
            if (v_retyped or v_columns_renamed) and v_group is distinct from r.group_id then
                perform dbsync._unreplicated_ddl(r.table_id, case when v_columns_renamed then 'ALTER TYPE ... RENAME COLUMN'
                                                                  else 'ALTER TYPE' end, true);
            end if;
        end loop;
    end if;
    if v_mode is not null then
        perform pg_catalog.set_config('session_replication_role', v_mode, true);
    end if;
end
$$;
