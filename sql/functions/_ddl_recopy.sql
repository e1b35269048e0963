-- Columns that DDL adds with values a target would compute differently.
--
-- ALTER TABLE ... ADD COLUMN fills the new column of every existing row on each
-- server by itself: with a constant default, the same value everywhere; with
-- now(), random(), gen_random_uuid(), a sequence (serial, identity), current_user,
-- each target its own (now() is read once, when the DDL runs, on each side). Only a
-- copy brings the source's values, so execute_ddl asks every subscription to copy
-- such a table again; its batch applies the DDL first and the copy after it.

-- dbsync._expr_immutable(p_expr pg_node_tree) returns boolean
--   Whether a stored expression (a column default) gives every server the same
--   value: it calls only IMMUTABLE functions and operators, and holds no SQL value
--   function (current_timestamp, current_user... before PostgreSQL 16 these are not
--   function calls) and no identity sequence. Literals are constants already, read
--   under the settings that execute_ddl records for the targets.
--   Parameters: p_expr.
--   Returns: boolean.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._expr_immutable(p_expr pg_node_tree) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select p_expr::text !~ '\{(SQLVALUEFUNCTION|NEXTVALUEEXPR)\M'
       and not exists (select from regexp_matches(p_expr::text, ':(funcid|opfuncid) (\d+)', 'g') m
                       join pg_proc p on p.oid = m[2]::oid
                       where p.provolatile <> 'i')
       and not exists (select from regexp_matches(p_expr::text, ':opno (\d+)', 'g') m
                       join pg_operator o on o.oid = m[1]::oid
                       join pg_proc p on p.oid = o.oprcode
                       where p.provolatile <> 'i')
$$;

-- dbsync._ddl_recopy(p_group_id int, p_before jsonb) returns void
--   After execute_ddl's DDL (p_before: dbsync._ddl_effects() before it): each table
--   of the group that gained a column whose values in its existing rows are not the
--   same on every server (an identity column, or a default, its own or its
--   domain's, that is not immutable; not a generated column: every server computes
--   that from the row) is copied again by every subscription, with a NOTICE naming
--   it.
--   Parameters: p_group_id, p_before.
--   Returns: nothing.
--   Calls: dbsync._expr_immutable, dbsync._request_copy. Tables touched:
--     dbsync.tables (read), dbsync.subscription_tables (written).
create or replace function dbsync._ddl_recopy(p_group_id int, p_before jsonb) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
begin
    for r in
        select t.table_id, format('%I.%I', t.schema_name, t.table_name) as name,
               string_agg(quote_ident(a.attname), ', ' order by a.attnum) as columns
        from dbsync.tables t
        join pg_attribute a on a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped
                           and a.attnum > coalesce((p_before -> 'last_attnum' ->> t.table_id::text)::int, 0)
        join pg_type ty on ty.oid = a.atttypid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where t.group_id = p_group_id and t.removed_at is null and a.attgenerated = ''
          and (a.attidentity <> ''
               or not dbsync._expr_immutable(coalesce(d.adbin, case when ty.typtype = 'd' then ty.typdefaultbin end)))
        group by t.table_id, t.schema_name, t.table_name
    loop
        if dbsync._request_copy(null, array[r.table_id]) > 0 then
            raise notice 'execute_ddl: % is copied again by every subscription: its new column % has values that each server computes for itself', r.name, r.columns
                using hint = 'A constant default (or none) and a plain UPDATE after the DDL avoid the copy: rows of replicated tables reach the targets as rows.';
        end if;
    end loop;
end
$$;
