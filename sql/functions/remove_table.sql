-- dbsync.remove_table(tbl regclass) returns void
--   Stops capturing tbl: drops its triggers and capture function. From then on no
--   batch applies anything to it (changes captured but not yet applied are not
--   delivered); the data on targets stays as it is.
--   Errors: the table is not added.
--   Parameters: tbl.
--   Returns: nothing.
--   Calls: dbsync._drop_capture_functions, dbsync._drop_capture_triggers. Tables touched:
--     dbsync.tables (written).
create or replace function dbsync.remove_table(tbl regclass) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_id int;
begin
    select table_id into v_id from dbsync.tables where relid = tbl and removed_at is null;
    if v_id is null then
        raise exception 'remove_table: % is not replicated by dbsync', tbl
            using errcode = 'undefined_object',
                  hint = 'See select * from dbsync.table_status for the tables that are.';
    end if;
    perform dbsync._drop_capture_triggers(tbl);
    perform dbsync._drop_capture_functions(v_id);
    update dbsync.tables set removed_at = now() where table_id = v_id;
end
$$;
