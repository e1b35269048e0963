-- dbsync._events_between(p_group_id int, p_from pg_snapshot, p_to pg_snapshot) returns setof dbsync.events
--   The events of a group whose transaction is visible in p_to and not in p_from
--   (dbsync._batch_events), an 'M' event (the keys of a statement, see
--   _capture_insert) as one 'K' event per key, with the 'M' event's id: readers
--   know 'K' events only.
--   (unnest() in the select list: for the other events it yields the one row of
--   a one-NULL array, at a fraction of the cost of a lateral join per event. That
--   array by constructor: a '{NULL}' literal is a string under array_nulls = off.
--   The keys' own text reads back the same under any setting: array_out quotes an
--   element that reads NULL, and a key has no NULL.)
--   A plain SQL function so that the planner inlines it into the caller's query; so
--   no SET search_path either: every name is qualified instead.
--   Parameters: p_group_id, p_from, p_to.
--   Returns: a set of dbsync.events.
--   Calls: dbsync._batch_events. Tables touched: dbsync.events (read).
create or replace function dbsync._events_between(p_group_id int, p_from pg_snapshot, p_to pg_snapshot)
returns setof dbsync.events
language sql stable as $$
    select x.group_id, x.slot, x.ev_id, x.txid, x.shape_id,
           case when x.k is null then x.op else 'K'::pg_catalog."char" end,
           case when x.k is null then x.row else x.k::pg_catalog.text[] end
    from (
        select e.*,
               pg_catalog.unnest(case when e.op OPERATOR(pg_catalog.=) 'M' then e.row else array[null::pg_catalog.text] end) as k
        from dbsync._batch_events(p_group_id, p_from, p_to) e
    ) x
$$;
