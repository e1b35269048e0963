-- 0033: DDL run outside execute_ddl that changed the values of a replicated
-- table's existing rows with no row trigger firing (ALTER COLUMN ... TYPE ...
-- USING, a column added with a default of now() or random(), an identity or serial
-- column): the table that every subscription copies again once the change is
-- acknowledged (dbsync.acknowledge_ddl), after the DBA made it on the targets. Until
-- then the subscriptions of its group show an error (dbsync.status).
alter table dbsync.ddl_log add column recopy_table_id int references dbsync.tables on delete cascade;
create index on dbsync.ddl_log (recopy_table_id) where recopy_table_id is not null and acknowledged_at is null;
-- Now dbsync._unreplicated_ddl(int, text, boolean).
drop function if exists dbsync._unreplicated_ddl(int, text);
