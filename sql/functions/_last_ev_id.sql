-- dbsync._last_ev_id(p_group_id int) returns bigint
--   The last event id handed out in the group (0 when none yet, or no such group).
--   For dbsync.status: a view calls functions with its reader's rights, and
--   pg_sequence_last_value() demands SELECT or USAGE on the sequence from the
--   caller, so a monitoring role granted only the view could not read it. This
--   runs as the dbsync owner and reveals a counter, nothing else; grants.sql lets
--   PUBLIC execute it (reaching it by name still needs USAGE on the schema).
--   Parameters: p_group_id.
--   Returns: the event id.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._last_ev_id(p_group_id int) returns bigint
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce(pg_sequence_last_value(to_regclass(format('dbsync.%I', 'events_seq_' || p_group_id))), 0)
$$;
