-- dbsync._capture_outdated() returns setof int
--   The replicated tables whose capture an older dbsync generated
--   (capture_version below dbsync._capture_version()): `dbsync migrate` generates
--   theirs again, one table a transaction (dbsync._upgrade_capture).
--   Parameters: none.
--   Returns: table_id, in order.
--   Calls: dbsync._capture_version. Tables touched: dbsync.tables (read).
create or replace function dbsync._capture_outdated() returns setof int
language sql stable set search_path = pg_catalog, pg_temp as $$
    select t.table_id from dbsync.tables t
    where t.removed_at is null and t.capture_version < dbsync._capture_version()
    order by t.table_id;
$$;
