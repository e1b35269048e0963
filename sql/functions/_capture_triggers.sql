-- dbsync._capture_triggers(p_relid oid, p_partitions boolean) returns table (rel regclass, name name, enabled "char", meant "char")
--   dbsync's capture triggers on the table (and, with p_partitions, on every
--   partition below it, the clones of a partitioned table's row trigger included),
--   with pg_trigger.tgenabled: 'A' fires always, 'O' only in origin mode (the
--   default ENABLE), 'R' only in replica mode, 'D' never; and how each should fire
--   (meant): ALWAYS, but the row trigger of a plain table for the sessions whose
--   statements fire no statement trigger, and its statement mark and unmark, in replica
--   mode only (see _install_capture). The one place that knows how they are named: _enable_always,
--   _on_ddl and _check_capturable read their states here.
--   Parameters: p_relid, p_partitions.
--   Returns: rows of (rel, name, enabled, meant).
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._capture_triggers(p_relid oid, p_partitions boolean)
returns table (rel regclass, name name, enabled "char", meant "char")
language sql stable set search_path = pg_catalog, pg_temp as $$
    select tg.tgrelid::regclass, tg.tgname, tg.tgenabled,
           (case when tg.tgname in ('dbsync_capture_replica', 'dbsync_capture_replica_mark', 'dbsync_capture_replica_unmark') then 'R' else 'A' end)::"char"
    from pg_trigger tg
    where tg.tgname like E'dbsync\\_capture\\_%'
      and (tg.tgrelid = p_relid
           or p_partitions and tg.tgrelid in (select p.relid from pg_partition_tree(p_relid) p))
$$;
