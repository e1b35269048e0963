-- 0004: least-privilege sidecar roles. dbsync.grant_sidecar(role) records a role here
-- and grants it what `dbsync run` needs on the source (sql/functions/grant_sidecar.sql);
-- add_table and add_sequence grant SELECT on what they add to every role recorded
-- here, and every migrate grants the recorded roles again (new functions, tables of
-- graphile-worker's schema).
create table dbsync.sidecar_roles (
    role_name   name primary key,
    granted_at  timestamptz not null default now()
);
