-- dbsync.uninstall() returns void
--   Removes dbsync from this (source) database, in one transaction:
--   1. stops capturing every table, as dbsync.remove_table does: drops the table's
--      capture triggers (on every partition too) and its capture functions;
--   2. drops the DDL event triggers dbsync_ddl_watch, dbsync_drop_watch and dbsync_rewrite_watch (database-wide, so not in the
--      schema) and graphile-worker's schema dbsync_worker (the sidecar's queued jobs);
--   3. last, drops the schema dbsync itself (queues, ticks, subscriptions, this
--      function): PostgreSQL lets a PL/pgSQL function drop itself, since the running
--      call keeps its compiled copy until it returns.
--   The application's tables and their data are untouched. Targets keep their data;
--   on each target, `drop schema dbsync cascade` removes dbsync's bookkeeping there
--   (dbsync.applied, dbsync.copied) once nothing will apply to it any more.
--   Stop every `dbsync run` first: the drops wait for the locks the sidecar holds.
--   Runs with the caller's rights: only the owner of both schemas (the role that ran
--   `dbsync migrate`; a superuser when the event trigger exists) can call it. The CLI face is `dbsync uninstall`.
--   Parameters: none.
--   Returns: nothing.
--   Calls: dbsync.remove_table. Tables touched: dbsync.tables (read); drops dbsync's
--     event triggers and schemas dbsync_worker and dbsync, with everything in them.
create or replace function dbsync.uninstall() returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    r record;
begin
    for r in select t.relid from dbsync.tables t where t.removed_at is null order by t.table_id loop
        perform dbsync.remove_table(r.relid::regclass);
    end loop;
    drop event trigger if exists dbsync_ddl_watch;
    drop event trigger if exists dbsync_drop_watch;
    drop event trigger if exists dbsync_rewrite_watch;
    drop schema if exists dbsync_worker cascade;
    drop schema dbsync cascade;
end
$$;
