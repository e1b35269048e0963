-- dbsync._origin_mode() returns text
--   Puts the transaction in session_replication_role = origin when it was in
--   replica mode, for the DDL event triggers, which fire in replica sessions too
--   (ENABLE ALWAYS): in replica mode no ORIGIN trigger fires, foreign keys'
--   included, so a row of dbsync.sequences deleted there left the rows of
--   dbsync.subscription_sequences that point at it. The caller sets the returned
--   mode back (set_config, local) before it returns, so the session's own writes
--   after the DDL run in the mode it chose. Needs the right to set the parameter (a
--   superuser owner, or GRANT SET on 15+); without it the mode stays as it is.
--   Not SECURITY DEFINER: called by the event triggers, which are.
--   Parameters: none.
--   Returns: the mode to set back, or NULL when nothing was changed.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._origin_mode() returns text
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    if pg_catalog.current_setting('session_replication_role') OPERATOR(pg_catalog.<>) 'replica' then
        return null;
    end if;
    perform pg_catalog.set_config('session_replication_role', 'origin', true);
    return 'replica';
exception when insufficient_privilege then
    return null;
end
$$;
