-- Whether the values that DDL gave a column in the existing rows are the same on
-- every server that runs it. ALTER TABLE ... ADD COLUMN fills the new column of
-- every existing row on each server by itself: with a constant default, the same
-- value everywhere; with now(), random(), gen_random_uuid(), a sequence (serial,
-- identity), current_user, each server its own (now() is read once, when the DDL
-- runs, on each side); with a default dropped or changed in the same statement, the
-- values the old one gave. A date/time literal is read when the DDL runs too:
-- DEFAULT 'now' (or 'today', '{now}', '[now,)') is stored as the constant it gave
-- here, while each target reads its own clock; a stored constant cannot tell
-- 'now' from '2024-01-01', so every constant of such a type counts (the table is
-- copied again, needlessly for a real date, never wrongly). A stored generated
-- column is computed on each side from the row, and copies leave it out.

-- dbsync._expr_immutable(p_expr pg_node_tree) returns boolean
--   Whether a stored expression (a column default) gives every server the same
--   value: it calls only IMMUTABLE functions and operators, and holds no SQL value
--   function (current_timestamp, current_user... before PostgreSQL 16 these are not
--   function calls), no identity sequence, no conversion through text (a type's
--   input function may read the clock: 'now'::text::timestamptz), and no constant
--   of a type that holds a date or time (one of those read the clock when the DDL
--   ran: 'now', 'today', 'tomorrow', 'yesterday', folded into the constant; its
--   arrays, ranges, composites and domains too). Other literals are the same
--   constant everywhere, read under the settings that execute_ddl records for the
--   targets.
--   Parameters: p_expr.
--   Returns: boolean.
--   Calls: dbsync._types_holding. Tables touched: none.
create or replace function dbsync._expr_immutable(p_expr pg_node_tree) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select p_expr::text !~ E'\\{(SQLVALUEFUNCTION|NEXTVALUEEXPR|COERCEVIAIO|ARRAYCOERCEEXPR)\\M'
       and not exists (select from regexp_matches(p_expr::text, E'\\{CONST :consttype (\\d+)', 'g') m
                       where m[1]::oid in (select dbsync._types_holding(d)
                                           from unnest('{date,time,timetz,timestamp,timestamptz}'::regtype[]) d))
       and not exists (select from regexp_matches(p_expr::text, E':(funcid|opfuncid) (\\d+)', 'g') m
                       join pg_proc p on p.oid = m[2]::oid
                       where p.provolatile <> 'i')
       and not exists (select from regexp_matches(p_expr::text, E':opno (\\d+)', 'g') m
                       join pg_operator o on o.oid = m[1]::oid
                       join pg_proc p on p.oid = o.oprcode
                       where p.provolatile <> 'i')
$$;

-- dbsync._domain_checked(p_type oid) returns boolean
--   Whether p_type is a domain with a constraint, its own or a base domain's:
--   ADD COLUMN of it rewrites the table to check every row, default or none.
--   Parameters: p_type.
--   Returns: boolean.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._domain_checked(p_type oid) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    with recursive up(oid) as (
        select p_type
        union all
        select t.typbasetype from up join pg_type t on t.oid = up.oid where t.typtype = 'd'
    )
    select exists (select from up join pg_constraint c on c.contypid = up.oid)
$$;

-- dbsync._own_values(p_rel oid, p_attnum smallint, p_rewritten boolean) returns boolean
--   Whether column p_attnum of p_rel, just added, has values in the existing rows
--   that each server computes for itself: an identity column, a default (its own or
--   its domain's) that is not immutable, or none left while the rows got values (a
--   default dropped in the same statement: a missing value, or p_rewritten: the
--   table was rewritten), unless that rewrite only checked a domain's CHECK with
--   every value null (dbsync._domain_checked; a domain's default dropped in the
--   same statement is stored as a null default, not as none). Never a generated
--   column.
--   Parameters: p_rel, p_attnum, p_rewritten.
--   Returns: boolean.
--   Calls: dbsync._domain_checked, dbsync._expr_immutable. Tables touched: none.
create or replace function dbsync._own_values(p_rel oid, p_attnum smallint, p_rewritten boolean) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select a.attgenerated = ''
       and (a.attidentity <> ''
            or not dbsync._expr_immutable(coalesce(d.adbin, case when ty.typtype = 'd' then ty.typdefaultbin end))
            or (d.adbin is null and (ty.typtype <> 'd' or ty.typdefaultbin is null)
                and (a.atthasmissing or p_rewritten and not dbsync._domain_checked(a.atttypid))))
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
