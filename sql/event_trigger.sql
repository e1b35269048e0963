-- The DDL event triggers need a superuser (event triggers are database-wide).
-- Without it dbsync still works, but a captured table must only be altered
-- through dbsync.execute_ddl (see README, limits).
-- ENABLE ALWAYS: an event trigger fires only in origin and local mode by default,
-- so DDL run in a session with session_replication_role = replica (a restore, a
-- tool that skips the application's triggers) went unseen: capture triggers
-- disabled, a key dropped, a column added and filled, without a word. Made again
-- by every migrate whose code changed, so an existing install gets it too.
do $$
begin
    if (select rolsuper from pg_roles where rolname = current_user) then
        drop event trigger if exists dbsync_ddl_watch;
        create event trigger dbsync_ddl_watch on ddl_command_end
            when tag in ('ALTER TABLE', 'CREATE TABLE', 'ALTER TRIGGER', 'ALTER TYPE')
            execute function dbsync._on_ddl();
        alter event trigger dbsync_ddl_watch enable always;
        drop event trigger if exists dbsync_drop_watch;
        create event trigger dbsync_drop_watch on sql_drop
            when tag in ('DROP TABLE', 'DROP SEQUENCE', 'DROP SCHEMA', 'DROP OWNED', 'ALTER TABLE', 'DROP TRIGGER', 'DROP INDEX',
                         -- ... CASCADE drops the columns of the type, the generated ones of the function.
                         'DROP TYPE', 'DROP DOMAIN', 'DROP FUNCTION', 'DROP COLLATION', 'DROP EXTENSION')
            execute function dbsync._on_drop();
        alter event trigger dbsync_drop_watch enable always;
    end if;
end
$$;
