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
-- others, and reach the targets as the rows they left. So:
--   * a statement that changes no schema and only reads or changes rows of
--     replicated tables is not queued at all;
--   * DDL that also changed rows of replicated tables (an UPDATE in the same script,
--     an application's event trigger writing an audit table) is queued, and the
--     tables whose rows it changed are copied again (dbsync._ddl_recopy): what the
--     target's run of it did to their rows is replaced by the source's rows;
--   * a statement that writes other tables from replicated ones, or that changes a
--     table of another group (TRUNCATE fires no DDL event trigger), is refused.
--
-- The transaction's own statistics and locks say what the statement touched, taken
-- before and after it: rows written to system catalogs mean DDL (as do TRUNCATE,
-- GRANT, COMMENT, ANALYZE); per table, rows written (pg_stat_xact_*: a TRUNCATE in
-- the statement sets a table's counts back to zero, so a count that went down and
-- is not zero is a write after it), scans, a ROW EXCLUSIVE lock taken (every INSERT,
-- UPDATE, DELETE, MERGE and COPY FROM takes it, also when it changes no row), and a
-- new relfilenode (TRUNCATE, a rewrite).

-- dbsync._ddl_effects() returns jsonb
--   This backend's counts and locks so far: {"catalog": rows written to pg_catalog,
--   "tables": {relid: [rows written, scans]} of the tables it touched (outside
--   schemas dbsync and dbsync_worker, which capture writes), "locked": {relid: true}
--   of the relations it holds ROW EXCLUSIVE locks on, "replicated": {relid: [table_id, group_id]} of
--   the replicated tables and their partitions, "filenodes": {relid: relfilenode}
--   of those, "last_attnum": {table_id: its highest attnum}}. Only differences
--   between two calls in one transaction mean anything: the counts of earlier
--   transactions not yet flushed to the shared statistics are in them too. Needs
--   track_counts (on by default; autovacuum needs it too).
--   Parameters: none.
--   Returns: jsonb.
--   Calls: nothing. Tables touched: dbsync.tables (read).
create or replace function dbsync._ddl_effects() returns jsonb
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
    with replicated as (
        select t.relid, t.table_id, t.group_id from dbsync.tables t where t.removed_at is null
        union
        select p.relid, t.table_id, t.group_id
        from dbsync.tables t, pg_partition_tree(t.relid) p where t.removed_at is null
    )
    select jsonb_build_object(
        -- (Not the TOAST tables, which pg_stat_xact_sys_tables also lists: capture's
        -- own queue rows of a big statement are TOASTed.)
        'catalog', (select coalesce(sum(c.n_tup_ins + c.n_tup_upd + c.n_tup_del), 0) from pg_stat_xact_sys_tables c
                    where c.schemaname = 'pg_catalog'),
        'tables', (select coalesce(jsonb_object_agg(s.relid, jsonb_build_array(
                                       s.n_tup_ins + s.n_tup_upd + s.n_tup_del, coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0))), '{}')
                   from pg_stat_xact_user_tables s
                   where s.schemaname not in ('dbsync', 'dbsync_worker')
                     and s.n_tup_ins + s.n_tup_upd + s.n_tup_del + coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0) > 0),
        'locked', (select coalesce(jsonb_object_agg(l.relation, true), '{}') from pg_locks l
                   where l.pid = pg_backend_pid() and l.locktype = 'relation' and l.mode = 'RowExclusiveLock' and l.granted
                     and l.database = (select d.oid from pg_database d where d.datname = current_database())),
        'replicated', (select coalesce(jsonb_object_agg(r.relid, jsonb_build_array(r.table_id, r.group_id)), '{}') from replicated r),
        'filenodes', (select coalesce(jsonb_object_agg(r.relid, pg_relation_filenode(r.relid)), '{}') from replicated r),
        -- A column added later has a higher attnum (dbsync._ddl_recopy).
        'last_attnum', (select coalesce(jsonb_object_agg(t.table_id, (select max(a.attnum) from pg_attribute a where a.attrelid = t.relid)), '{}')
                        from dbsync.tables t where t.removed_at is null))
$$;

-- dbsync._ddl_plan(p_group_id int, p_before jsonb, p_after jsonb) returns jsonb
--   Given dbsync._ddl_effects() before and after execute_ddl's statement for group
--   p_group_id: {"queue": whether the targets run it, "written": the table_ids of
--   the group's tables whose rows it changed, "rewritten": those it truncated or
--   rewrote}. Not queued: it changed no schema, and touched rows of replicated
--   tables (a NOTICE says they reach the targets as rows). Refused, with a hint: a
--   statement that writes rows of other tables from replicated ones, or DDL that
--   changes a table of another group (its rows, its file, its columns).
--   Parameters: p_group_id, p_before, p_after.
--   Returns: jsonb.
--   Calls: nothing. Tables touched: dbsync.groups, dbsync.tables (read).
create or replace function dbsync._ddl_plan(p_group_id int, p_before jsonb, p_after jsonb) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_catalog boolean := (p_after ->> 'catalog')::bigint > (p_before ->> 'catalog')::bigint;
    v_touched boolean;
    v_other text;
    v_foreign_ids jsonb;
    v_foreign text;
    v_written jsonb;
    v_rewritten jsonb;
