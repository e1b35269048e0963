-- 0009: monitoring roles. dbsync.grant_monitor(role) records a role here and grants
-- it what watching replication needs (sql/functions/grant_monitor.sql); every
-- migrate grants the recorded roles again, as it does the sidecar roles.
create table dbsync.monitor_roles (
    role_name   name primary key,
    granted_at  timestamptz not null default now()
);
