-- dbsync.batch_events(p_group_id int, p_from bigint, p_to bigint) returns setof dbsync.events
--   The events committed between tick p_from and tick p_to of a group (see
--   dbsync._events_between). A plain SQL function so that the planner inlines it
--   into the caller's query; so no SET search_path either: every name is qualified.
--   Parameters: p_group_id, p_from, p_to.
--   Returns: a set of dbsync.events.
--   Calls: dbsync._events_between. Tables touched: dbsync.events, dbsync.ticks (read).
create or replace function dbsync.batch_events(p_group_id int, p_from bigint, p_to bigint)
returns setof dbsync.events
language sql stable as $$
    select e.*
    from dbsync._events_between(
             p_group_id,
             (select a.snap from dbsync.ticks a
              where a.group_id OPERATOR(pg_catalog.=) p_group_id and a.tick_id OPERATOR(pg_catalog.=) p_from),
             (select b.snap from dbsync.ticks b
              where b.group_id OPERATOR(pg_catalog.=) p_group_id and b.tick_id OPERATOR(pg_catalog.=) p_to)) e
$$;
