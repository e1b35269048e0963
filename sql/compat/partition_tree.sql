-- PostgreSQL 10 and 11 only (installed by migrate before the migrations there; see
-- src/compat.ts, rewrite "pg_partition_tree"): pg_partition_tree() and
-- pg_partition_ancestors() of PostgreSQL 12, from pg_inherits. Like them, they
-- return no rows for a relation that is neither partitioned nor a partition.

-- dbsync._partition_tree(p_rel regclass) returns table (relid, parentrelid, isleaf, level)
--   The partitioned table or partition p_rel and every partition below it.
create or replace function dbsync._partition_tree(p_rel regclass)
returns table (relid regclass, parentrelid regclass, isleaf boolean, level int)
language sql stable set search_path = pg_catalog, pg_temp as $$
    with recursive tree(relid, parentrelid, level) as (
        select c.oid,
               (select i.inhparent from pg_catalog.pg_inherits i where i.inhrelid = c.oid and c.relispartition),
               0
        from pg_catalog.pg_class c
        where c.oid = p_rel and (c.relkind = 'p' or c.relispartition)
        union all
        select i.inhrelid, i.inhparent, t.level + 1
        from tree t join pg_catalog.pg_inherits i on i.inhparent = t.relid
    )
    select t.relid::regclass, t.parentrelid::regclass, c.relkind <> 'p', t.level
    from tree t join pg_catalog.pg_class c on c.oid = t.relid
$$;

-- dbsync._partition_ancestors(p_rel regclass) returns table (relid)
--   The partition p_rel itself and the partitioned tables above it, nearest first.
create or replace function dbsync._partition_ancestors(p_rel regclass)
returns table (relid regclass)
language sql stable set search_path = pg_catalog, pg_temp as $$
    with recursive up(relid, depth) as (
        select c.oid, 0
        from pg_catalog.pg_class c
        where c.oid = p_rel and (c.relkind = 'p' or c.relispartition)
        union all
        select i.inhparent, u.depth + 1
        from up u
        join pg_catalog.pg_class c on c.oid = u.relid and c.relispartition
        join pg_catalog.pg_inherits i on i.inhrelid = u.relid
    )
    select u.relid::regclass from up u order by u.depth
$$;
