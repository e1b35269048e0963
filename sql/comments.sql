-- What psql shows for dbsync's tables (\dt+ dbsync.*), re-applied by every migrate.
-- Functions and views get theirs from their header comments (src/migrate.ts).
-- A table added by a migration gets its comment here (test/comments.test.ts checks).
comment on table dbsync.groups is
    'Groups: one queue each (dbsync.events_<group_id>, three rotating slots), replayed in commit order. dbsync.create_group adds one.';
comment on table dbsync.events is
    'The capture queue, partitioned by group and slot: which keys each transaction changed (op K: one key; M: up to 1,000 keys of one statement, each the text of its text[]), TRUNCATE (T) and execute_ddl''s DDL (X), with the writer''s txid. Internal; holds keys of replicated rows.';
comment on table dbsync.queue_slots is
    'The three slots of each group''s queue and when they were switched and truncated (dbsync.maintain rotates them).';
comment on table dbsync.ticks is
    'Positions of each group''s stream: a tick is a pg_current_snapshot(); a batch is what committed between two ticks.';
comment on table dbsync.installed_at is
    'The OID dbsync.groups had when dbsync was installed: another one means this database was restored from a pg_dump of another, whose tables and transaction ids dbsync''s state names (dbsync._restored_by_dump).';
comment on table dbsync.tables is
    'Replicated tables (dbsync.add_table): group, key columns, whether the key follows the primary key; removed_at once removed or dropped; timestamp_columns: its timestamp and timestamptz columns as of its last DDL (dbsync._timestamps_retyped); column_names: its columns'' names by attnum as of its last DDL (dbsync._column_names).';
comment on table dbsync.shapes is
    'The key shapes of each table over time (key columns, their attnums and types): queued keys are read by the shape they were captured in.';
comment on table dbsync.subscriptions is
    'Subscriptions (dbsync.add_subscription): a group delivered to a target conninfo, with its position, progress and last error. See dbsync.status.';
comment on table dbsync.subscription_tables is
    'Per subscription and table: copy state (pending, copying, catching_up, streaming, error) and progress. See dbsync.table_status.';
comment on table dbsync.sequences is
    'Sequences carried to the targets (dbsync.add_sequence, or owned by a replicated table); each target''s next nextval gives the source''s.';
comment on table dbsync.subscription_sequences is
    'The next value of each carried sequence as last set on each subscription''s target (wait_for_sync waits for sequences too).';
comment on table dbsync.ddl_log is
    'DDL on replicated tables seen by the event triggers: through execute_ddl, or not (those are listed in dbsync.unreplicated_ddl; recopy_table_id: a table whose rows it changed on the source only, copied again once acknowledged).';
comment on table dbsync.skipped_ddl is
    'execute_ddl statements a DBA chose to skip on one subscription''s target (dbsync.skip_ddl): who, when, what.';
comment on table dbsync.unlogged_intact is
    'One row while the source''s unlogged tables keep their rows; crash recovery empties it with them, and the next dbsync.maintain copies the replicated unlogged tables again. Internal.';
comment on table dbsync.ddl_context is
    'Which session is running dbsync.execute_ddl, for the DDL event trigger. Internal.';
comment on table dbsync.partitions is
    'Leaf partitions of replicated partitioned tables: a dropped one makes its table be copied again. Internal.';
comment on table dbsync.verifications is
    'dbsync.verify_table requests and their outcome: rows compared, missing, extra, different, repaired, the first differing keys.';
comment on table dbsync.sidecar_roles is
    'Roles granted the sidecar''s rights by dbsync.grant_sidecar; add_table, add_sequence and migrate grant them again.';
comment on table dbsync.monitor_roles is
    'Roles granted the monitoring rights by dbsync.grant_monitor (read dbsync.status and dbsync.table_status, call wait_for_sync); migrate grants them again.';
comment on table dbsync.group_pairings is
    'A row per group that add_table and add_subscription both write, so that a REPEATABLE READ transaction pairing with an outdated view of the other fails (dbsync._pair_group).';
comment on table dbsync.migrations is
    'The numbered migrations applied by dbsync migrate (migrations/*.sql), each once.';
comment on table dbsync.installed_code is
    'The checksum of the functions and views installed by the last dbsync migrate that changed them.';
comment on table dbsync.verify_progress is
    'Background verification (dbsync run --verify-interval): per subscription and table, where its walk over the keys stands and what it found. Written by the sidecar.';
