-- dbsync._key_text(p_columns text[], p_types oid[], p_alias text) returns text
--   SQL for the key of row p_alias (a table alias, NEW or OLD) as capture queues it:
--   a text[] of the key columns' text, each by its type's output function
--   (dbsync._text_of), in key order.
--   (PL/pgSQL: a SQL function's body is checked when it is created, and _text_of is
--   created after this file.)
--   Parameters: p_columns, p_types, p_alias.
--   Returns: text.
--   Calls: dbsync._text_of. Tables touched: none.
create or replace function dbsync._key_text(p_columns text[], p_types oid[], p_alias text) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (select 'array[' || string_agg(dbsync._text_of(u.ty, format('%s.%I', p_alias, u.k)), ', ' order by u.o) || ']'
            from unnest(p_columns, p_types) with ordinality as u(k, ty, o));
end
$$;
