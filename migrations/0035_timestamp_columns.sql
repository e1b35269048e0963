-- 0035: the columns of each replicated table whose type is timestamp or
-- timestamptz (through domains), by name (sql/functions/_timestamp_columns.sql):
-- ALTER COLUMN ... TYPE from one to the other rewrites nothing under a TimeZone of
-- offset 0 (PostgreSQL 12 on), so no table_rewrite event fires, and once it has
-- run the catalog no longer says what the column was. add_table fills it, the DDL
-- event trigger keeps it; for the tables replicated already, sql/event_trigger.sql
-- fills it once the function exists.
alter table dbsync.tables add column timestamp_columns jsonb;
