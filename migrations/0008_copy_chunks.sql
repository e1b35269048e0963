-- 0008: copies of big tables in key-range chunks, one chunk per batch.
--
-- A table whose copy is estimated above the sidecar's --copy-chunk-rows is copied
-- in chunks of that many rows in key order, each chunk in its own batch at that
-- batch's snapshot, so the stream of the subscription's other tables goes on
-- between chunks (see dbsync._chunk_state in sql/functions/_copy_chunks.sql for
-- why the target still converges). The boundary reached so far is per
-- subscription and table, and moves with the subscription's position: it is
-- written by record_progress in the transaction that moves position_tick.
alter table dbsync.subscription_tables
    -- The copy (copy_request) the chunk columns below belong to. Any other value
    -- (a resync_table, a copy restarted for any reason) means no chunk is done.
    add column chunk_request bigint,
    -- The key order the boundary is in: {"attnums", "types", "collations"} of the
    -- key columns (dbsync._chunk_order). A key that changed since makes the copy
    -- start again.
    add column chunk_order jsonb,
    -- The boundary B: the target holds exactly the source's rows whose key is
    -- <= B (in chunk_order), as of the subscription's position, and none above.
    -- Key values as their output text, as capture records keys.
    add column chunk_key text[],
    -- The batch (tick) that copied the last chunk, the rows and chunks copied so far.
    add column chunk_tick bigint,
    add column chunk_rows bigint not null default 0,
    add column chunks_copied int not null default 0,
    -- The chunk the batch in flight copies, recorded by the sidecar before it
    -- commits that batch on the target (dbsync.copy_chunks): {tick, copy_request,
    -- first, last, key, order}. record_progress makes it the boundary when the
    -- position reaches that tick, also when the report of the batch was lost and
    -- the position is taken from the target (target_position). begin_batch clears
    -- it: a batch that did not commit leaves nothing behind.
    add column chunk_next jsonb;

-- batch_plan takes the chunk size (p_chunk_rows): a sidecar that does not pass it
-- (an older version, still running while this one is installed) gets no chunks,
-- which it would apply as whole copies. The old signature goes, so that its
-- callers resolve to the new one.
drop function if exists dbsync.batch_plan(int, bigint, bigint, bigint);
