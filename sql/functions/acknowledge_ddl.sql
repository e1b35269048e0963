-- dbsync.acknowledge_ddl(ddl_id bigint) returns int
--   Takes a change made outside execute_ddl off dbsync.unreplicated_ddl, once the
--   DBA has made it on every target of the group (or decided it needs nothing
--   there). The entry stays in dbsync.ddl_log with who acknowledged it and when.
--   dbsync.acknowledge_ddl(NULL) acknowledges every entry listed. Returns how many
--   entries it acknowledged. A change that altered the rows of its table on the
--   source only (dbsync._unreplicated_ddl) has every subscription copy the table
--   again now, from the source, over whatever the targets' run of it made (a
--   NOTICE says so), unless another such change of it still waits.
--   Errors: no such entry, or one that was run through execute_ddl.
--   Parameters: ddl_id.
--   Returns: how many changes it took off dbsync.unreplicated_ddl.
--   Calls: dbsync._request_copy. Tables touched: dbsync.ddl_log (written),
--     dbsync.tables (read), dbsync.subscription_tables (written).
create or replace function dbsync.acknowledge_ddl(ddl_id bigint) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_n int;
    v_copy int[];
    r record;
begin
    with acknowledged as (
        update dbsync.ddl_log l set acknowledged_at = now(), acknowledged_by = session_user
        where not l.via_execute_ddl and l.acknowledged_at is null
          and (acknowledge_ddl.ddl_id is null or l.ddl_id = acknowledge_ddl.ddl_id)
        returning l.recopy_table_id)
    select count(*), array_agg(distinct a.recopy_table_id) filter (where a.recopy_table_id is not null)
      into v_n, v_copy
    from acknowledged a;
    if v_n = 0 and acknowledge_ddl.ddl_id is not null
       and not exists (select from dbsync.ddl_log l where l.ddl_id = acknowledge_ddl.ddl_id
                                                      and not l.via_execute_ddl) then
        raise exception 'acknowledge_ddl: no change % in dbsync.unreplicated_ddl', acknowledge_ddl.ddl_id
            using errcode = 'undefined_object',
                  hint = 'See select ddl_id, table_name, statement from dbsync.unreplicated_ddl.';
    end if;
    for r in select t.table_id, format('%I.%I', t.schema_name, t.table_name) as name
             from dbsync.tables t
             where t.table_id = any (v_copy) and t.removed_at is null
               and not exists (select from dbsync.ddl_log l
                               where l.recopy_table_id = t.table_id and l.acknowledged_at is null)
             order by t.table_id loop
        if dbsync._request_copy(null, array[r.table_id]) > 0 then
            raise notice 'acknowledge_ddl: % is copied again by every subscription (DDL outside execute_ddl changed its rows on the source only)', r.name;
        end if;
    end loop;
    return v_n;
end
$$;
