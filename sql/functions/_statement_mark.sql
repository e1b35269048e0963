-- dbsync._statement_mark(p_depth int) returns text
--   What identifies the statement running p_depth trigger levels out from here: its
--   client statement's start time and its trigger depth. A plain table's BEFORE
--   STATEMENT trigger in replica mode (_mark_replica_statement, p_depth 1) records it,
--   and the table's replica-mode row trigger (dbsync_capture_replica, see
--   _install_capture) fires only WHEN the row's statement (p_depth 0) is not the one
--   recorded: in the logical replication apply worker, which fires no statement
--   trigger, it always fires; in other replica-mode sessions (dbsync's own apply into
--   a database that is also a source, a bulk load skipping foreign keys), whose
--   statement triggers capture the rows, it never does, and their rows cost no queue
--   INSERT each. A mark left over from another statement never matches: the depth
--   tells a worker's own row from an application trigger's statement it ran, the
--   start time differs from one applied change to the next, and a statement clears
--   its mark when it ends (a column default's, run by the worker at depth 0 before
--   the worker's row: dbsync_capture_replica_unmark). Only a mismatch that
--   should have matched is possible (a statement changing DateStyle or TimeZone
--   midway), and it queues a key twice, which costs and changes nothing.
--   Inlined into the trigger's WHEN clause, where it runs as the writer (EXECUTE
--   granted to PUBLIC, sql/grants.sql): a plain SQL function of one SELECT, every name
--   qualified and every operator named by its schema, as the writer's search_path
--   parses it.
--   Parameters: p_depth.
--   Returns: the statement's mark.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._statement_mark(p_depth int) returns text
language sql stable as $$
    select pg_catalog.statement_timestamp()::pg_catalog.text operator(pg_catalog.||) ' '
           operator(pg_catalog.||) (pg_catalog.pg_trigger_depth() operator(pg_catalog.-) p_depth)::pg_catalog.text
$$;
