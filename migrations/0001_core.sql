-- 0001: dbsync's tables on the source. Functions and views live in sql/ and are
-- re-installed on every migrate; tables change only through new numbered files.
--
-- Data path: a captured table's triggers write dbsync.events (one partition per
-- group, itself split into three rotating slots); dbsync.ticks cut the queue into
-- batches; the sidecar applies batches per subscription and records its progress in
-- dbsync.subscriptions / dbsync.subscription_tables.

-- A group is one queue, replayed in commit order.
create table dbsync.groups (
    group_id      int generated always as identity primary key,
    name          text not null unique,
    -- Slot of dbsync.events the capture triggers write to now (0..2); see rotate().
    cur_slot      smallint not null default 0,
    -- Set by the sidecar before it sleeps, cleared when it wakes or stops: only then
    -- do capture triggers NOTIFY, because a notifying transaction takes a
    -- cluster-wide lock at commit and would lose group commit.
    sleeping      boolean not null default false,
    last_tick_id  bigint not null default 0,
    rotated_at    timestamptz not null default now(),
    created_at    timestamptz not null default now()
);

-- Captured changes. op: 'U' = the row's new state (insert or update),
-- 'D' = the row is gone (row holds the old row, its key identifies it),
-- 'T' = the table was truncated, 'X' = row[1] is DDL from dbsync.execute_ddl, to
-- run with search_path row[2]. row holds the captured columns' text
-- (output functions under pinned settings), in the order of the shape.
create table dbsync.events (
    group_id  int not null,
    slot      smallint not null,
    ev_id     bigint not null,
    txid      xid8 not null default pg_current_xact_id(),
    -- NULL for op 'X' (DDL to run on targets at this point of the stream).
    shape_id  int,
    op        "char" not null,
    row       text[]
) partition by list (group_id);
-- Batches are cut by transaction id (see batch_events); ev_id only orders the
-- events of one batch, which is sorted anyway, so it needs no index.
create index on dbsync.events (txid);

-- When slot s stopped being current, every transaction that may still write into
-- it had an xid below switched_xmax (an xid assigned after the switch committed).
-- The slot may be truncated once every subscription has passed them all.
create table dbsync.queue_slots (
    group_id       int not null references dbsync.groups on delete cascade,
    slot           smallint not null check (slot between 0 and 2),
    switched_at    timestamptz,
    switched_xmax  xid8,
    primary key (group_id, slot)
);

-- A tick: the snapshot that ends one batch and starts the next.
create table dbsync.ticks (
    group_id    int not null references dbsync.groups on delete cascade,
    tick_id     bigint not null,
    snap        pg_snapshot not null,
    -- The group's event sequence read just after snap was taken: every event
    -- visible in snap has an id <= this. Used for sizes (backlog, batch merging);
    -- batch boundaries are decided by txid alone (see batch_events).
    max_ev_id   bigint not null,
    created_at  timestamptz not null default clock_timestamp(),
    primary key (group_id, tick_id)
);

create table dbsync.tables (
    table_id     int generated always as identity primary key,
    relid        oid not null,
    group_id     int not null references dbsync.groups,
    -- The name the table is applied to on targets.
    schema_name  text not null,
    table_name   text not null,
    key_columns  text[] not null,
    partitioned  boolean not null default false,
    added_at     timestamptz not null default now(),
    removed_at   timestamptz
);
create unique index tables_relid_live on dbsync.tables (relid) where removed_at is null;

-- The column layout of events written by one version of a table's capture trigger.
create table dbsync.shapes (
    shape_id       int generated always as identity primary key,
    table_id       int not null references dbsync.tables,
    columns        text[] not null,
    types          text[] not null,
    -- 1-based positions of the key columns in columns.
    key_positions  int[] not null,
    created_at     timestamptz not null default now()
);

create table dbsync.subscriptions (
    sub_id           int generated always as identity primary key,
    name             text not null unique,
    -- Identifies the subscription on its target (dbsync.applied there).
    sub_uuid         uuid not null unique default gen_random_uuid(),
    group_id         int not null references dbsync.groups,
    target_conninfo  text not null,
    copy_data        boolean not null,
    paused           boolean not null default false,
    -- Last tick known to be applied on the target (the target is the truth).
    position_tick    bigint not null,
    applied_at       timestamptz,
    batches_applied  bigint not null default 0,
    events_applied   bigint not null default 0,
    rows_per_second  double precision,
    last_error           text,
    last_error_sqlstate  text,
    last_error_table     text,
    last_error_tick      bigint,
    last_error_at        timestamptz,
    error_count          int not null default 0,
    created_at       timestamptz not null default now()
);

-- Per subscription and table: the initial copy and its seam with the stream.
-- The stream applies a table's events only in batches that start at or after
-- copy_tick, and never passes copy_tick while the copy is not committed.
create table dbsync.subscription_tables (
    sub_id          int not null references dbsync.subscriptions on delete cascade,
    table_id        int not null references dbsync.tables,
    state           text not null
                    check (state in ('pending', 'copying', 'catching_up', 'streaming', 'error')),
    copy_tick       bigint,
    rows_copied     bigint not null default 0,
    rows_estimated  bigint,
    copy_started_at timestamptz,
    copy_ended_at   timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    primary key (sub_id, table_id)
);

-- Sequences carried to targets with the batches, never moved backwards there.
create table dbsync.sequences (
    seq_id       int generated always as identity primary key,
    relid        oid not null unique,
    group_id     int not null references dbsync.groups,
    schema_name  text not null,
    seq_name     text not null,
    added_at     timestamptz not null default now()
);

-- Schema changes of captured tables: through execute_ddl (replayed on targets), or
-- outside it (seen by the event trigger; targets need the same change by hand).
create table dbsync.ddl_log (
    ddl_id           bigint generated always as identity primary key,
    logged_at        timestamptz not null default now(),
    group_id         int references dbsync.groups on delete cascade,
    table_name       text,
    command_tag      text not null,
    statement        text not null,
    via_execute_ddl  boolean not null,
    role_name        name not null default current_user
);
