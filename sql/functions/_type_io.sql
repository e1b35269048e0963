-- Conversions between a column's value and text that never run code a table owner
-- could have written. Capture runs SECURITY DEFINER and the sidecar may be a
-- privileged role, while a table owner can create casts from and to their own types
-- (`create cast (app.e as text) with function app.f(app.e)`), operators and
-- functions in any schema on the search_path. So:
--   * value -> text goes through the type's output function, called by its
--     qualified name (output functions of base types are C code that only a
--     superuser can create; enum, composite, range, array and domain types use
--     pg_catalog's);
--   * text -> value is a cast to a type of pg_catalog (only a superuser can create
--     casts between pg_catalog types), else values are compared as output text;
--   * equality is OPERATOR(pg_catalog.=) between pg_catalog types, else text.
-- They are PL/pgSQL, not SQL: batch_plan calls them for every column of every table
-- of a batch, and a SQL function (SET search_path keeps it from being inlined)
-- plans its query again at every call, where PL/pgSQL keeps the plan for the
-- session (3.5 ms against 1.5 ms a call for _text_of, most of a batch's planning
-- of a 20-table group).

-- dbsync._base_type(p_type oid) returns oid
--   The type under a (possibly nested) domain; the type itself otherwise.
--   Parameters: p_type.
--   Returns: oid.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._base_type(p_type oid) returns oid
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_type oid := p_type;
    v_base oid;
begin
    -- Down the chain of domains (most types are not one: a single lookup).
    loop
        select t.typbasetype into v_base from pg_type t where t.oid = v_type;
        if not found then
            return null;
        end if;
        exit when v_base = 0;
        v_type := v_base;
    end loop;
    return v_type;
end
$$;

-- dbsync._text_of(p_type oid, p_expr text) returns text
--   SQL for the text of p_expr, a value of type p_type, by the base type's output
--   function. Polymorphic output functions (enum_out, array_out...) do not take
--   domains: a domain over a pg_catalog type is cast to it (a domain's casts are
--   built in), a domain over any other type is printed by format('%s'), which calls
--   the domain's output function, its base type's. Never the base type's name: capture
--   functions keep this SQL as text, and the owner of a type can rename it, create
--   another type by the old name and a cast to it whose function would then run
--   inside capture, as dbsync (test/capture-search-path.test.ts).
--   Parameters: p_type, p_expr.
--   Returns: text.
--   Calls: dbsync._base_type. Tables touched: none.
create or replace function dbsync._text_of(p_type oid, p_expr text) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (
        select case when b.oid = 'pg_catalog.text'::regtype then format('(%s)::pg_catalog.text', v.expr)
                    when v.expr is null then format('pg_catalog.format(''%%s'', %s)', p_expr)
                    else format('pg_catalog.textin(%I.%I(%s))', n.nspname, p.proname, v.expr) end
        from pg_type b
        join pg_proc p on p.oid = b.typoutput
        join pg_namespace n on n.oid = p.pronamespace
        cross join lateral (
            select case when b.oid = p_type then p_expr
                        when b.typnamespace = 'pg_catalog'::regnamespace then format('(%s)::pg_catalog.%I', p_expr, b.typname)
                        end as expr
        ) v
        where b.oid = dbsync._base_type(p_type));
end
$$;

-- dbsync._prints_by_search_path(p_types oid[]) returns boolean
--   Whether the output text of any of these types, or of a type inside them (array
--   element, composite field, domain base), depends on the search_path: the reg*
--   types print a name unqualified when the search_path finds it. Capture of such
--   keys keeps SET search_path (see _install_capture), else a writer's search_path
--   would decide which object the reader finds for a recorded key.
--   Parameters: p_types.
--   Returns: boolean.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._prints_by_search_path(p_types oid[]) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    with recursive inside(t) as (
        select unnest(p_types)
        union
        select x.t
        from inside i
        join pg_type y on y.oid = i.t
        cross join lateral (select y.typbasetype where y.typbasetype <> 0
                            union all
                            select y.typelem where y.typelem <> 0
                            union all
                            select a.atttypid from pg_attribute a
                            where a.attrelid = y.typrelid and a.attnum > 0 and not a.attisdropped) x(t)
    )
    -- Every reg* type of pg_catalog (regclass, regproc, regtype ...: those of the
    -- server's major, found by name so that a newer one is not missed).
    select exists (
        select from inside i
        join pg_type y on y.oid = i.t
        where y.typnamespace = 'pg_catalog'::regnamespace and y.typname ~ '^reg' and y.typcategory = 'N')
$$;

-- dbsync._key_match(p_type oid, p_col text, p_key text) returns text
--   SQL that is true when column p_col (of type p_type) equals p_key, the text a
--   capture trigger recorded for it. Types of pg_catalog compare as values (an index
--   on the column serves); other types compare by output text.
--   Parameters: p_type, p_col, p_key.
--   Returns: text.
--   Calls: dbsync._base_type, dbsync._text_of. Tables touched: none.
create or replace function dbsync._key_match(p_type oid, p_col text, p_key text) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (
        select case when b.typnamespace = 'pg_catalog'::regnamespace
                    then format('%s OPERATOR(pg_catalog.=) (%s)::pg_catalog.%I', p_col, p_key, b.typname)
                    else format('%s OPERATOR(pg_catalog.=) %s', dbsync._text_of(p_type, p_col), p_key) end
        from pg_type b
        where b.oid = dbsync._base_type(p_type));
end
$$;

-- dbsync._compared_as_text(p_types oid[]) returns boolean
--   Whether keys of any of these types are matched by output text (see _key_match):
--   then their text must be printed exactly as the sidecar's reader prints it, so
--   capture also pins TimeZone and bytea_output (a composite's text holds its
--   timestamptz fields in the session's zone).
--   Parameters: p_types.
--   Returns: boolean.
--   Calls: dbsync._base_type. Tables touched: none.
create or replace function dbsync._compared_as_text(p_types oid[]) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (
        select exists (
            select from unnest(p_types) u(t)
            join pg_type b on b.oid = dbsync._base_type(u.t)
            where b.typnamespace <> 'pg_catalog'::regnamespace and b.typtype <> 'e'));
end
$$;

-- dbsync._needs_pinned_output(p_types oid[]) returns boolean
--   Whether the output text of any of these types depends on a session setting
--   (DateStyle, IntervalStyle, extra_float_digits, lc_monetary), or is matched as
--   text (_compared_as_text), so that capture must pin the settings (see
--   _pin_output). pg_catalog types known to print the same everywhere need not.
--   Parameters: p_types.
--   Returns: boolean.
--   Calls: dbsync._base_type, dbsync._compared_as_text. Tables touched: none.
create or replace function dbsync._needs_pinned_output(p_types oid[]) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (
        select dbsync._compared_as_text(p_types)
            or exists (
                   select from unnest(p_types) u(t)
                   join pg_type b on b.oid = dbsync._base_type(u.t)
                   where b.typnamespace = 'pg_catalog'::regnamespace
                     and b.oid not in ('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int8'::regtype,
                                       'pg_catalog.numeric'::regtype, 'pg_catalog.text'::regtype,
                                       'pg_catalog.varchar'::regtype, 'pg_catalog.bpchar'::regtype,
                                       'pg_catalog.uuid'::regtype, 'pg_catalog.bool'::regtype,
                                       'pg_catalog.bytea'::regtype, 'pg_catalog.oid'::regtype,
                                       'pg_catalog.name'::regtype, 'pg_catalog.char'::regtype,
                                       'pg_catalog.inet'::regtype, 'pg_catalog.cidr'::regtype,
                                       'pg_catalog.macaddr'::regtype)));
end
$$;

-- dbsync._one_text_per_value(p_type oid, p_collation oid) returns boolean
--   Whether equal values of this type (in a column of this collation) always have
--   the same output text, whatever the session's settings: then two different key
--   texts recorded by capture never find the same row, and the reader may look
--   each key up once (a LEFT JOIN) instead of once for its row and once more to
--   find the keys that are gone. Not so for numeric (1.0 = 1.00), floats (-0 = 0),
--   intervals ('1 day' = '24 hours'), types whose text depends on a setting
--   (timestamptz, bytea), or text under a nondeterministic collation.
--   Parameters: p_type, p_collation.
--   Returns: boolean.
--   Calls: dbsync._base_type. Tables touched: none.
create or replace function dbsync._one_text_per_value(p_type oid, p_collation oid) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (
        select b.oid in ('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int8'::regtype,
                         'pg_catalog.oid'::regtype, 'pg_catalog.uuid'::regtype, 'pg_catalog.bool'::regtype)
            or (b.oid in ('pg_catalog.text'::regtype, 'pg_catalog.varchar'::regtype)
                -- The database's default collation and C/POSIX compare bytes.
                and p_collation in (0, 100, 'pg_catalog."C"'::regcollation, 'pg_catalog."POSIX"'::regcollation))
        from pg_type b
        where b.oid = dbsync._base_type(p_type));
end
$$;
