-- The DDL event triggers need a superuser (event triggers are database-wide).
-- Without it dbsync still works, but a captured table must only be altered
-- through dbsync.execute_ddl (see README, limits).
do $$
begin
    if (select rolsuper from pg_roles where rolname = current_user) then
        drop event trigger if exists dbsync_ddl_watch;
        create event trigger dbsync_ddl_watch on ddl_command_end
            when tag in ('ALTER TABLE', 'CREATE TABLE', 'ALTER TRIGGER')
            execute function dbsync._on_ddl();
        drop event trigger if exists dbsync_drop_watch;
        create event trigger dbsync_drop_watch on sql_drop
            when tag in ('DROP TABLE', 'DROP SEQUENCE', 'DROP SCHEMA', 'DROP OWNED', 'ALTER TABLE', 'DROP TRIGGER')
            execute function dbsync._on_drop();
    end if;
end
$$;
