-- dbsync._check_name(kind text, name text) returns void
--   Rejects a group or subscription name that is NULL, empty or all blanks.
--   Names are otherwise free text: they are stored as values and never spliced
--   into SQL.
--   Parameters: kind, name.
--   Returns: nothing.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._check_name(kind text, name text) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    if name is null or btrim(name) = '' then
        raise exception 'dbsync: % name must not be empty', kind
            using errcode = 'invalid_parameter_value',
                  hint = format('Pass a non-empty %s name.', kind);
    end if;
end
$$;
