-- dbsync.batch_events(p_group_id int, p_from bigint, p_to bigint) returns setof dbsync.events
--   The events committed between tick p_from and tick p_to of a group: those whose
--   transaction is visible in p_to's snapshot and not in p_from's. p_from < p_to
--   need not be consecutive ticks. Index-friendly bounds: an event of such a
--   transaction has an id above p_from's ev_lo (its id was drawn after that read),
--   or its transaction was running at p_from (in the snapshot's xip list); and its
--   id is at most p_to's max_ev_id. A plain SQL function so that the planner inlines
--   it into the caller's query (the sidecar's COPY).
create or replace function dbsync.batch_events(p_group_id int, p_from bigint, p_to bigint)
returns setof dbsync.events
language sql stable as $$
    select e.*
    from dbsync.events e
    where e.group_id = p_group_id
      and ((e.ev_id > (select a.ev_lo from dbsync.ticks a where a.group_id = p_group_id and a.tick_id = p_from)
            and e.ev_id <= (select b.max_ev_id from dbsync.ticks b where b.group_id = p_group_id and b.tick_id = p_to))
           or e.txid = any (array(select pg_snapshot_xip(a.snap) from dbsync.ticks a
                                  where a.group_id = p_group_id and a.tick_id = p_from)))
      and pg_visible_in_snapshot(e.txid, (select b.snap from dbsync.ticks b where b.group_id = p_group_id and b.tick_id = p_to))
      and not pg_visible_in_snapshot(e.txid, (select a.snap from dbsync.ticks a where a.group_id = p_group_id and a.tick_id = p_from))
$$;
