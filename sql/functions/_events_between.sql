-- dbsync._events_between(p_group_id int, p_from pg_snapshot, p_to pg_snapshot) returns setof dbsync.events
--   The events of a group whose transaction is visible in p_to and not in p_from.
--   Index-friendly bounds, on txid as PgQ does: a transaction not visible in p_from
--   but visible in p_to was either running at p_from (in its xip list) or has an
--   xid at or above p_from's xmax, and below p_to's xmax. Event ids give no such
--   bound: a snapshot's xmax is latestCompletedXid + 1, not the next xid to assign,
--   so a transaction running when p_from was taken whose xid is above every
--   completed one is not in the xip list, and its events may have been numbered
--   before p_from was taken.
--   The sidecar's reader passes its own snapshot as p_to: it imported the batch's
--   tick, whose row it cannot see (the exporting transaction is running in it).
--   An 'M' event (the keys of a statement, see _capture_insert) comes out as one
--   'K' event per key, with the 'M' event's id: readers know 'K' events only.
--   (unnest() in the select list: for the other events it yields the one row of
--   a one-NULL array, at a fraction of the cost of a lateral join per event. That
--   array by constructor: a '{NULL}' literal is a string under array_nulls = off.
--   The keys' own text reads back the same under any setting: array_out quotes an
--   element that reads NULL, and a key has no NULL.)
--   A plain SQL function so that the planner inlines it into the caller's query; so
--   no SET search_path either: every name is qualified instead.
--   Parameters: p_group_id, p_from, p_to.
--   Returns: a set of dbsync.events.
--   Calls: nothing. Tables touched: dbsync.events (read).
create or replace function dbsync._events_between(p_group_id int, p_from pg_snapshot, p_to pg_snapshot)
returns setof dbsync.events
language sql stable as $$
    select x.group_id, x.slot, x.ev_id, x.txid, x.shape_id,
           case when x.k is null then x.op else 'K'::pg_catalog."char" end,
           case when x.k is null then x.row else x.k::pg_catalog.text[] end
    from (
        select e.*,
               pg_catalog.unnest(case when e.op OPERATOR(pg_catalog.=) 'M' then e.row else array[null::pg_catalog.text] end) as k
        from dbsync.events e
        where e.group_id OPERATOR(pg_catalog.=) p_group_id
          and ((e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmax(p_from)
                and e.txid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax(p_to))
               or e.txid OPERATOR(pg_catalog.=) any (array(select pg_catalog.pg_snapshot_xip(p_from))))
          and pg_catalog.pg_visible_in_snapshot(e.txid, p_to)
          and not pg_catalog.pg_visible_in_snapshot(e.txid, p_from)
    ) x
$$;
