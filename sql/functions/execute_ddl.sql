-- dbsync.execute_ddl(group_name text, ddl text) returns void
--   Runs ddl on the source in the caller's transaction, and queues it so that every
--   target of the group runs it at exactly this point of the stream, in the same
--   target transaction as the changes around it. Capture follows the new shape of
--   the group's tables at once (added, dropped, renamed columns, changed types).
--   SECURITY INVOKER on purpose: the DDL runs with the caller's rights and
--   search_path (recorded, and used again on the targets); the queueing is done by
--   the SECURITY DEFINER dbsync._queue_ddl.
--   Errors: unknown group, empty ddl, and whatever the DDL itself raises (then
--   nothing is queued: it is one transaction).
create or replace function dbsync.execute_ddl(group_name text, ddl text) returns void
language plpgsql as $$
declare
    v_group int := dbsync._group_id(group_name, false);
begin
    if ddl is null or pg_catalog.btrim(ddl) = '' then
        raise exception 'execute_ddl: ddl must not be empty' using errcode = 'invalid_parameter_value';
    end if;
    -- The event trigger leaves changes made here to _queue_ddl.
    perform pg_catalog.set_config('dbsync.in_execute_ddl', 'on', true);
    execute ddl;
    perform pg_catalog.set_config('dbsync.in_execute_ddl', 'off', true);
    perform dbsync._queue_ddl(v_group, ddl, pg_catalog.current_setting('search_path'));
end
$$;
