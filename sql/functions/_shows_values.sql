-- dbsync._shows_values() returns boolean
--   Whether this session may see values of replicated rows in dbsync.status,
--   dbsync.table_status and wait_for_sync's reason: the DETAIL PostgreSQL adds to
--   an error (a unique violation quotes the key, a CHECK or NOT NULL violation the
--   whole row), the keys background verification found differing, the key up to
--   which a chunked copy got. True when the session's login role may read
--   dbsync.verifications, which holds such keys in the clear (the dbsync owner,
--   superusers, sidecar roles, admin roles granted it); false for monitoring roles
--   (dbsync.grant_monitor). The login role (session_user), not current_user: inside
--   SECURITY DEFINER code such as wait_for_sync current_user is the dbsync owner,
--   and a session can only SET ROLE to roles whose rights it has anyway.
--   Parameters: none.
--   Returns: boolean.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._shows_values() returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select coalesce(has_table_privilege(session_user, 'dbsync.verifications'::regclass, 'SELECT'), false)
$$;
