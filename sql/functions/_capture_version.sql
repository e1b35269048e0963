-- dbsync._capture_version() returns int
--   The version of the capture that _install_capture generates, recorded per table
--   in dbsync.tables.capture_version. Tables with a lower one get their capture
--   generated again by the next migrate (_upgrade_capture).
--   Raise it whenever the generated functions or triggers change.
--     1  statement triggers for plain tables (an UPDATE queues old and new keys),
--        with SET search_path, into dbsync.events (before migration 0010)
--     2  UPDATE queues new keys, a row trigger the old key of a changed key; no
--        SET search_path (but for reg* keys); one function per trigger;
--        inheritance children by row triggers; triggers ENABLE ALWAYS
--     3  statement triggers queue 'M' events (up to 1,000 keys each)
--     4  a statement of at most 1,000 rows is one INSERT without window or
--        aggregate (see _capture_insert)
--     5  the key trigger's WHEN calls key_changed_<table_id>(OLD, NEW): a key
--        column may change type or be dropped
--   Parameters: none.
--   Returns: the version.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._capture_version() returns int
language sql immutable set search_path = pg_catalog, pg_temp as $$ select 5 $$;
