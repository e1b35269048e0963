-- dbsync.grant_monitor(role_name name) returns void
--   Lets role_name watch replication without administering it: what `dbsync status`,
--   `dbsync wait` and alerting queries need. Records the role in dbsync.monitor_roles
--   (every migrate grants it again) and grants it exactly:
--     * USAGE on schema dbsync;
--     * SELECT on the views dbsync.status and dbsync.table_status;
--     * EXECUTE on dbsync.wait_for_sync (it only reads; it runs as the dbsync owner).
--   Nothing else: no table of dbsync (not the queue, not the targets' conninfo, not
--   dbsync.verifications), no replicated table, no function that changes anything.
--   The two views withhold from such a role what may quote values of replicated rows
--   (see dbsync._shows_values), and so does wait_for_sync's reason.
--   Only the dbsync owner (or a member of it) may call it, as for grant_sidecar.
--   Errors: no such role; a predefined role (pg_*); caller not the dbsync owner.
--   Parameters: role_name.
--   Returns: nothing.
--   Calls: dbsync._grant_set. Tables touched: none.
create or replace function dbsync.grant_monitor(role_name name) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform dbsync._grant_set('monitor', role_name);
end
$$;

-- dbsync._grant_monitor_rights(p_role name) returns void
--   The grants of grant_monitor, idempotent: migrate runs them again for every
--   recorded role (a function re-created by an upgrade loses its grants).
--   Parameters: p_role.
--   Returns: nothing.
--   Calls: dbsync._require_owner, dbsync.wait_for_sync. Tables touched: dbsync.status,
--     dbsync.table_status (read).
create or replace function dbsync._grant_monitor_rights(p_role name) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform dbsync._require_owner('_grant_monitor_rights');
    execute format('grant usage on schema dbsync to %I', p_role);
    execute format('grant select on dbsync.status, dbsync.table_status to %I', p_role);
    execute format('grant execute on function dbsync.wait_for_sync(text, interval) to %I', p_role);
end
$$;

-- dbsync._regrant_monitors() returns int
--   grant_monitor's rights again for every recorded role that still exists; the
--   number of roles. Run by every migrate (sql/grants.sql, and src/migrate.ts even
--   when the code did not change, so that migrate restores a revoked right).
--   Parameters: none.
--   Returns: the number of roles.
--   Calls: dbsync._grant_monitor_rights, dbsync._require_owner. Tables touched:
--     dbsync.monitor_roles (read).
create or replace function dbsync._regrant_monitors() returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    n int;
begin
    perform dbsync._require_owner('_regrant_monitors');
    perform dbsync._grant_monitor_rights(m.role_name)
    from dbsync.monitor_roles m
    where exists (select from pg_roles ro where ro.rolname = m.role_name);
    get diagnostics n = row_count;
    return n;
end
$$;
