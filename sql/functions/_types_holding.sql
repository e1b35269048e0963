-- dbsync._types_holding(p_type oid) returns setof oid
--   p_type and every type whose values hold one of it: its domains, arrays,
--   composite types with an attribute of it, ranges over it, and so on. A column
--   of any of them changes on the source, without any row trigger firing, when
--   ALTER TYPE changes p_type (an enum value renamed, a composite's attribute
--   dropped): the DDL event trigger finds the replicated tables concerned with it.
--   Parameters: p_type.
--   Returns: the types' oids.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._types_holding(p_type oid) returns setof oid
language sql stable set search_path = pg_catalog, pg_temp as $$
    with recursive holding(oid) as (
        select p_type
        union
        select t.oid
        from holding h
        join pg_type t on t.typbasetype = h.oid
                       or (t.typelem = h.oid and t.typlen = -1)
                       or (t.typtype = 'c' and exists (select from pg_attribute a
                                                       where a.attrelid = t.typrelid and a.atttypid = h.oid
                                                         and a.attnum > 0 and not a.attisdropped))
                       or (t.typtype = 'r' and exists (select from pg_range r
                                                       where r.rngtypid = t.oid and r.rngsubtype = h.oid))
    )
    select h.oid from holding h
$$;
