-- dbsync.execute_ddl(group_name text, ddl text) returns void
--   Runs ddl on the source in the caller's transaction, and queues it so that every
--   target of the group runs it at this point of the stream, in the same target
--   transaction as the batch around it (before that batch's rows are written; DDL
--   that fails there because of rows the batch changes runs after them).
--   SECURITY INVOKER on purpose: the DDL runs with the caller's rights and
--   search_path (recorded, and used again on the targets); the bookkeeping is done
--   by the SECURITY DEFINER dbsync._begin_ddl and dbsync._queue_ddl.
--   Capture follows the tables the DDL touched (the DDL event trigger regenerates
--   it; without the event trigger, _queue_ddl looks for tables of the group whose
--   key changed). A table of another group is refused: its targets would not get
--   the DDL.
--   Errors: unknown group, empty ddl, a table of another group, and whatever the
--   DDL itself raises (then nothing is queued: it is one transaction).
create or replace function dbsync.execute_ddl(group_name text, ddl text) returns void
language plpgsql as $$
declare
    v_group int := dbsync._group_id(group_name, false);
begin
    if ddl is null or pg_catalog.btrim(ddl) = '' then
        raise exception 'execute_ddl: ddl must not be empty' using errcode = 'invalid_parameter_value';
    end if;
    perform dbsync._begin_ddl(v_group);
    execute ddl;
    perform dbsync._queue_ddl(v_group, ddl, pg_catalog.current_setting('search_path'));
end
$$;
