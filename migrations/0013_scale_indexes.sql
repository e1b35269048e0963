-- 0013: indexes for lookups that ran as scans of a whole table of dbsync's, so that
-- their cost grew with the number of replicated tables (or sequences) of every
-- group, not with the tables concerned.

-- A table's shapes: batch_plan (per table of a batch), _capture_stale (per table an
-- ALTER touches), _install_capture (add_table), _chunk_state.
create index shapes_table on dbsync.shapes (table_id, shape_id);

-- A group's carried sequences: pushed after every batch (src/target/sequences.ts),
-- and compared by _sequences_behind for every subscription at every poll (has_work).
-- Tables with serial or identity keys each bring one.
create index sequences_group on dbsync.sequences (group_id);

-- A group's tables: _queue_ddl (without the DDL event trigger), drop_group.
create index tables_group on dbsync.tables (group_id);

-- A table's rows per subscription: resync_table, remove_table, and the foreign key
-- from dbsync.tables.
create index subscription_tables_table on dbsync.subscription_tables (table_id);
