-- dbsync._conninfo_known(p_keyword text, p_message text) returns void
--   Raises "<p_message> "<keyword>"" when libpq does not know the keyword, with a
--   hint naming the nearest keyword it knows and all of them.
--   Parameters: p_keyword, p_message.
--   Returns: nothing.
--   Calls: dbsync._conninfo_keywords, dbsync._edit_distance. Tables touched: none.
create or replace function dbsync._conninfo_known(p_keyword text, p_message text) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    v_near text;
begin
    if exists (select from dbsync._conninfo_keywords() k where k.keyword = p_keyword) then
        return;
    end if;
    select k.keyword into v_near
    from dbsync._conninfo_keywords() k
    where dbsync._edit_distance(lower(p_keyword), k.keyword) < 3
    order by dbsync._edit_distance(lower(p_keyword), k.keyword)
    limit 1;
    raise exception '% "%"', p_message, left(p_keyword, 60)
        using errcode = 'invalid_parameter_value',
              hint = coalesce(format('Did you mean "%s"? ', v_near), '')
                     || 'libpq''s keywords: ' || (select string_agg(k.keyword, ', ') from dbsync._conninfo_keywords() k) || '.';
end
$$;
