-- dbsync._unreplicated_ddl(p_table_id int, p_tag text, p_recopy boolean default false) returns void
--   DDL that changed replicated table p_table_id outside dbsync.execute_ddl (of its
--   group): logged in dbsync.ddl_log, listed by dbsync.unreplicated_ddl until
--   acknowledged, and a WARNING says that the targets need the same change. Called
--   by the DDL event triggers. p_recopy: it changed the values of the table's
--   existing rows, which no row trigger saw (a rewrite, a column filled with values
--   each server computes for itself), or its name (p_tag 'ALTER TABLE ... RENAME',
--   'ALTER SCHEMA ... RENAME':
--   the targets write its rows under the new name, into another table where one has
--   it, until they are renamed too), or a column's ('... RENAME COLUMN', alike): every subscription of the group shows an
--   error until the change is acknowledged, then copies the table again
--   (dbsync.acknowledge_ddl). One entry for each table a statement changed: the
--   rewrite event trigger (for each rewritten partition) and the DDL event trigger
--   both report it, the first with p_recopy.
--   Parameters: p_table_id, p_tag (the command's tag), p_recopy.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.ddl_log (written); dbsync.tables (read).
create or replace function dbsync._unreplicated_ddl(p_table_id int, p_tag text, p_recopy boolean default false) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    t dbsync.tables;
    v_name text;
    v_logged bigint;
    v_held boolean;
begin
    select * into t from dbsync.tables where table_id = p_table_id;
    v_name := format('%I.%I', t.schema_name, t.table_name);
    -- This statement's entry for the table, if an event trigger made it already
    -- (now(): the transaction's start).
    select l.ddl_id, l.recopy_table_id is not null into v_logged, v_held
    from dbsync.ddl_log l
    where l.logged_at = now() and l.group_id = t.group_id and l.table_name = v_name
      and l.command_tag = p_tag and l.statement = current_query() and not l.via_execute_ddl and l.acknowledged_at is null
    order by l.ddl_id desc limit 1;
    if v_logged is null then
        -- session_user: current_user is the dbsync owner here (the event triggers are
        -- SECURITY DEFINER), and the column's default would name it, not who ran the DDL.
        insert into dbsync.ddl_log (group_id, table_name, command_tag, statement, via_execute_ddl, role_name, recopy_table_id)
        values (t.group_id, v_name, p_tag, current_query(), false, session_user, case when p_recopy then p_table_id end)
        returning ddl_id into v_logged;
    elsif p_recopy and not v_held then
        update dbsync.ddl_log set recopy_table_id = p_table_id where ddl_id = v_logged;
    else
        return;
    end if;
    if p_recopy then
        raise warning 'dbsync: % of replicated table % changed %', p_tag, v_name,
                      case when p_tag like '% RENAME' then 'the name its targets know it by outside dbsync.execute_ddl: batches write its rows under its new name there'
                           when p_tag like '% RENAME COLUMN' then 'the name of a column its targets know outside dbsync.execute_ddl: batches write its values under its new name there'
                           else 'its rows outside dbsync.execute_ddl, and no row trigger saw it' end
            using hint = format('Every subscription of the group shows an error until you make the same change on its target, then '
                                'select dbsync.acknowledge_ddl(%s): each then copies %s again from the source (whatever the '
                                'target''s run of it did to the rows). Through dbsync.execute_ddl the targets get it by themselves.',
                                v_logged, v_name);
    else
        raise warning 'dbsync: % of replicated table % was not run through dbsync.execute_ddl', p_tag, v_name
            using hint = 'Make the same change on every target of the group (see dbsync.unreplicated_ddl), '
                         'then select dbsync.acknowledge_ddl(ddl_id); '
                         || case when p_tag = 'ALTER TYPE'
                                 then 'until then the target''s rows keep the values the type had (no row trigger saw them change).'
                                 else 'until then a change of its columns stops replication of this table with an error.' end;
    end if;
end
$$;
