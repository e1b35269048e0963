-- dbsync._restored_by_dump() returns boolean
--   Whether this database's dbsync came from another database by pg_dump and
--   pg_restore: dbsync.groups has another OID than the one recorded when dbsync was
--   installed (dbsync.installed_at, migration 0031). Then dbsync's state names the
--   old database's tables (by OID) and transactions (ticks' snapshots, events'
--   txids, which the new cluster may not have reached): no batch can be trusted.
--   Physical copies and pg_upgrade keep the OIDs. (Installs of before 0031 recorded
--   the OID when they migrated to it.)
--   Parameters: none.
--   Returns: boolean.
--   Calls: nothing. Tables touched: dbsync.installed_at (read).
create or replace function dbsync._restored_by_dump() returns boolean
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select not exists (select from dbsync.installed_at i where i.groups_oid = 'dbsync.groups'::regclass)
$$;
