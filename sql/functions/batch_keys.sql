-- dbsync.batch_keys(p_group_id int, p_from bigint, p_shapes int[] default null,
--                   p_split int[] default null, p_share int default null, p_shares int default null)
--   returns table (shape_id int, k text[])
--   The distinct keys that changed in the batch from tick p_from to the caller's
--   snapshot, with the shape (one table's key at one time) each was recorded in:
--   the sidecar's reader, whose snapshot is the batch's end, joins them to the
--   tables to read each key's row there (see dbsync.batch_plan). One scan of the
--   batch's events serves every table of the batch; with p_shapes, only the keys
--   of those shapes (a big batch read by several readers, each its own tables:
--   each hashes only its own keys); with p_split, of those shapes only the keys of
--   share p_share of p_shares: (hashtext(key text) & 2^31-1) mod p_shares, the
--   text being the one hashed below, one text per key (a table split between
--   readers, see batch_plan: each key in one share, so every change of a key, a
--   delete and reinsert, the old and new keys of a key update each, reaches the
--   target by one reader only). SECURITY DEFINER so that the
--   sidecar's role needs no right on the queue itself.
--   Written for many groups and for big batches (a backlog is one batch):
--   - PL/pgSQL, so that the query is planned with the group's value: only its queue
--     partitions (see _has_new_writers); the from-snapshot is passed as a value, so
--     that _batch_events is inlined (a sub-select among its arguments kept it a
--     function scan that read every group's partitions and stored every event
--     before filtering them: 170 ms and 400 locks with 50 groups);
--   - the batch's end snapshot is a value too: pg_current_snapshot() among the
--     arguments was evaluated again for every event of the reader's shapes (stable,
--     not folded), a snapshot built each time;
--   - the keys are made distinct by hashing (enable_sort off: the planner cannot
--     know the batch's size, and chose to sort). Inlining and hashing together:
--     0.45 s of CPU instead of 1.5 s for a batch of 400,000 events;
--   - hashed as their text, the element of an 'M' event as stored (a 'K' event's
--     key through array_out, the text capture stores in 'M' events: one text per
--     key, the same text for equal keys), and read as text[] once per distinct key:
--     a backlog's keys changed again and again (tpcb-like: 300,000 events of
--     tellers, branches and history for 100,000 keys) were each parsed by
--     array_in and hashed as arrays (_events_between's 'K' rows), a third more of
--     the reader's CPU for its keys (about 310 ms instead of 240, 370 instead of 240).
--   Parameters: p_group_id, p_from, p_shapes (null: every shape), p_split (shapes
--     whose keys are shared out; null: none), p_share (0 .. p_shares - 1), p_shares.
--   Returns: rows of (shape_id, k).
--   Calls: dbsync._batch_events. Tables touched: dbsync.events, dbsync.ticks (read).
create or replace function dbsync.batch_keys(p_group_id int, p_from bigint, p_shapes int[] default null,
                                             p_split int[] default null, p_share int default null, p_shares int default null)
returns table (shape_id int, k text[])
language plpgsql stable security definer set search_path = pg_catalog, pg_temp set enable_sort = off as $$
declare
    v_from pg_snapshot := (select a.snap from dbsync.ticks a where a.group_id = p_group_id and a.tick_id = p_from);
    v_to pg_snapshot := pg_current_snapshot();
begin
    return query
    select x.shape_id, x.k::text[]
    from (
        select e.shape_id,
               unnest(case when e.op = 'M' then e.row else array[e.row::text] end) as k
        from dbsync._batch_events(p_group_id, v_from, v_to) e
        where e.op in ('K', 'M') and (p_shapes is null or e.shape_id = any (p_shapes))
    ) x
    -- (Before the keys are made distinct: a share's reader hashes a share's keys.)
    where p_split is null or x.shape_id <> all (p_split)
       or (pg_catalog.hashtext(x.k) & 2147483647) % p_shares = p_share
    group by x.shape_id, x.k;
end
$$;
