-- 0037: dbsync._capture_triggers says how each capture trigger is meant to fire
-- (a column more: sql/functions/_capture_triggers.sql creates it, and CREATE OR
-- REPLACE cannot change a function's result columns). A plain table's capture gets
-- a row trigger firing in replica mode only, for PostgreSQL's logical replication
-- apply worker, which fires no statement trigger (capture version 7: migrate
-- generates every table's capture again).
drop function if exists dbsync._capture_triggers(oid, boolean);
