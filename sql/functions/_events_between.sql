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
--   Its keys by unnest(), which reads the array once (a subscript per key would
--   detoast it again for each); keys of one column (their arrays one element
--   wide) straight, wider ones put together in their order.
--   A plain SQL function so that the planner inlines it into the caller's query; so
--   no SET search_path either: every name is qualified instead.
create or replace function dbsync._events_between(p_group_id int, p_from pg_snapshot, p_to pg_snapshot)
returns setof dbsync.events
language sql stable as $$
    select e.group_id, e.slot, e.ev_id, e.txid, e.shape_id,
           case when m.k is null then e.op else 'K'::pg_catalog."char" end,
           coalesce(m.k, e.row)
    from dbsync.events e
    left join lateral (
        select array[u.v] as k
        from pg_catalog.unnest(e.row) u(v)
        where e.op OPERATOR(pg_catalog.=) 'M' and pg_catalog.array_length(e.row, 2) OPERATOR(pg_catalog.=) 1
        union all
        select pg_catalog.array_agg(u.v order by u.o)
        from pg_catalog.unnest(e.row) with ordinality u(v, o)
        where e.op OPERATOR(pg_catalog.=) 'M' and pg_catalog.array_length(e.row, 2) OPERATOR(pg_catalog.>) 1
        group by (u.o OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog./) pg_catalog.array_length(e.row, 2)
    ) m on true
    where e.group_id OPERATOR(pg_catalog.=) p_group_id
      and ((e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmax(p_from)
            and e.txid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax(p_to))
           or e.txid OPERATOR(pg_catalog.=) any (array(select pg_catalog.pg_snapshot_xip(p_from))))
      and pg_catalog.pg_visible_in_snapshot(e.txid, p_to)
      and not pg_catalog.pg_visible_in_snapshot(e.txid, p_from)
$$;
