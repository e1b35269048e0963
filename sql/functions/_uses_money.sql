-- dbsync._uses_money(types oid[]) returns boolean
--   Whether any of the types is money or contains it (domain, array, composite,
--   range): only then does a capture trigger care about lc_monetary.
create or replace function dbsync._uses_money(types oid[]) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    with recursive t(oid) as (
        select unnest(types)
        union
        select x.dep from t
        join pg_type ty on ty.oid = t.oid
        cross join lateral (
            select ty.typbasetype where ty.typbasetype <> 0
            union all select ty.typelem where ty.typelem <> 0
            union all select a.atttypid from pg_attribute a
                      where a.attrelid = ty.typrelid and ty.typrelid <> 0 and a.attnum > 0 and not a.attisdropped
            union all select r.rngsubtype from pg_range r where r.rngtypid = ty.oid
        ) x(dep)
    )
    select exists (select from t where t.oid = 'money'::regtype)
$$;
