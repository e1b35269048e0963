-- dbsync._enable_always(p_rel regclass) returns void
--   Makes dbsync's capture triggers on p_rel fire ALWAYS, also in sessions with
--   session_replication_role = replica, and the one meant for replica mode only
--   there (see _install_capture and _capture_triggers). That is an ALTER
--   TABLE, marked in dbsync.ddl_context as dbsync's own (group 0, which no group
--   has): the DDL event trigger then neither reports it as DDL not run through
--   execute_ddl nor starts over on the partitions dbsync is busy with; it still
--   checks the table (_check_capturable). Restores the mark of an execute_ddl under
--   way. Not SECURITY DEFINER: called from dbsync's capture code, which is.
--   Parameters: p_rel.
--   Returns: nothing.
--   Calls: dbsync._capture_triggers, dbsync._own_ddl.
--   Tables touched: dbsync.ddl_context (written, by _own_ddl).
create or replace function dbsync._enable_always(p_rel regclass) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_actions text;
begin
    select string_agg(format(case when tg.meant = 'R' then 'enable replica trigger %I' else 'enable always trigger %I' end,
                             tg.name), ', ' order by tg.name) into v_actions
    from dbsync._capture_triggers(p_rel, false) tg
    where tg.enabled <> tg.meant;
    if v_actions is null then
        return;
    end if;
    perform dbsync._own_ddl(format('alter table %s %s', p_rel, v_actions));
end
$$;

-- dbsync._own_ddl(p_sql text) returns void
--   Runs p_sql, DDL of dbsync's own on a replicated table's capture triggers, marked
--   in dbsync.ddl_context as dbsync's (group 0, which no group has), so that the DDL
--   event triggers neither report nor refuse it; then restores the mark of an
--   execute_ddl under way. Not SECURITY DEFINER: called from dbsync's capture code,
--   which is.
--   Parameters: p_sql.
--   Returns: nothing.
--   Calls: dbsync._begin_ddl, dbsync._ddl_group, dbsync._end_ddl.
--   Tables touched: dbsync.ddl_context (written).
create or replace function dbsync._own_ddl(p_sql text) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    v_group int := dbsync._ddl_group();
begin
    perform dbsync._begin_ddl(0);
    execute p_sql;
    if v_group is null then
        perform dbsync._end_ddl();
    else
        perform dbsync._begin_ddl(v_group);
    end if;
end
$$;
