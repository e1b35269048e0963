-- dbsync._batch_events(p_group_id int, p_from pg_snapshot, p_to pg_snapshot) returns setof dbsync.events
--   The events of a group whose transaction is visible in p_to and not in p_from,
--   as stored: an 'M' event is one row for its keys (dbsync._events_between reads
--   it as one 'K' event per key). For a caller that needs no key one by one:
--   batch_plan counts a shape's events by the keys an 'M' event holds, without the
--   row per key (a tpcb-like backlog of 400,000 events: its plan's scan of them
--   took 210 ms of the reader's CPU with a row per key, 140 ms without).
--   Index-friendly bounds, on txid as PgQ does: a transaction not visible in p_from
--   but visible in p_to was either running at p_from (in its xip list) or has an
--   xid at or above p_from's xmax, and below p_to's xmax. Event ids give no such
--   bound: a snapshot's xmax is latestCompletedXid + 1, not the next xid to assign,
--   so a transaction running when p_from was taken whose xid is above every
--   completed one is not in the xip list, and its events may have been numbered
--   before p_from was taken.
--   The sidecar's reader passes its own snapshot as p_to: it imported the batch's
--   tick, whose row it cannot see (the exporting transaction is running in it).
--   A plain SQL function so that the planner inlines it into the caller's query
--   (and into dbsync._events_between's); so no SET search_path either: every name
--   is qualified instead.
--   Parameters: p_group_id, p_from, p_to.
--   Returns: a set of dbsync.events.
--   Calls: nothing. Tables touched: dbsync.events (read).
create or replace function dbsync._batch_events(p_group_id int, p_from pg_snapshot, p_to pg_snapshot)
returns setof dbsync.events
language sql stable as $$
    select e.*
    from dbsync.events e
    where e.group_id OPERATOR(pg_catalog.=) p_group_id
      and ((e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmax(p_from)
            and e.txid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax(p_to))
           or e.txid OPERATOR(pg_catalog.=) any (array(select pg_catalog.pg_snapshot_xip(p_from))))
      and pg_catalog.pg_visible_in_snapshot(e.txid, p_to)
      and not pg_catalog.pg_visible_in_snapshot(e.txid, p_from)
$$;
