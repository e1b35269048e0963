-- 0002: verifications. dbsync.verify_table() queues a row here; the sidecar's
-- "verify" job compares the table on the source and on the subscription's target
-- at one tick and writes the outcome into the same row (see src/verify/verify.ts).
--
-- hold_tick: while it is set and the job that set it still holds its session
-- advisory lock (class 0x64627376 "dbsv", key verification_id), next_batch does not
-- move the subscription past this tick (dbsync._verify_hold). A crashed job loses
-- its lock with its connection, so a hold left behind never stalls the stream.
create table dbsync.verifications (
    verification_id  bigint generated always as identity primary key,
    subscription     text not null,
    sub_id           int not null references dbsync.subscriptions on delete cascade,
    table_id         int not null references dbsync.tables,
    -- Schema-qualified, quoted: the table on the source and on the target.
    table_name       text not null,
    repair           boolean not null default false,
    state            text not null default 'queued'
                     check (state in ('queued', 'running', 'done', 'error')),
    -- The tick both sides are compared at.
    tick_id          bigint,
    hold_tick        bigint,
    requested_at     timestamptz not null default now(),
    started_at       timestamptz,
    -- When both sides stood at tick_id and the comparison began.
    compare_started_at timestamptz,
    finished_at      timestamptz,
    duration         interval,
    rows_estimated   bigint,
    -- Source rows compared so far, and key-range chunks hashed so far.
    rows_compared    bigint not null default 0,
    chunks           int not null default 0,
    chunks_differing int not null default 0,
    -- Rows that differ: missing on the target + extra on the target + different.
    differing_count  bigint not null default 0,
    rows_missing     bigint not null default 0,
    rows_extra       bigint not null default 0,
    rows_different   bigint not null default 0,
    -- The first 1000 differing keys (key text; a composite key as a row literal).
    differing_keys   text[] not null default '{}',
    rows_repaired    bigint not null default 0,
    error            text
);
create index verifications_held on dbsync.verifications (sub_id) where hold_tick is not null;
create index verifications_todo on dbsync.verifications (verification_id) where state in ('queued', 'running');
