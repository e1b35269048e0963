-- dbsync._groups_with_new_writers(p_groups int[], p_since pg_snapshot[]) returns setof int
--   Of the pairs (p_groups[i], p_since[i]), the i of those whose group has new
--   writers since that snapshot (dbsync._has_new_writers). For the sidecar's poll
--   (dbsync._with_work), which asks for every group at once.
--   One query for all pairs, its plan kept for the session (PL/pgSQL): each look
--   (dbsync._writers_since, inlined) is pruned to its group's partitions by the
--   executor, so nothing is planned per group and poll. Planning a look for one
--   group (_has_new_writers' EXECUTE) costs about 0.2 ms; this query's executor
--   opens every group's partitions at each call instead (about 0.07 ms a group:
--   3.2 ms with 50 groups, where a look per group cost 11 ms). So fewer pairs than
--   a quarter of the groups (a poll where most positions are behind a tick, a
--   has_work of one subscription) are looked at one by one; so is every pair on
--   a server older than 12 (_server_has('runtime_pruning')), where the one query
--   would read every group's partitions for each look.
--   Parameters: p_groups, p_since (as many).
--   Returns: the indexes (from 1) of the pairs with new writers.
--   Calls: dbsync._has_new_writers, dbsync._server_has, dbsync._writers_since. Tables touched:
--     dbsync.events, dbsync.groups (read).
create or replace function dbsync._groups_with_new_writers(p_groups int[], p_since pg_snapshot[]) returns setof int
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    -- The caller's own transaction (see _writers_since).
    v_self xid8 := pg_current_xact_id_if_assigned();
begin
    if cardinality(p_groups) * 4 < (select count(*) from dbsync.groups) or not dbsync._server_has('runtime_pruning') then
        return query select u.o::int from unnest(p_groups, p_since) with ordinality u(g, s, o)
                     where dbsync._has_new_writers(u.g, u.s);
        return;
    end if;
    return query
    select u.o::int
    -- (OFFSET 0: not pulled up into the query, so that the looks' arguments are its
    -- columns, not the ARRAY sub-select, which would keep _writers_since from being
    -- inlined: a function scan, 1.3 ms a look.)
    from (select u.o, u.g, u.s,
                 -- Running when u.s was taken, committed since.
                 array(select x from pg_snapshot_xip(u.s) x where pg_visible_in_snapshot(x, pg_current_snapshot())) as ended
          from unnest(p_groups, p_since) with ordinality u(g, s, o)
          offset 0) u
    where exists (select from dbsync._writers_since(u.g, u.s, u.ended, v_self));
end
$$;
