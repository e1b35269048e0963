-- dbsync._check_snapshot(p_rels oid[]) returns void
--   Raises serialization_failure when one of p_rels carries dbsync's capture
--   triggers while dbsync.tables, as this transaction sees it, replicates neither
--   it nor a table it is a partition of. The DDL event triggers read dbsync.tables
--   with the transaction's snapshot: in REPEATABLE READ or SERIALIZABLE it may
--   predate the add_table of the very table the DDL changes, whose triggers the
--   catalogs already hold (the rows the DDL itself changed are seen). Unchecked, a
--   DISABLE TRIGGER ALL of a table just added went through without a word.
--   Parameters: p_rels (relations the DDL changed).
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.partitions, dbsync.tables (read).
create or replace function dbsync._check_snapshot(p_rels oid[]) returns void
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_rel regclass;
begin
    -- The function by its names as pg_identify_object_as_address reads them from
    -- the catalogs, fresh: a SELECT of pg_proc would not see a capture function made
    -- after the snapshot. (Not regproc's text: quote_all_identifiers, which any
    -- session may set, writes it "dbsync"."capture_1".)
    select tg.tgrelid::regclass into v_rel
    from pg_trigger tg
    where tg.tgrelid = any (p_rels) and tg.tgname like E'dbsync\\_capture\\_%'
      and (select a.object_names[1] = 'dbsync' and a.object_names[2] like E'capture\\_%'
           from pg_identify_object_as_address('pg_proc'::regclass, tg.tgfoid, 0) a)
      and not exists (select from dbsync.tables t
                      where t.removed_at is null
                        and (t.relid = tg.tgrelid
                             or t.relid in (select a.relid from pg_partition_ancestors(tg.tgrelid) a)))
    limit 1;
    if v_rel is not null then
        raise exception 'dbsync: % was added to replication after this transaction took its snapshot', v_rel
            using errcode = 'serialization_failure',
                  hint = 'Run the DDL again in a new transaction, so that dbsync checks it against the table''s replication.';
    end if;
end
$$;
