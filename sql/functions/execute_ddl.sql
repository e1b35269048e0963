-- dbsync.execute_ddl(group_name text, ddl text) returns void
--   Runs ddl on the source in the caller's transaction, and queues it so that every
--   target of the group runs it at this point of the stream, in the same target
--   transaction as the batch around it (before that batch's rows are written; DDL
--   that fails there because of rows the batch changes runs after them).
--   SECURITY INVOKER on purpose: the DDL runs with the caller's rights; the
--   bookkeeping is done by the SECURITY DEFINER dbsync._begin_ddl and
--   dbsync._queue_ddl. Its names are resolved as on the targets: through the
--   caller's search_path as it resolves here ("$user" is the caller's schema, not
--   the apply role's there), with the caller's temporary schema last (a temporary
--   table must not stand in for a replicated one that the targets then change);
--   that path and the settings its literals are read under (dbsync._ddl_settings)
--   are read before the DDL runs (a SET at its end must not count) and recorded.
--   A statement that changes no schema and only reads or changes rows of replicated
--   tables is not queued: its rows reach the targets as rows (see
--   sql/functions/_ddl_effects.sql for why running it there would not be the same).
--   A table whose rows DDL changed with it, or that gained a column whose values
--   each server computes for itself (a default of now(), a sequence...), is copied
--   again (dbsync._ddl_recopy).
--   Capture follows the tables the DDL touched (the DDL event trigger regenerates
--   it; without the event trigger, _queue_ddl looks for tables of the group whose
--   key changed). A table of another group is refused: its targets would not get
--   the DDL.
--   Errors: unknown group, empty ddl, a table of another group (altered, truncated
--   or written by DDL), ALTER TYPE ... ADD VALUE before PostgreSQL 12 (with a
--   hint), track_counts off (before the DDL or after it), other tables' rows written from
--   replicated ones, and whatever the DDL itself raises (then nothing is queued: it
--   is one transaction).
--   Parameters: group_name, ddl.
--   Returns: nothing.
--   Calls: dbsync._begin_ddl, dbsync._ddl_effects, dbsync._ddl_plan, dbsync._ddl_recopy,
--     dbsync._ddl_settings, dbsync._end_ddl, dbsync._group_id, dbsync._queue_ddl,
--     dbsync._server_has.
--     Tables touched: none.
create or replace function dbsync.execute_ddl(group_name text, ddl text) returns void
language plpgsql as $$
declare
    v_group int := dbsync._group_id(group_name, false);
    v_caller_path text := pg_catalog.current_setting('search_path');
    v_path text := (
        select pg_catalog.concat_ws(', ', pg_catalog.string_agg(pg_catalog.quote_ident(n), ', ' order by o), 'pg_temp')
        from pg_catalog.unnest(pg_catalog.current_schemas(false)) with ordinality u(n, o)
        where pg_catalog.to_regnamespace(n) is distinct from pg_catalog.pg_my_temp_schema());
    v_settings jsonb := dbsync._ddl_settings();
    v_before jsonb;
    v_plan jsonb;
begin
    if ddl is null or pg_catalog.btrim(ddl) = '' then
        raise exception 'execute_ddl: ddl must not be empty' using errcode = 'invalid_parameter_value';
    end if;
    if not pg_catalog.current_setting('track_counts')::boolean then
        raise exception 'execute_ddl: track_counts is off, so execute_ddl cannot tell DDL from row changes'
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'Turn track_counts on (the default; autovacuum needs it) in postgresql.conf, or for the '
                         'database with ALTER DATABASE ... SET track_counts = on.';
    end if;
    perform dbsync._begin_ddl(v_group);
    v_before := dbsync._ddl_effects();
    perform pg_catalog.set_config('search_path', v_path, true);
    if dbsync._server_has('enum_add_in_transaction') then
        execute ddl;
    else
        -- (A subtransaction, so only where the error can come: its text names the
        -- statement untranslated, whatever lc_messages says.)
        begin
            execute ddl;
        exception when active_sql_transaction then
            if pg_catalog.strpos(sqlerrm, 'ALTER TYPE ... ADD') > 0 then
                raise exception 'execute_ddl: ALTER TYPE ... ADD VALUE cannot run in a function before PostgreSQL 12, and execute_ddl runs its statement in one'
                    using errcode = 'feature_not_supported',
                          hint = 'Run the ALTER TYPE ... ADD VALUE by itself on each server, the targets first, then the '
                                 'source: a label a target has before the source writes it is harmless.';
            end if;
            raise;
        end;
    end if;
    -- The caller's path back, unless the DDL set one of its own.
    if pg_catalog.current_setting('search_path') = v_path then
        perform pg_catalog.set_config('search_path', v_caller_path, true);
    end if;
    -- (A superuser's script may turn it off: its row changes would not be counted.)
    if not pg_catalog.current_setting('track_counts')::boolean then
        raise exception 'execute_ddl: the statement turned track_counts off, so execute_ddl cannot tell what it changed'
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'Leave track_counts on in statements run by execute_ddl.';
    end if;
    v_plan := dbsync._ddl_plan(v_group, v_before, dbsync._ddl_effects());
    if (v_plan ->> 'queue')::boolean then
        perform dbsync._queue_ddl(v_group, ddl, v_path, v_settings);
        perform dbsync._ddl_recopy(v_group, v_before, v_plan);
    else
        perform dbsync._end_ddl();
    end if;
end
$$;
