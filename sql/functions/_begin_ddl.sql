-- dbsync._begin_ddl(p_group_id int) returns void
--   Marks this session's transaction as running execute_ddl for the group, for the
--   DDL event trigger (dbsync.ddl_context). Unlike a setting, which any session can
--   set, only dbsync's SECURITY DEFINER code writes that table; the row counts only
--   for this backend and this transaction's xid. Called by execute_ddl.
--   Parameters: p_group_id.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.ddl_context (written).
create or replace function dbsync._begin_ddl(p_group_id int) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    insert into dbsync.ddl_context (backend_pid, txid, group_id)
    values (pg_catalog.pg_backend_pid(), pg_catalog.pg_current_xact_id(), p_group_id)
    on conflict (backend_pid) do update set txid = excluded.txid, group_id = excluded.group_id;
$$;

-- dbsync._end_ddl() returns void
--   The end of execute_ddl's statement when nothing is queued (dbsync._queue_ddl
--   ends it otherwise): later DDL of the transaction is not execute_ddl's.
--   Parameters: none.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.ddl_context (written).
create or replace function dbsync._end_ddl() returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    delete from dbsync.ddl_context where backend_pid = pg_catalog.pg_backend_pid();
$$;

-- dbsync._ddl_group() returns int
--   The group of the execute_ddl running in this transaction, or NULL.
--   Parameters: none.
--   Returns: the group id, or NULL.
--   Calls: nothing. Tables touched: dbsync.ddl_context (read).
create or replace function dbsync._ddl_group() returns int
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select c.group_id from dbsync.ddl_context c
    where c.backend_pid = pg_catalog.pg_backend_pid()
      and c.txid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned()
$$;