begin
    with rel as (
        select k.relid,
               coalesce(p_before -> 'replicated' -> k.relid, p_after -> 'replicated' -> k.relid) as rep,
               coalesce((p_before -> 'tables' -> k.relid ->> 0)::bigint, 0) as wb,
               coalesce((p_after -> 'tables' -> k.relid ->> 0)::bigint, 0) as wa,
               coalesce((p_before -> 'tables' -> k.relid ->> 1)::bigint, 0) as sb,
               coalesce((p_after -> 'tables' -> k.relid ->> 1)::bigint, 0) as sa,
               p_after -> 'locked' ? k.relid and not p_before -> 'locked' ? k.relid as newlock,
               (p_before -> 'filenodes' ->> k.relid) is distinct from (p_after -> 'filenodes' ->> k.relid)
                   and p_after -> 'filenodes' ? k.relid and p_before -> 'filenodes' ? k.relid as refiled
        from (select jsonb_object_keys(p_after -> 'tables') union select jsonb_object_keys(p_before -> 'replicated')
              union select jsonb_object_keys(p_after -> 'replicated')
              union select jsonb_object_keys(p_after -> 'locked')) k(relid)
    ),
    judged as (
        select r.*, (r.rep ->> 0)::int as table_id, (r.rep ->> 1)::int as group_id,
               -- Rows written: the count grew, or went down (a TRUNCATE in the
               -- statement zeroes it) and is not zero; or a ROW EXCLUSIVE lock taken.
               r.wa > r.wb or (r.wa < r.wb and r.wa > 0) or r.newlock as written
        from rel r
    )
    select bool_or(j.rep is not null and (j.written or j.sa <> j.sb)),
           string_agg(j.relid::oid::regclass::text, ', ' order by j.relid) filter (where j.rep is null and j.wa <> j.wb),
           coalesce(jsonb_agg(distinct j.table_id) filter (where j.group_id <> p_group_id and (j.written or j.refiled)), '[]'),
           coalesce(jsonb_agg(distinct j.table_id) filter (where j.group_id = p_group_id and j.written), '[]'),
           coalesce(jsonb_agg(distinct j.table_id) filter (where j.group_id = p_group_id and j.refiled), '[]')
      into v_touched, v_other, v_foreign_ids, v_written, v_rewritten
    from judged j;
    -- Tables of other groups it changed: their rows or file, or their columns (an
    -- inheritance child of a table of this group: ALTER TABLE recurses, and the DDL
    -- event trigger sees only the parent).
    select string_agg(format('%I.%I of group "%s"', t.schema_name, t.table_name, g.name), ', ' order by t.table_id)
      into v_foreign
    from dbsync.tables t join dbsync.groups g using (group_id)
    where t.group_id <> p_group_id and t.removed_at is null
      and (v_foreign_ids @> to_jsonb(t.table_id)
           or (p_after -> 'last_attnum' ->> t.table_id::text) is distinct from (p_before -> 'last_attnum' ->> t.table_id::text));
    if not coalesce(v_touched, false) and v_foreign is null then
        return jsonb_build_object('queue', true, 'written', '[]'::jsonb, 'rewritten', v_rewritten);
    end if;
    if v_other is not null then
        raise exception 'execute_ddl: the statement writes rows of % from rows of replicated tables', v_other
            using errcode = 'feature_not_supported',
                  hint = 'A target would run it on its rows as of another point of the stream. Change rows of '
                         'replicated tables with a plain statement (they reach the targets as rows), and the others '
                         'on each server, or through execute_ddl from values that are not read from replicated tables.';
    end if;
    if not v_catalog then
        raise notice 'execute_ddl: not run on the targets: the statement changes no schema, only rows of replicated tables, which reach the targets as rows';
        return jsonb_build_object('queue', false, 'written', v_written, 'rewritten', v_rewritten);
    end if;
    if v_foreign is not null then
        raise exception 'execute_ddl: the statement changes % too', v_foreign
            using errcode = 'invalid_parameter_value',
                  hint = 'Run what concerns a table with dbsync.execute_ddl of its own group, so that the targets of that group get it.';
    end if;
    return jsonb_build_object('queue', true, 'written', v_written, 'rewritten', v_rewritten);
end
$$;
