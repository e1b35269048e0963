-- 0047: the names of each replicated table's columns by attnum
-- (sql/functions/_column_names.sql): a RENAME COLUMN outside execute_ddl makes the
-- targets write a column's values under its new name, into another column where
-- two swapped, and once it has run the catalog no longer says what the names were.
-- add_table fills it, the DDL event trigger keeps it; for the tables replicated
-- already, sql/event_trigger.sql fills it once the function exists.
alter table dbsync.tables add column column_names jsonb;
