-- dbsync.sidecar_poll(p_groups int[], p_last bigint[], p_bounds text[], p_settled boolean[]) returns table(group_id int, last_ev bigint, bound text, settled boolean, names text[])
--   The sidecar's poll since this version (dbsync.sidecar_work stays for the
--   sidecars of the previous one, still running during an upgrade): the
--   subscriptions with something to apply now, with the per-group verdicts the
--   sidecar keeps in memory and gives back at its next poll, so that a group known
--   to have no new writers is not looked into again (dbsync._poll_groups).
--   Parameters: p_groups, p_last, p_bounds (xids as text), p_settled: the verdicts
--     of the last poll, one element per group (NULL or empty: none).
--   Returns: a row per group: its verdict (NULLs: none) and the names of its
--     subscriptions with work.
--   Calls: dbsync._poll_groups. Tables touched: dbsync.subscriptions (read).
--   SECURITY INVOKER, as dbsync.sidecar_subscription.
create or replace function dbsync.sidecar_poll(p_groups int[], p_last bigint[], p_bounds text[], p_settled boolean[])
returns table (group_id int, last_ev bigint, bound text, settled boolean, names text[])
language sql volatile set search_path = pg_catalog, pg_temp as $$
    select p.group_id, p.last_ev, p.bound::text, p.settled,
           coalesce((select array_agg(s.name order by s.sub_id) from dbsync.subscriptions s
                     where s.sub_id = any (p.sub_ids)), '{}')
    from dbsync._poll_groups(p_groups, p_last, p_bounds::xid8[], p_settled) p
    order by p.group_id;
$$;
