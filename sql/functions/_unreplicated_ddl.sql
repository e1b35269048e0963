-- dbsync._unreplicated_ddl(p_table_id int, p_tag text) returns void
--   DDL that changed replicated table p_table_id outside dbsync.execute_ddl (of its
--   group): logged in dbsync.ddl_log, listed by dbsync.unreplicated_ddl until
--   acknowledged, and a WARNING says that the targets need the same change. Called
--   by the DDL event trigger.
--   Parameters: p_table_id, p_tag (the command's tag).
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.ddl_log (written); dbsync.tables (read).
create or replace function dbsync._unreplicated_ddl(p_table_id int, p_tag text) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    t dbsync.tables;
begin
    select * into t from dbsync.tables where table_id = p_table_id;
    -- session_user: current_user is the dbsync owner here (the event trigger is
    -- SECURITY DEFINER), and the column's default would name it, not who ran the DDL.
    insert into dbsync.ddl_log (group_id, table_name, command_tag, statement, via_execute_ddl, role_name)
    values (t.group_id, format('%I.%I', t.schema_name, t.table_name), p_tag, current_query(), false, session_user);
    raise warning 'dbsync: % of replicated table %.% was not run through dbsync.execute_ddl',
                  p_tag, t.schema_name, t.table_name
        using hint = 'Make the same change on every target of the group (see dbsync.unreplicated_ddl), '
                     'then select dbsync.acknowledge_ddl(ddl_id); '
                     || case when p_tag = 'ALTER TYPE'
                             then 'until then the target''s rows keep the values the type had (no row trigger saw them change).'
                             else 'until then a change of its columns stops replication of this table with an error, and a change of '
                  'its rows (ALTER COLUMN ... TYPE ... USING, which no row trigger sees) leaves the target''s rows as they were.' end;
end
$$;
