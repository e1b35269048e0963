-- dbsync._skipped_ddl(p_sub_id int) returns bigint[]
--   The execute_ddl events the subscription skips (dbsync.skip_ddl): the sidecar
--   leaves them out of its batches. Called by the sidecar.
--   Parameters: p_sub_id.
--   Returns: bigint[].
--   Calls: nothing. Tables touched: dbsync.skipped_ddl (read).
create or replace function dbsync._skipped_ddl(p_sub_id int) returns bigint[]
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce(array_agg(k.ev_id order by k.ev_id), '{}') from dbsync.skipped_ddl k where k.sub_id = p_sub_id
$$;
