-- 0003: capture keys, read states.
--
-- Capture used to record each changed row's values in the order triggers fired and
-- reduce them to the last state per key. That order is not the order in which rows
-- changed (application triggers, writable CTEs, deferrable keys), so the target
-- could end up different from the source without an error. From now on capture
-- records only WHICH rows changed: an event 'K' holds one key (the key columns'
-- text) of the table version its shape describes. The sidecar reads the rows of
-- those keys from the source table itself, in a REPEATABLE READ transaction whose
-- snapshot is the batch's end tick, so each row on the target is the source's row at
-- that snapshot. Order inside a batch no longer matters.

-- A shape now describes a key: the columns (by attnum, so renames follow) and their
-- types that identify a row in the events written by one version of a capture
-- trigger. columns/types/key_positions stay for the key's names at capture time.
alter table dbsync.shapes add column key_attnums int2[], add column key_types oid[];
update dbsync.shapes s
set key_attnums = k.attnums, key_types = k.types
from (select s2.shape_id,
             array_agg(a.attnum order by u.o) as attnums,
             array_agg(a.atttypid order by u.o) as types
      from dbsync.shapes s2
      join dbsync.tables t on t.table_id = s2.table_id
      cross join lateral unnest(s2.key_positions) with ordinality as u(p, o)
      join pg_attribute a on a.attrelid = t.relid and a.attname = s2.columns[u.p] and not a.attisdropped
      group by s2.shape_id) k
where k.shape_id = s.shape_id;

-- Events queued by the old capture: their rows become keys. 'U' and 'D' both mean
-- "this key changed"; the sidecar reads what it is now.
update dbsync.events e
set op = 'K',
    row = (select array_agg(e.row[u.p] order by u.o) from unnest(s.key_positions) with ordinality as u(p, o))
from dbsync.shapes s
where s.shape_id = e.shape_id and e.op in ('U', 'D');

-- Whether the table's key follows its primary key (add_table without key_columns):
-- then a primary key replaced by execute_ddl or ALTER TABLE becomes the new key.
alter table dbsync.tables add column key_is_pk boolean not null default false;
update dbsync.tables t
set key_is_pk = t.key_columns = (select array_agg(a.attname::text order by k.ord)
                                 from pg_index i
                                 cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
                                 join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                                 where i.indrelid = t.relid and i.indisprimary);

-- Copies run inside the subscription's own apply order (one path with the stream):
-- 'pending' asks the next batch to copy the table, which makes it 'streaming' when
-- that batch commits. copy_request counts the requests, so that a batch that copied
-- an older request does not mark a newer one (resync_table meanwhile) as done.
alter table dbsync.subscription_tables add column copy_request bigint not null default 0;
update dbsync.subscription_tables set state = 'pending' where state in ('copying', 'error');
update dbsync.subscription_tables set state = 'streaming' where state = 'catching_up';

-- The slot writers use, and whether they must NOTIFY, read without a snapshot: a
-- REPEATABLE READ writer's snapshot can predate a slot switch, so reading
-- dbsync.groups it would write into a slot already judged free. A sequence's value
-- is not MVCC: dbsync._publish_group_state sets it (cur_slot + 4 when sleeping)
-- under the group's row lock whenever either column changes.
do $$
declare
    g record;
begin
    for g in select * from dbsync.groups loop
        execute format('create sequence dbsync.%I minvalue 0 maxvalue 7', 'group_state_' || g.group_id);
        perform setval(format('dbsync.%I', 'group_state_' || g.group_id)::regclass,
                       g.cur_slot + case when g.sleeping then 4 else 0 end, true);
    end loop;
end
$$;

-- Which execute_ddl is running in which session: the DDL event trigger reads it to
-- tell DDL run through execute_ddl (and its group) from plain DDL. Rows are written
-- only by dbsync's own SECURITY DEFINER code, unlike a setting any session can set.
create unlogged table dbsync.ddl_context (
    backend_pid  int primary key,
    txid         xid8 not null,
    group_id     int not null
);

-- A verification holds its subscription at its tick; the applier reads the batch
-- that ends there through the snapshot the verify job exports.
alter table dbsync.verifications add column hold_snapshot text;

-- Functions of the old capture and copy paths.
drop function if exists dbsync.advance(text, bigint, bigint, double precision, bigint);
drop function if exists dbsync.next_batch(text, bigint);
drop function if exists dbsync._batch_summary(int, bigint, bigint, bigint, bigint);
drop function if exists dbsync.begin_copy(int, int);
drop function if exists dbsync.end_copy(int, int, bigint, bigint, text);
drop function if exists dbsync.record_progress(int, bigint, bigint, double precision);
drop function if exists dbsync._uses_money(oid[]);
drop function if exists dbsync._queue_rows(int, int, regclass, "char");

-- Set by resync_subscription: the next connection to the target accepts whatever
-- position it holds, since every table is copied again.
alter table dbsync.subscriptions add column reset_target boolean not null default false;

-- The leaf partitions of captured partitioned tables, kept by _sync_partitions: when
-- one is dropped (its rows leave the table without any trigger seeing them), the
-- sql_drop event trigger finds its table here and copies it again.
create table dbsync.partitions (
    relid     oid primary key,
    table_id  int not null references dbsync.tables
);
insert into dbsync.partitions (relid, table_id)
select p.relid, t.table_id
from dbsync.tables t, pg_partition_tree(t.relid) p
where t.partitioned and t.removed_at is null and p.isleaf and p.relid <> t.relid;

-- The value of each carried sequence last set on a subscription's target (reported
-- by the sidecar with each batch): wait_for_sync waits for sequences too, and a
-- sequence that moved without any captured change still makes a batch.
create table dbsync.subscription_sequences (
    sub_id  int not null references dbsync.subscriptions on delete cascade,
    seq_id  int not null references dbsync.sequences on delete cascade,
    pushed  bigint not null,
    primary key (sub_id, seq_id)
);

-- Every transaction below this xid may have had its events truncated from the
-- group's queue (the highest switched_xmax of a truncated slot). A target found
-- behind its subscription's position (it lost commits: synchronous_commit = off and
-- a crash) can be brought back from the queue only if nothing after its tick went.
alter table dbsync.groups add column truncated_xmax xid8;
