-- dbsync._uri_decode(p_text text, p_what text) returns text
--   Percent-decodes one part of a connection URI (as UTF-8), as libpq does; raises
--   on a malformed %XX or %00.
--   Parameters: p_text, p_what.
--   Returns: text.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._uri_decode(p_text text, p_what text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    v bytea := '';
    i int := 1;
    c text;
begin
    if p_text ~ '%($|.$|[^0-9A-Fa-f]|.[^0-9A-Fa-f])' then
        raise exception '%: invalid percent-encoded token in URI', p_what
            using errcode = 'invalid_parameter_value',
                  hint = 'In a URI, write a reserved character as %XX (e.g. %40 for @, %2F for /).';
    end if;
    while i <= length(p_text) loop
        c := substr(p_text, i, 1);
        if c = '%' then
            if lower(substr(p_text, i + 1, 2)) = '00' then
                raise exception '%: forbidden value %%00 in percent-encoded value', p_what
                    using errcode = 'invalid_parameter_value';
            end if;
            v := v || decode(substr(p_text, i + 1, 2), 'hex');
            i := i + 3;
        else
            v := v || convert_to(c, 'UTF8');
            i := i + 1;
        end if;
    end loop;
    return convert_from(v, 'UTF8');
end
$$;
