-- 0006: a DBA's lifecycle (issue 20).
--
-- execute_ddl statements a DBA chose to skip on one subscription's target (after
-- making the change there by hand): dbsync.skip_ddl records them, the sidecar leaves
-- them out of that subscription's batches (dbsync._skipped_ddl).
create table dbsync.skipped_ddl (
    sub_id      int not null references dbsync.subscriptions on delete cascade,
    ev_id       bigint not null,
    ddl         text not null,
    skipped_at  timestamptz not null default now(),
    skipped_by  name not null default current_user,
    primary key (sub_id, ev_id)
);

-- Changes made outside execute_ddl that a DBA has dealt with on the targets:
-- dbsync.acknowledge_ddl sets these, and dbsync.unreplicated_ddl no longer lists them.
alter table dbsync.ddl_log add column acknowledged_at timestamptz;
alter table dbsync.ddl_log add column acknowledged_by name;
