-- 0005: background verification. `dbsync run --verify-interval` makes every
-- subscription compare, once per interval, one bounded key range of one of its
-- tables with its target (dbsync._verify_schedule queues it as a verification,
-- the verify job compares it at one tick of the stream), rotating through the
-- tables and, table by table, through their keys. dbsync.verify_progress remembers
-- where each table's walk stands and what it found, so that a restarted sidecar goes
-- on where it stopped and a difference stays shown until a complete pass over the
-- table finds none or the table is copied again (dbsync._verify_record).

-- A bounded verification: only keys after key_after (NULL: from the first key), and
-- at most row_limit source rows (NULL: the whole table). The job reports where it
-- stopped: key_reached, the last source key of the range, or reached_end when it
-- ran to the end of the table (the range was then open at the top, so target rows
-- past the source's last key were compared too).
alter table dbsync.verifications
    add column background boolean not null default false,
    add column key_after text[],
    add column row_limit bigint,
    add column key_reached text[],
    add column reached_end boolean;
-- When a subscription's last background verification was asked for (is it due?).
create index verifications_background on dbsync.verifications (sub_id, requested_at) where background;

-- Per subscription and table, background verification's walk over the keys.
-- A pass: every key range from the first key to the end of the table, one
-- verification after another (each at its own tick; ranges are by key value, so the
-- ranges of a pass cover every key whatever changed in between).
create table dbsync.verify_progress (
    sub_id            int not null references dbsync.subscriptions on delete cascade,
    table_id          int not null references dbsync.tables,
    -- The next range starts after this key (key columns' text); NULL: at the first key.
    next_key          text[],
    -- When a range of this table was last queued: the rotation takes the oldest.
    scheduled_at      timestamptz,
    -- When a range was last compared.
    verified_at       timestamptz,
    -- The newest verification recorded here (older ones are not recorded again).
    last_id           bigint,
    -- The pass under way.
    pass_started_at   timestamptz,
    pass_rows         bigint not null default 0,
    pass_differences  bigint not null default 0,
    pass_keys         text[] not null default '{}',
    passes            int not null default 0,
    pass_ended_at     timestamptz,
    -- What dbsync.status and dbsync.table_status show: rows that differ, as found by
    -- the last complete pass, or by the pass under way when it found more. Set to 0
    -- only by a complete pass that found none, or by a new copy of the table.
    differences       bigint not null default 0,
    differing_keys    text[] not null default '{}',
    -- The verification that last found differences (details in dbsync.verifications),
    -- and since when differences have been shown.
    found_id          bigint,
    found_at          timestamptz,
    -- Failed verifications of this table in a row, and the last one's error.
    errors            int not null default 0,
    last_error        text,
    last_error_at     timestamptz,
    primary key (sub_id, table_id)
);
