-- What a statement run by execute_ddl did, and so whether the targets may run it.
--
-- A queued statement runs on a target at the start of the batch that holds it, on
-- the target's rows as of the batch before, while the source's statement saw the
-- rows of its own snapshot: a transaction that committed after that snapshot and
-- before the statement's commit can be in an earlier batch. An UPDATE that the
-- source ran on 20 rows would then also change, on the target, a row inserted
-- meanwhile; a DELETE of a key not there yet would delete it. DDL does not have that
-- problem (it takes its table's lock, and what it does to a row depends on that row
-- alone), but row changes do. Row changes of replicated tables are captured like any
-- others, and reach the targets as the rows they left: so a statement that only
-- reads or writes rows of replicated tables is not queued at all.
--
-- The transaction's own statistics (pg_stat_xact_*) say what the statement touched:
-- taken before and after it, rows written to system catalogs mean DDL (as do
-- TRUNCATE, GRANT, COMMENT, ANALYZE), scans and row writes of replicated tables
-- (their partitions included) mean it read or changed replicated rows, and row
-- writes elsewhere (outside dbsync's schemas, which capture writes) mean it changed
-- other tables.

-- dbsync._ddl_effects() returns jsonb
--   This backend's counts so far: {"catalog": rows written to system catalogs
--   (pg_catalog),
--   "replicated": scans and row writes of replicated tables, "written": {table name:
--   rows written} of the tables with rows written, replicated ones under
--   "replicated_written", others (outside schemas dbsync and dbsync_worker) under
--   "other_written", "last_attnum": {table_id: its highest attnum}}. Only differences between two calls in one transaction mean
--   anything: the counts of earlier transactions not yet flushed to the shared
--   statistics are in them too. Needs track_counts (on by default; autovacuum needs
--   it too): without it nothing is counted, and execute_ddl refuses to guess.
--   Parameters: none.
--   Returns: jsonb.
--   Calls: nothing. Tables touched: dbsync.tables (read).
create or replace function dbsync._ddl_effects() returns jsonb
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
    with replicated as (
        select t.relid from dbsync.tables t where t.removed_at is null
        union
        select p.relid from dbsync.tables t, pg_partition_tree(t.relid) p where t.removed_at is null
    ),
    tables as (
        select format('%I.%I', s.schemaname, s.relname) as name,
               s.n_tup_ins + s.n_tup_upd + s.n_tup_del as written,
               coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0) as scans,
               s.relid in (select r.relid from replicated r) as replicated
        from pg_stat_xact_user_tables s
        where s.schemaname not in ('dbsync', 'dbsync_worker')
    )
    select jsonb_build_object(
        -- (Not the TOAST tables, which pg_stat_xact_sys_tables also lists: capture's
        -- own queue rows of a big statement are TOASTed.)
        'catalog', (select coalesce(sum(c.n_tup_ins + c.n_tup_upd + c.n_tup_del), 0) from pg_stat_xact_sys_tables c
                    where c.schemaname = 'pg_catalog'),
        'replicated', (select coalesce(sum(t.written + t.scans), 0) from tables t where t.replicated),
        'replicated_written', (select coalesce(jsonb_object_agg(t.name, t.written), '{}') from tables t where t.replicated and t.written > 0),
        'other_written', (select coalesce(jsonb_object_agg(t.name, t.written), '{}') from tables t where not t.replicated and t.written > 0),
        -- A column added later has a higher attnum (dbsync._ddl_recopy).
        'last_attnum', (select coalesce(jsonb_object_agg(t.table_id, (select max(a.attnum) from pg_attribute a where a.attrelid = t.relid)), '{}')
                        from dbsync.tables t where t.removed_at is null))
$$;

-- dbsync._ddl_to_queue(p_before jsonb, p_after jsonb) returns boolean
--   Given dbsync._ddl_effects() before and after execute_ddl's statement: true
--   when the targets must run it (DDL, or a statement that touches no replicated
--   table: SET LOCAL, setval, rows of tables outside every group); false when it
--   changed no schema and only read or changed rows of replicated tables (they reach
--   the targets as rows; a zero-row UPDATE would find rows there that it did not
--   find here), with a NOTICE that says so. Refuses, with a hint, a statement that
--   both changes the schema and writes rows of a replicated table, or that writes
--   rows of other tables from replicated ones: no target could be given either
--   faithfully.
--   Parameters: p_before, p_after.
--   Returns: boolean.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._ddl_to_queue(p_before jsonb, p_after jsonb) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_catalog boolean := (p_after ->> 'catalog')::bigint > (p_before ->> 'catalog')::bigint;
    v_replicated boolean := (p_after ->> 'replicated')::bigint > (p_before ->> 'replicated')::bigint;
    -- The tables whose rows this statement wrote.
    v_written text := (select string_agg(w.key, ', ' order by w.key) from jsonb_each_text(p_after -> 'replicated_written') w
                       where w.value::bigint > coalesce((p_before -> 'replicated_written' ->> w.key)::bigint, 0));
    v_other text := (select string_agg(w.key, ', ' order by w.key) from jsonb_each_text(p_after -> 'other_written') w
                     where w.value::bigint > coalesce((p_before -> 'other_written' ->> w.key)::bigint, 0));
begin
    if not v_replicated then
        return true;
    end if;
    if v_catalog then
        if v_written is not null then
            raise exception 'execute_ddl: the statement changes the schema and writes rows of %', v_written
                using errcode = 'feature_not_supported',
                      hint = 'Run the DDL (e.g. the ALTER TABLE) with execute_ddl and the row changes as a plain statement, '
                             'in the same transaction if they must commit together: rows of replicated tables reach the '
                             'targets as rows.';
        end if;
        return true;
    end if;
    if v_other is not null then
        raise exception 'execute_ddl: the statement writes rows of % from rows of replicated tables', v_other
            using errcode = 'feature_not_supported',
                  hint = 'A target would run it on its rows as of another point of the stream. Change rows of '
                         'replicated tables with a plain statement (they reach the targets as rows), and the others '
                         'on each server, or through execute_ddl from values that are not read from replicated tables.';
    end if;
    raise notice 'execute_ddl: not run on the targets: the statement changes no schema, only rows of replicated tables (%), which reach the targets as rows',
                 coalesce(v_written, 'here none, and there it could find rows that it did not find here');
    return false;
end
$$;
