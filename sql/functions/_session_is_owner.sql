-- dbsync._session_is_owner() returns boolean
--   Whether the session's role (session_user: SECURITY DEFINER code runs as the owner
--   whoever calls it) is the dbsync owner or a member of it (a superuser is). An admin
--   role may hold EXECUTE on every function of the schema and is not.
--   Parameters: none.
--   Returns: boolean.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._session_is_owner() returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select pg_has_role(session_user, n.nspowner, 'member') from pg_namespace n where n.nspname = 'dbsync'
$$;
