-- dbsync._drop_capture_triggers(p_relid oid) returns void
--   Drops every dbsync capture trigger on the table and on its partitions, as
--   dbsync's own DDL (_own_ddl: the drop event trigger refuses anyone else's).
--   Parameters: p_relid.
--   Returns: nothing.
--   Calls: dbsync._own_ddl. Tables touched: triggers on the replicated table (dynamic).
create or replace function dbsync._drop_capture_triggers(p_relid oid) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
begin
    for r in
        select tg.tgname, tg.tgrelid::regclass as rel
        from pg_trigger tg
        where tg.tgname like E'dbsync\\_capture\\_%' and not tg.tgisinternal
          and tg.tgparentid = 0
          and tg.tgrelid in (select relid from pg_partition_tree(p_relid) union select p_relid)
    loop
        perform dbsync._own_ddl(format('drop trigger %I on %s', r.tgname, r.rel));
    end loop;
end
$$;
