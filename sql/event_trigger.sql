-- The DDL event triggers need a superuser (event triggers are database-wide).
-- Without it dbsync still works, but a captured table must only be altered
-- through dbsync.execute_ddl (see README, limits).
-- ENABLE ALWAYS: an event trigger fires only in origin and local mode by default,
-- so DDL run in a session with session_replication_role = replica (a restore, a
-- tool that skips the application's triggers) went unseen: capture triggers
-- disabled, a key dropped, a column added and filled, without a word. Made again
-- by every migrate whose code changed, so an existing install gets it too.
-- A migrate that may not make them (its role is no longer a superuser) keeps them
-- where they are already what this code needs (they call their functions by oid,
-- and CREATE OR REPLACE keeps it); else it fails: triggers of an older version left
-- in place would miss the commands it watches since, or the replica mode, silently.
-- The columns the DDL event trigger compares a table's timestamp columns with
-- (dbsync._timestamps_retyped), for the tables replicated before migration 0035.
update dbsync.tables set timestamp_columns = dbsync._timestamp_columns(relid)
where timestamp_columns is null and removed_at is null;
-- And their columns' names (dbsync._column_names), for those replicated before 0047.
update dbsync.tables set column_names = dbsync._column_names(relid)
where column_names is null and removed_at is null;
-- The names dbsync.tables records are the ones the targets know each table by
-- (dbsync._follow_name, which the DDL event trigger calls): a RENAME or SET SCHEMA
-- outside execute_ddl is held until acknowledged. Taken as they are now, so that a
-- table renamed through execute_ddl by an older version (its record left behind)
-- is not taken for one renamed outside it at its next DDL.
select dbsync._follow_name(table_id) from dbsync.tables where removed_at is null;
do $$
declare
    w record;
    v_super boolean := (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user);
    v_ours text[] := '{}';
    v_stale text[] := '{}';
begin
    for w in select * from (values
        ('dbsync_ddl_watch', 'ddl_command_end', 'dbsync._on_ddl()'::regprocedure,
         -- PostgreSQL takes ALTER INDEX ... RENAME for a table too, and ALTER VIEW,
         -- MATERIALIZED VIEW and FOREIGN TABLE ... RENAME COLUMN.
         array['ALTER TABLE', 'CREATE TABLE', 'ALTER TRIGGER', 'ALTER TYPE', 'ALTER SCHEMA', 'ALTER INDEX',
               'ALTER VIEW', 'ALTER MATERIALIZED VIEW', 'ALTER FOREIGN TABLE']),
        ('dbsync_drop_watch', 'sql_drop', 'dbsync._on_drop()'::regprocedure,
         array['DROP TABLE', 'DROP SEQUENCE', 'DROP SCHEMA', 'DROP OWNED', 'ALTER TABLE', 'DROP TRIGGER', 'DROP INDEX',
               -- ... CASCADE drops the columns of the type, the generated ones of the function.
               'DROP TYPE', 'DROP DOMAIN', 'DROP FUNCTION', 'DROP COLLATION', 'DROP EXTENSION',
               -- ... CASCADE drops the indexes built with them (a key's too).
               'DROP OPERATOR CLASS', 'DROP OPERATOR FAMILY']),
        -- A rewrite changes rows without a row trigger (ALTER COLUMN ... TYPE ...
        -- USING); ALTER TYPE ... ALTER ATTRIBUTE ... CASCADE rewrites typed tables.
        ('dbsync_rewrite_watch', 'table_rewrite', 'dbsync._on_rewrite()'::regprocedure,
         array['ALTER TABLE', 'ALTER TYPE'])
    ) as v(name, event, fn, tags) loop
        v_ours := v_ours || w.name;
        if v_super then
            execute pg_catalog.format('drop event trigger if exists %I', w.name);
            execute pg_catalog.format('create event trigger %I on %I when tag in (%s) execute function %s',
                                      w.name, w.event, (select pg_catalog.string_agg(pg_catalog.quote_literal(t), ', ') from pg_catalog.unnest(w.tags) t), w.fn);
            execute pg_catalog.format('alter event trigger %I enable always', w.name);
        elsif not exists (select from pg_catalog.pg_event_trigger e
                           where e.evtname = w.name and e.evtevent = w.event and e.evtfoid = w.fn::oid and e.evtenabled = 'A'
                             and e.evttags @> w.tags and e.evttags <@ w.tags) then
            v_stale := v_stale || w.name;
        end if;
    end loop;
    -- None at all: dbsync was never installed by a superuser here (README, Limits).
    if pg_catalog.cardinality(v_stale) > 0 and exists (select from pg_catalog.pg_event_trigger e where e.evtname = any (v_ours)) then
        raise exception 'dbsync: the DDL event triggers % are not what this version needs, and % may not make them again (event triggers need a superuser)',
                pg_catalog.array_to_string(v_stale, ', '), current_user
            using errcode = 'insufficient_privilege',
                  hint = pg_catalog.format('Run dbsync migrate once as a superuser: as the dbsync owner made one for the time of it '
                                           '(ALTER ROLE %I SUPERUSER, then NOSUPERUSER). Left as they are, they would miss DDL '
                                           'this version watches, without a word. Nothing was changed.', current_user);
    end if;
end
$$;
