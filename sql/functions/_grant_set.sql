-- dbsync._grant_set(p_set text, p_role name) returns void
--   What dbsync.grant_sidecar and dbsync.grant_monitor do: only the dbsync owner may
--   (the sets' rights include reading replicated tables, or the status of every
--   subscription); the role must exist and not be predefined; it is recorded (every
--   migrate grants it again) and granted the set's rights.
--   Parameters: p_set, 'sidecar' or 'monitor' (anything else raises: no name from
--   the caller reaches a statement); p_role, the role.
--   Returns: nothing.
--   Calls: dbsync._require_owner, dbsync._check_grantee, dbsync._grant_sidecar_rights
--   or dbsync._grant_monitor_rights. Tables touched: dbsync.sidecar_roles or
--   dbsync.monitor_roles (insert).
create or replace function dbsync._grant_set(p_set text, p_role name) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    if p_set is null or p_set not in ('sidecar', 'monitor') then
        raise exception '_grant_set: no grant set "%"', p_set using errcode = 'invalid_parameter_value';
    end if;
    perform dbsync._require_owner('grant_' || p_set);
    perform dbsync._check_grantee('grant_' || p_set, p_role, ('dbsync_' || p_set)::name);
    if p_set = 'sidecar' then
        insert into dbsync.sidecar_roles (role_name) values (p_role) on conflict do nothing;
        perform dbsync._grant_sidecar_rights(p_role);
    else
        insert into dbsync.monitor_roles (role_name) values (p_role) on conflict do nothing;
        perform dbsync._grant_monitor_rights(p_role);
    end if;
end
$$;
