-- dbsync._upgrade_capture(p_table_id int) returns boolean
--   Generates capture again (dbsync._install_capture) for the table when an older
--   dbsync generated its capture (dbsync.tables.capture_version below
--   _capture_version()); true when it did. migrate calls it after its own
--   transaction, once per such table and each in a transaction of its own: the
--   trigger DDL locks the table until commit, so one transaction for all would keep
--   every table done so far locked while it waits for the next. Under a lock
--   timeout of 10 s: a table whose writers hold it longer, or whose capture cannot
--   be generated (a key column gone without the event trigger), keeps its old
--   capture, which still works, with a WARNING; the next migrate tries again.
--   Parameters: p_table_id.
--   Returns: boolean.
--   Calls: dbsync._capture_version, dbsync._install_capture. Tables touched:
--     dbsync.tables (read).
create or replace function dbsync._upgrade_capture(p_table_id int) returns boolean
language plpgsql security definer set search_path = pg_catalog, pg_temp
    set lock_timeout = '10s' as $$
declare
    t record;
begin
    select tb.schema_name, tb.table_name into t
    from dbsync.tables tb
    where tb.table_id = p_table_id and tb.removed_at is null and tb.capture_version < dbsync._capture_version()
      and exists (select from pg_class c where c.oid = tb.relid);
    if not found then
        return false;
    end if;
    perform dbsync._install_capture(p_table_id);
    return true;
exception when others then
    raise warning 'dbsync migrate: the capture of %.% was not upgraded: % (SQLSTATE %)', t.schema_name, t.table_name, sqlerrm, sqlstate
        using hint = 'It keeps capturing as before. Run dbsync migrate again when the table is not busy '
                     '(it waits at most 10 s for its lock), or fix the cause.';
    return false;
end
$$;
