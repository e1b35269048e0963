-- dbsync.batch_events(p_group_id int, p_from bigint, p_to bigint) returns setof dbsync.events
--   The events committed between tick p_from and tick p_to of a group: those whose
--   transaction is visible in p_to's snapshot and not in p_from's. p_from < p_to
--   need not be consecutive ticks. Index-friendly bounds, on txid as PgQ does: a
--   transaction not visible in p_from's snapshot but visible in p_to's was either
--   running at p_from (in its xip list) or has an xid at or above p_from's xmax, and
--   below p_to's xmax. Event ids give no such bound: a snapshot's xmax is
--   latestCompletedXid + 1, not the next xid to assign, so a transaction running
--   when p_from was taken whose xid is above every completed one is not in the xip
--   list, and its events may have been numbered before p_from was taken.
--   A plain SQL function so that the planner inlines it into the caller's query
--   (the sidecar's COPY).
create or replace function dbsync.batch_events(p_group_id int, p_from bigint, p_to bigint)
returns setof dbsync.events
language sql stable as $$
    select e.*
    from dbsync.events e
    where e.group_id = p_group_id
      and ((e.txid >= (select pg_snapshot_xmax(a.snap) from dbsync.ticks a where a.group_id = p_group_id and a.tick_id = p_from)
            and e.txid < (select pg_snapshot_xmax(b.snap) from dbsync.ticks b where b.group_id = p_group_id and b.tick_id = p_to))
           or e.txid = any (array(select pg_snapshot_xip(a.snap) from dbsync.ticks a
                                  where a.group_id = p_group_id and a.tick_id = p_from)))
      and pg_visible_in_snapshot(e.txid, (select b.snap from dbsync.ticks b where b.group_id = p_group_id and b.tick_id = p_to))
      and not pg_visible_in_snapshot(e.txid, (select a.snap from dbsync.ticks a where a.group_id = p_group_id and a.tick_id = p_from))
$$;
