-- Whether the values that DDL gave a column in the existing rows are the same on
-- every server that runs it. ALTER TABLE ... ADD COLUMN fills the new column of
-- every existing row on each server by itself: with a constant default, the same
-- value everywhere; with now(), random(), gen_random_uuid(), a sequence (serial,
-- identity), current_user, each server its own (now() is read once, when the DDL
-- runs, on each side); with a default dropped or changed in the same statement, the
-- values the old one gave. A stored generated column is computed on each side from
-- the row, and copies leave it out.

-- dbsync._expr_immutable(p_expr pg_node_tree) returns boolean
--   Whether a stored expression (a column default) gives every server the same
--   value: it calls only IMMUTABLE functions and operators, and holds no SQL value
--   function (current_timestamp, current_user... before PostgreSQL 16 these are not
--   function calls), no identity sequence, and no conversion through text (a
--   type's input function may read the clock: 'now'::text::timestamptz). Literals
--   are constants already, read under the settings that execute_ddl records for the
--   targets.
--   Parameters: p_expr.
--   Returns: boolean.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._expr_immutable(p_expr pg_node_tree) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select p_expr::text !~ '\{(SQLVALUEFUNCTION|NEXTVALUEEXPR|COERCEVIAIO|ARRAYCOERCEEXPR)\M'
       and not exists (select from regexp_matches(p_expr::text, ':(funcid|opfuncid) (\d+)', 'g') m
                       join pg_proc p on p.oid = m[2]::oid
                       where p.provolatile <> 'i')
       and not exists (select from regexp_matches(p_expr::text, ':opno (\d+)', 'g') m
                       join pg_operator o on o.oid = m[1]::oid
                       join pg_proc p on p.oid = o.oprcode
                       where p.provolatile <> 'i')
$$;

-- dbsync._own_values(p_rel oid, p_attnum smallint, p_rewritten boolean) returns boolean
--   Whether column p_attnum of p_rel, just added, has values in the existing rows
--   that each server computes for itself: an identity column, a default (its own or
--   its domain's) that is not immutable, or none left while the rows got values (a
--   default dropped in the same statement: a missing value, or p_rewritten: the
--   table was rewritten). Never a generated column.
--   Parameters: p_rel, p_attnum, p_rewritten.
--   Returns: boolean.
--   Calls: dbsync._expr_immutable. Tables touched: none.
create or replace function dbsync._own_values(p_rel oid, p_attnum smallint, p_rewritten boolean) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select a.attgenerated = ''
       and (a.attidentity <> ''
            or not dbsync._expr_immutable(coalesce(d.adbin, case when ty.typtype = 'd' then ty.typdefaultbin end))
            or (d.adbin is null and (ty.typtype <> 'd' or ty.typdefaultbin is null) and (a.atthasmissing or p_rewritten)))
    from pg_attribute a
    join pg_type ty on ty.oid = a.atttypid
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where a.attrelid = p_rel and a.attnum = p_attnum
$$;

-- dbsync._own_values_added(p_rel oid, p_rewritten boolean) returns boolean
--   Whether this transaction added a column to p_rel (or to a partition of it)
--   that filled the existing rows with values each server computes for itself
--   (dbsync._own_values): a column whose pg_attribute row this transaction wrote,
--   and that holds a value in the rows already there, as a missing value (a default
--   that is not volatile: no rewrite) or because p_rewritten (the table rewritten
--   for a volatile default, an identity or serial column). Outside execute_ddl,
--   which knows the columns from before its statement (dbsync._ddl_recopy). An
--   ALTER COLUMN ... SET DEFAULT alone changes no row and is not counted, unless
--   the column still holds a missing value from when it was added (then the table
--   is copied again needlessly).
--   Parameters: p_rel, p_rewritten.
--   Returns: boolean.
--   Calls: dbsync._own_values. Tables touched: none.
create or replace function dbsync._own_values_added(p_rel oid, p_rewritten boolean) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    -- (age() counts from this transaction's xid: it wrote the row.)
    -- (pg_partition_tree() has no row for a table that is not partitioned.)
    select exists (select from (select p_rel union select p.relid::oid from pg_partition_tree(p_rel) p) p(relid)
                   join pg_attribute a on a.attrelid = p.relid
                   where a.attnum > 0 and not a.attisdropped and age(a.xmin) <= 0
                     and (a.atthasmissing or p_rewritten)
                     and dbsync._own_values(a.attrelid, a.attnum, p_rewritten))
$$;
