-- The DDL event trigger needs a superuser (event triggers are database-wide).
-- Without it dbsync still works, but a captured table must only be altered
-- through dbsync.execute_ddl (see README, limits).
do $$
begin
    if (select rolsuper from pg_roles where rolname = current_user) then
        drop event trigger if exists dbsync_ddl_watch;
        create event trigger dbsync_ddl_watch on ddl_command_end
            when tag in ('ALTER TABLE', 'CREATE TABLE')
            execute function dbsync._on_ddl();
    end if;
end
$$;
