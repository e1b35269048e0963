-- dbsync._held_tables() returns table (table_id int, group_id int, table_name text, ddl_id bigint, command_tag text, logged_at timestamptz)
--   The replicated tables that DDL outside execute_ddl changed the rows of on the
--   source only (dbsync._unreplicated_ddl), not yet acknowledged: each with the
--   first such change it waits on. Every subscription of the group shows it in
--   error and is not in sync until then (dbsync._synced, dbsync._sync_blocker,
--   dbsync.status, dbsync.table_status read them here). SECURITY DEFINER, and
--   executable by PUBLIC (as dbsync._last_ev_id): the status views call it with
--   their reader's rights, and a monitoring role may not read dbsync.ddl_log.
--   Parameters: none.
--   Returns: one row a table; table_name quoted as dbsync.tables names it.
--   Calls: nothing. Tables touched: dbsync.ddl_log, dbsync.tables (read).
create or replace function dbsync._held_tables()
returns table (table_id int, group_id int, table_name text, ddl_id bigint, command_tag text, logged_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select distinct on (t.table_id) t.table_id, t.group_id, format('%I.%I', t.schema_name, t.table_name),
           l.ddl_id, l.command_tag, l.logged_at
    from dbsync.ddl_log l join dbsync.tables t on t.table_id = l.recopy_table_id
    where l.recopy_table_id is not null and l.acknowledged_at is null and t.removed_at is null
    order by t.table_id, l.ddl_id
$$;
