-- dbsync.add_all_tables(schema name, group_name text default 'default',
--                       skip_unsupported boolean default false) returns int
--   Adds every table of a schema to the group, as dbsync.add_table does one (with
--   its primary key, and the sequences it owns): ordinary and partitioned tables,
--   in name order; partitions come with their partitioned table, and tables already
--   in this group stay as they are (a NOTICE counts them). A table add_table
--   refuses (no primary key, already in another group, ...) is never skipped
--   silently: all of them are listed, each with add_table's error and hint, and
--   nothing is added (an error) unless skip_unsupported, which adds the others and
--   lists the refused ones in a WARNING. A table needing key_columns is added on
--   its own with dbsync.add_table. Returns how many tables it added.
--   Under write load: add_table takes SHARE ROW EXCLUSIVE on one table after the
--   other (its triggers), while an application transaction that writes several of
--   them locks them in its own order; each could wait for the other (a deadlock:
--   add_all_tables or the application's transaction fails). So every table to add
--   is locked first, in one LOCK that gives up after 100 ms and lets go of all it
--   took (a subtransaction), then tries again a moment later: an application
--   transaction waits at most that long, and none fails. The caller's lock_timeout,
--   if set, bounds the whole wait.
--   Errors: no such schema, dbsync's own schemas, some tables refused (without
--   skip_unsupported), the tables still locked at the caller's lock_timeout.
--   Parameters: schema, group_name, skip_unsupported.
--   Returns: int.
--   Calls: dbsync.add_table. Tables touched: dbsync.groups, dbsync.tables (read).
create or replace function dbsync.add_all_tables(schema name, group_name text default 'default',
                                                 skip_unsupported boolean default false) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_nsp oid;
    r record;
    v_added int := 0;
    v_kept int := 0;
    v_refused text[] := '{}';
    v_msg text;
    v_hint text;
    v_todo text[];
    v_timeout text := current_setting('lock_timeout');
    v_deadline timestamptz;
    v_tries int := 0;
begin
    select n.oid into v_nsp from pg_namespace n where n.nspname = add_all_tables.schema;
    if v_nsp is null then
        raise exception 'add_all_tables: schema "%" does not exist', add_all_tables.schema
            using errcode = 'invalid_schema_name',
                  hint = 'Pass the schema''s name as stored, e.g. dbsync.add_all_tables(''public'').';
    end if;
    if add_all_tables.schema in ('dbsync', 'dbsync_worker') then
        raise exception 'add_all_tables: schema "%" belongs to dbsync itself', add_all_tables.schema
            using errcode = 'wrong_object_type', hint = 'Pass the schema of your application''s tables.';
    end if;
    select array_agg(c.oid::regclass::text order by c.relname) into v_todo
    from pg_class c
    where c.relnamespace = v_nsp and c.relkind in ('r', 'p') and not c.relispartition and c.relpersistence <> 't'
      and not exists (select from dbsync.tables t join dbsync.groups g on g.group_id = t.group_id
                      where t.relid = c.oid and t.removed_at is null and g.name = add_all_tables.group_name);
    v_deadline := clock_timestamp() + case when v_timeout in ('0', '') then null else v_timeout::interval end;
    while v_todo is not null loop
        begin
            perform set_config('lock_timeout', '100ms', true);
            execute format('lock table %s in share row exclusive mode', array_to_string(v_todo, ', '));
            perform set_config('lock_timeout', v_timeout, true);
            exit;
        exception when lock_not_available then
            perform set_config('lock_timeout', v_timeout, true);
            if clock_timestamp() > v_deadline then
                raise exception 'add_all_tables: the tables of schema "%" stayed locked by other transactions for lock_timeout (%)',
                                add_all_tables.schema, v_timeout
                    using errcode = 'lock_not_available',
                          hint = 'Call it again, or with a longer lock_timeout (set lock_timeout = 0 waits as long as it takes).';
            end if;
            v_tries := v_tries + 1;
            perform pg_sleep(random() * least(0.5, 0.02 * v_tries));
        end;
    end loop;
    for r in select c.oid::regclass as tbl, g.name as in_group
             from pg_class c
             left join dbsync.tables t on t.relid = c.oid and t.removed_at is null
             left join dbsync.groups g on g.group_id = t.group_id
             where c.relnamespace = v_nsp and c.relkind in ('r', 'p') and not c.relispartition
               and c.relpersistence <> 't'
             order by c.relname loop
        if r.in_group = add_all_tables.group_name then
            v_kept := v_kept + 1;
            continue;
        end if;
        begin
            perform dbsync.add_table(r.tbl, add_all_tables.group_name);
            v_added := v_added + 1;
        -- add_table's refusals; anything else (a lock timeout, ...) is the call's error.
        exception when invalid_table_definition or wrong_object_type or duplicate_object
                       or undefined_column or invalid_parameter_value or feature_not_supported then
            get stacked diagnostics v_msg = message_text, v_hint = pg_exception_hint;
            v_refused := v_refused || format('%s: %s%s', r.tbl, v_msg,
                                             case when v_hint <> '' then ' (' || v_hint || ')' else '' end);
        end;
    end loop;
    if v_kept > 0 then
        raise notice 'add_all_tables: % table(s) of schema "%" were already in group "%"',
                     v_kept, add_all_tables.schema, add_all_tables.group_name;
    end if;
    if cardinality(v_refused) > 0 and not skip_unsupported then
        raise exception 'add_all_tables: % table(s) of schema "%" cannot be added, so none was',
                        cardinality(v_refused), add_all_tables.schema
            using errcode = 'invalid_table_definition',
                  detail = array_to_string(v_refused, E'\n'),
                  hint = 'Fix each table as its line says (or add it alone with dbsync.add_table(..., key_columns => array[...])), '
                         'then call add_all_tables again; or pass skip_unsupported => true to add the others now.';
    end if;
    if cardinality(v_refused) > 0 then
        raise warning 'add_all_tables: % table(s) of schema "%" were not added', cardinality(v_refused), add_all_tables.schema
            using detail = array_to_string(v_refused, E'\n'),
                  hint = 'Fix each table as its line says (or add it alone with dbsync.add_table(..., key_columns => array[...])), '
                         'then call add_all_tables again.';
    end if;
    return v_added;
end
$$;
