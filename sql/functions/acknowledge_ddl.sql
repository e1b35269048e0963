-- dbsync.acknowledge_ddl(ddl_id bigint) returns int
--   Takes a change made outside execute_ddl off dbsync.unreplicated_ddl, once the
--   DBA has made it on every target of the group (or decided it needs nothing
--   there). The entry stays in dbsync.ddl_log with who acknowledged it and when.
--   dbsync.acknowledge_ddl(NULL) acknowledges every entry listed. Returns how many
--   entries it acknowledged.
--   Errors: no such entry, or one that was run through execute_ddl.
--   Parameters: ddl_id.
--   Returns: how many changes it took off dbsync.unreplicated_ddl.
--   Calls: nothing. Tables touched: dbsync.ddl_log (written).
create or replace function dbsync.acknowledge_ddl(ddl_id bigint) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_n int;
begin
    update dbsync.ddl_log l set acknowledged_at = now(), acknowledged_by = session_user
    where not l.via_execute_ddl and l.acknowledged_at is null
      and (acknowledge_ddl.ddl_id is null or l.ddl_id = acknowledge_ddl.ddl_id);
    get diagnostics v_n = row_count;
    if v_n = 0 and acknowledge_ddl.ddl_id is not null
       and not exists (select from dbsync.ddl_log l where l.ddl_id = acknowledge_ddl.ddl_id
                                                      and not l.via_execute_ddl) then
        raise exception 'acknowledge_ddl: no change % in dbsync.unreplicated_ddl', acknowledge_ddl.ddl_id
            using errcode = 'undefined_object',
                  hint = 'See select ddl_id, table_name, statement from dbsync.unreplicated_ddl.';
    end if;
    return v_n;
end
$$;
