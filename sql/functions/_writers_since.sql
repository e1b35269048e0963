-- dbsync._writers_since(p_group_id int, p_since pg_snapshot, p_ended xid8[], p_self xid8) returns setof xid8
--   The look for new writers of a group (dbsync._has_new_writers, dbsync._with_work):
--   a txid of an event row of the group visible now and not in p_since, if there is
--   one (at most two rows). An event row whose txid is p_since's xmax or later, in
--   txid order as the queue's index gives them (without the ORDER BY, a queue slot
--   most of whose rows are later than p_since is read as a table from its start,
--   the older rows first: the planner expects the later ones spread out), stopping
--   at the first (the rows of writers still running are not visible to it); and
--   one of p_ended, those of p_since's running transactions that have committed
--   since (computed by the caller from the snapshots alone: the second look is
--   left out where the caller knows there are none). p_self, the caller's own
--   transaction, never counts: a snapshot leaves its own xid out of its xip, so once
--   any later transaction (of any database) has ended, its xmax is past the
--   caller's xid, and the caller's uncommitted events would read as visible to it.
--   A plain SQL function, inlined into its callers' queries: with a group id
--   known when the query is planned (_has_new_writers' EXECUTE) the plan reads only
--   that group's partitions; in a query over many groups (_with_work's) the group
--   is a parameter of the look, and the executor prunes each look to its group's
--   partitions, under one plan kept for the session. So no SET search_path: every
--   name is qualified.
--   Parameters: p_group_id, p_since, p_ended, p_self.
--   Returns: txids, at most two.
--   Calls: nothing. Tables touched: dbsync.events (read).
create or replace function dbsync._writers_since(p_group_id int, p_since pg_snapshot, p_ended xid8[], p_self xid8)
returns setof xid8
language sql stable as $$
    (select e.txid from dbsync.events e
     where e.group_id OPERATOR(pg_catalog.=) p_group_id
       and e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmax(p_since)
       and pg_catalog.pg_visible_in_snapshot(e.txid, pg_catalog.pg_current_snapshot())
       and (p_self is null or e.txid OPERATOR(pg_catalog.<>) p_self)
     order by e.txid limit 1)
    union all
    (select e.txid from dbsync.events e
     where pg_catalog.cardinality(p_ended) OPERATOR(pg_catalog.>) 0
       and e.group_id OPERATOR(pg_catalog.=) p_group_id
       and e.txid OPERATOR(pg_catalog.=) any (p_ended)
       and (p_self is null or e.txid OPERATOR(pg_catalog.<>) p_self)
       and pg_catalog.pg_visible_in_snapshot(e.txid, pg_catalog.pg_current_snapshot())
     limit 1)
$$;
