-- Tables whose rows DDL left different on the targets, copied again.
--
-- A column added by execute_ddl may hold values that each server computes for
-- itself (see _own_values.sql). And rows that the statement changed besides its
-- DDL (an UPDATE in the same script, an application's event trigger writing a
-- replicated table) were changed by the target's run of it on other rows than here
-- (see _ddl_effects.sql). Only a copy brings the source's rows, so execute_ddl asks
-- every subscription of the group to copy such a table again; the batch of the DDL
-- runs it first and copies after it (or a later batch does, as for resync_table).

-- dbsync._ddl_recopy(p_group_id int, p_before jsonb, p_plan jsonb) returns void
--   After execute_ddl's DDL (p_before: dbsync._ddl_effects() before it; p_plan:
--   dbsync._ddl_plan's verdict): every subscription copies again each table of the
--   group whose rows the statement changed besides its DDL (p_plan's "written"),
--   and each that gained a column whose values in the existing rows are not the
--   same on every server (dbsync._own_values), and each whose existing columns a
--   rewrite wrote again (ALTER COLUMN ... TYPE, whose USING each server computes
--   for itself). A NOTICE names each. The sequences
--   that new columns made (serial, identity) travel with their table.
--   Parameters: p_group_id, p_before, p_plan.
--   Returns: nothing.
--   Calls: dbsync._add_owned_sequences, dbsync._own_values, dbsync._request_copy.
--     Tables touched: dbsync.tables (read), dbsync.subscription_tables (written).
create or replace function dbsync._ddl_recopy(p_group_id int, p_before jsonb, p_plan jsonb) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
begin
    for r in
        with columns as (
            select t.table_id, format('its new column %s has values that each server computes for itself',
                                      string_agg(quote_ident(a.attname), ', ' order by a.attnum)) as why
            from dbsync.tables t
            join pg_attribute a on a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped
                               and a.attnum > coalesce((p_before -> 'last_attnum' ->> t.table_id::text)::int, 0)
            where t.group_id = p_group_id and t.removed_at is null
              and dbsync._own_values(a.attrelid, a.attnum, p_plan -> 'rewritten' @> to_jsonb(t.table_id))
            group by t.table_id
        ),
        -- A column of the table before the statement, written again by a rewrite:
        -- ALTER COLUMN ... TYPE computes each row's new value on each server, with
        -- a USING expression that may read anything (another table, the clock), and
        -- a rewrite writes no row that the counts would show. (Its pg_attribute row
        -- written by this transaction: age() counts from its xid.)
        retyped as (
            select t.table_id, format('its column %s was rewritten, with values each server computes for itself (ALTER COLUMN ... TYPE ... USING)',
                                      string_agg(quote_ident(a.attname), ', ' order by a.attnum)) as why
            from dbsync.tables t
            join pg_attribute a on a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped
                               and a.attnum <= coalesce((p_before -> 'last_attnum' ->> t.table_id::text)::int, 0)
            where t.group_id = p_group_id and t.removed_at is null and a.attgenerated = ''
              and p_plan -> 'rewritten' @> to_jsonb(t.table_id) and age(a.xmin) <= 0
            group by t.table_id
        ),
        written as (
            select x::int as table_id, 'the statement changed its rows besides its DDL' as why
            from jsonb_array_elements_text(p_plan -> 'written') x
        )
        select t.table_id, format('%I.%I', t.schema_name, t.table_name) as name, string_agg(w.why, '; ') as why
        from (select * from columns union all select * from retyped union all select * from written) w
        join dbsync.tables t using (table_id)
        group by t.table_id, t.schema_name, t.table_name
    loop
        if dbsync._request_copy(null, array[r.table_id]) > 0 then
            raise notice 'execute_ddl: % is copied again by every subscription: %', r.name, r.why
                using hint = 'Constant defaults (or none), and row changes as plain statements after the DDL, avoid the copy: '
                             'rows of replicated tables reach the targets as rows.';
        end if;
    end loop;
    -- A serial or identity column added: its sequence travels with the table.
    for r in
        select t.relid from dbsync.tables t
        where t.group_id = p_group_id and t.removed_at is null
          and exists (select from pg_attribute a
                      where a.attrelid = t.relid and not a.attisdropped
                        and a.attnum > coalesce((p_before -> 'last_attnum' ->> t.table_id::text)::int, 0))
    loop
        perform dbsync._add_owned_sequences(r.relid, p_group_id);
    end loop;
end
$$;
