-- dbsync._mark_replica_statement() returns trigger
--   The BEFORE STATEMENT trigger of a plain replicated table in replica mode
--   (dbsync_capture_replica_mark): marks the statement as one whose statement
--   triggers fire, so that the table's replica-mode row trigger leaves its rows to
--   them (dbsync._statement_mark says why and how). Its AFTER STATEMENT trigger
--   (dbsync_capture_replica_unmark) clears the mark: a statement run at trigger
--   depth 0 inside the apply worker's change (a subscriber-only column's default
--   writing another replicated table) has the worker's statement start time and
--   depth, and its mark left behind hid the worker's own row that followed. SECURITY DEFINER, as the capture
--   functions are: the writer may lack USAGE on schema dbsync; it sets one
--   placeholder setting of its own and nothing else. Not named capture_: it captures
--   nothing, and a table without it (or with it disabled or renamed) is still
--   captured in full, each key queued twice by a replica session's statements.
--   Called twice a statement, in replica mode only: the SET clause costs little.
--   Parameters: none (a trigger).
--   Returns: null (a statement trigger's result is ignored).
--   Calls: dbsync._statement_mark. Tables touched: none.
create or replace function dbsync._mark_replica_statement() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform pg_catalog.set_config('dbsync.statement',
        case when TG_WHEN operator(pg_catalog.=) 'BEFORE' then dbsync._statement_mark(1) else '' end, true);
    return null;
end
$$;
