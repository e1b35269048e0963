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
--   This backend's counts and locks so far, for the relations a statement run by
--   execute_ddl can have changed: those of its group (dbsync._ddl_group(): its
--   tables and their partitions) and those this transaction holds a lock on (a
--   statement keeps the lock of every relation it reads or writes until the
--   transaction ends). Not every replicated table's: that made execute_ddl cost
--   more with every table of every group (32 -> 77 ms at 50 -> 1,000 tables).
--   {"catalog": rows written to pg_catalog, "scope": {relid: true} of those
--   relations, "tables": {relid: [rows written, scans]} of those it touched
--   (outside schemas dbsync and dbsync_worker, which capture writes), "locked":
--   {relid: true} of those it holds ROW EXCLUSIVE locks on, "replicated": {relid:
--   [table_id, group_id]} of the replicated tables and partitions among them,
--   "filenodes": {relid: relfilenode} of those, "last_attnum": {table_id: its
--   highest attnum}, "changed": {relid: true} of the tables locked whose pg_class
--   or pg_attribute rows this transaction wrote (xmin at or after its xid: a
--   TRUNCATE, a rewrite, a column, a table created) or that it dropped}. Only differences
--   between two calls in one transaction mean anything: the counts of earlier
--   transactions not yet flushed to the shared statistics are in them too. Needs
--   track_counts (on by default; autovacuum needs it too).
--   Parameters: none.
--   Returns: jsonb.
--   Calls: dbsync._ddl_group, dbsync._server_has. Tables touched: dbsync.tables (read).
create or replace function dbsync._ddl_effects() returns jsonb
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
    with locked as materialized (
        select l.relation as relid, bool_or(l.mode = 'RowExclusiveLock') as row_exclusive,
               bool_or(l.mode = 'AccessExclusiveLock') as access_exclusive
        from pg_locks l
        where l.pid = pg_backend_pid() and l.locktype = 'relation' and l.granted
          and l.database = (select d.oid from pg_database d where d.datname = current_database())
        group by l.relation
    ),
    scope as materialized (
        select p.relid::oid
        from dbsync.tables t, pg_partition_tree(t.relid) p
        where t.group_id = dbsync._ddl_group() and t.removed_at is null
        union
        select t.relid from dbsync.tables t where t.group_id = dbsync._ddl_group() and t.removed_at is null
        union
        select k.relid from locked k
    ),
    -- (Looked up one by one, by index: a join would read the whole of
    -- dbsync.tables and pg_class, the planner not knowing how few they are.)
    replicated as materialized (
        select distinct on (s.relid) s.relid, t.table_id, t.relid as table_relid, t.group_id
        from scope s
        cross join lateral (select s.relid union select a.relid::oid from pg_partition_ancestors(s.relid) a) a(relid)
        cross join lateral (select t.* from dbsync.tables t where t.relid = a.relid and t.removed_at is null offset 0) t
        order by s.relid, t.table_id
    ),
    touched as (
        select c.oid as relid,
               pg_stat_get_xact_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_updated(c.oid)
                   + pg_stat_get_xact_tuples_deleted(c.oid) as written,
               pg_stat_get_xact_numscans(c.oid)
                   + coalesce((select sum(pg_stat_get_xact_numscans(i.indexrelid)) from pg_index i where i.indrelid = c.oid), 0) as scans
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        -- (pg_stat_xact_user_tables' relations, but for dbsync's own.)
        where c.oid = any (array(select s.relid from scope s))
          and c.relkind in ('r', 't', 'm', 'p')
          and n.nspname not in ('pg_catalog', 'information_schema', 'dbsync', 'dbsync_worker') and n.nspname !~ '^pg_toast'
    )
    select jsonb_build_object(
        -- (Not the TOAST tables: capture's own queue rows of a big statement are
        -- TOASTed. The catalogs' OIDs are below FirstNormalObjectId.)
        'catalog', (select coalesce(sum(pg_stat_get_xact_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_updated(c.oid)
                                        + pg_stat_get_xact_tuples_deleted(c.oid)), 0)
                    from pg_class c
                    where c.oid < 16384 and c.relnamespace = 'pg_catalog'::regnamespace and c.relkind = 'r'),
        'scope', (select coalesce(jsonb_object_agg(s.relid, true), '{}') from scope s),
        'tables', (select coalesce(jsonb_object_agg(x.relid, jsonb_build_array(x.written, x.scans)), '{}')
                   from touched x where x.written + x.scans > 0),
        'locked', (select coalesce(jsonb_object_agg(k.relid, true), '{}') from locked k where k.row_exclusive),
        'replicated', (select coalesce(jsonb_object_agg(r.relid, jsonb_build_array(r.table_id, r.group_id)), '{}') from replicated r),
        'filenodes', (select coalesce(jsonb_object_agg(r.relid, pg_relation_filenode(r.relid)), '{}') from replicated r),
        -- A column added later has a higher attnum (dbsync._ddl_recopy).
        'last_attnum', (select coalesce(jsonb_object_agg(r.table_id, (select max(a.attnum) from pg_attribute a where a.attrelid = r.table_relid)), '{}')
                        from (select distinct r.table_id, r.table_relid from replicated r) r),
        -- (age() counts from this transaction's xid: a (sub)transaction of its
        -- own, or one that began after it, wrote the row.)
        'changed', (select coalesce(jsonb_object_agg(x.relid, true), '{}')
                    from (select c.oid as relid
                          from pg_class c
                          where c.oid = any (array(select k.relid from locked k)) and c.relkind in ('r', 'm', 'p')
                            and ((age(c.xmin) <= 0
                                  -- PostgreSQL 10's CREATE TRIGGER writes its table's
                                  -- pg_class row again even when relhastriggers is set
                                  -- (a foreign key's triggers on the table it references):
                                  -- there, a row written under a lock weaker than ACCESS
                                  -- EXCLUSIVE (which TRUNCATE, a rewrite, a column take) of
                                  -- a table that got a trigger is the trigger's.
                                  and (dbsync._server_has('trigger_keeps_class_row')
                                       or exists (select from locked k where k.relid = c.oid and k.access_exclusive)
                                       or not exists (select from pg_trigger g where g.tgrelid = c.oid and age(g.xmin) <= 0)))
                                 or exists (select from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and age(a.xmin) <= 0))
                          union
                          -- Dropped (by this transaction: it holds the lock).
                          select k.relid from locked k where not exists (select from pg_class c where c.oid = k.relid)) x))
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
               -- First locked by the statement (outside the group, so not in the
               -- first call's scope): its counts before it are not known, and may
               -- hold earlier transactions' (see _ddl_effects).
               not p_before -> 'scope' ? k.relid as fresh,
               p_after -> 'changed' ? k.relid as changed,
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
               case when r.fresh
                    -- Rows written: a ROW EXCLUSIVE lock taken (every INSERT,
                    -- UPDATE, DELETE, MERGE, COPY), or rows counted in a table the
                    -- statement made or rewrote (CREATE TABLE AS).
                    then r.newlock or (r.changed and r.wa > 0)
                    -- The count grew, or went down (a TRUNCATE in the statement
                    -- zeroes it) and is not zero; or a ROW EXCLUSIVE lock taken.
                    else r.wa > r.wb or (r.wa < r.wb and r.wa > 0) or r.newlock end as written,
               case when r.fresh then r.wa > 0 and (r.newlock or r.changed) else r.wa <> r.wb end as counted,
               case when r.fresh then r.sa > 0 else r.sa <> r.sb end as scanned,
               -- Its file or columns: pg_class or pg_attribute rows written.
               r.refiled or (r.fresh and r.changed) as altered
        from rel r
    )
    select bool_or(j.rep is not null and (j.written or j.scanned)),
           string_agg(j.relid::oid::regclass::text, ', ' order by j.relid) filter (where j.rep is null and j.counted),
           coalesce(jsonb_agg(distinct j.table_id) filter (where j.group_id <> p_group_id and (j.written or j.altered)), '[]'),
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
      and (t.table_id in (select x::int from jsonb_array_elements_text(v_foreign_ids) x)
           or t.table_id in (select k::int from jsonb_object_keys(p_before -> 'last_attnum') k
                             where (p_after -> 'last_attnum' ->> k) is distinct from (p_before -> 'last_attnum' ->> k)));
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
