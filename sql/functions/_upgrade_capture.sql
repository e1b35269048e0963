-- dbsync._upgrade_capture() returns int
--   Generates capture again (dbsync._install_capture) for every live table whose
--   capture an older dbsync generated (dbsync.tables.capture_version below
--   _capture_version()). Called by migrate on every run, after the code is
--   installed. Each table under a lock timeout of 10 s and in a subtransaction: one
--   whose writers hold it longer, or whose capture cannot be generated (a key column
--   gone without the event trigger), keeps its old capture, which still works, with
--   a WARNING; the next migrate tries again. Returns how many tables were upgraded.
create or replace function dbsync._upgrade_capture() returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp
    set lock_timeout = '10s' as $$
declare
    r record;
    v_done int := 0;
begin
    for r in select t.table_id, t.schema_name, t.table_name
             from dbsync.tables t
             where t.removed_at is null and t.capture_version < dbsync._capture_version()
               and exists (select from pg_class c where c.oid = t.relid)
             order by t.table_id loop
        begin
            perform dbsync._install_capture(r.table_id);
            v_done := v_done + 1;
        exception when others then
            raise warning 'dbsync migrate: the capture of %.% was not upgraded: %', r.schema_name, r.table_name, sqlerrm
                using hint = 'It keeps capturing as before. Run dbsync migrate again when the table is not busy '
                             '(it waits at most 10 s for its lock), or fix the cause.';
        end;
    end loop;
    return v_done;
end
$$;
