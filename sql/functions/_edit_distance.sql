-- dbsync._edit_distance(a text, b text) returns int
--   Levenshtein distance (fuzzystrmatch is an extension dbsync does not require).
--   Used to suggest the keyword a DBA meant in an error's hint.
--   Parameters: a, b.
--   Returns: the distance (NULL when either text is NULL).
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._edit_distance(a text, b text) returns int
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    prev int[] := array(select generate_series(0, length(b)));
    cur int[];
begin
    if a is null or b is null then
        return null;
    end if;
    for i in 1..length(a) loop
        cur := array[i];
        for j in 1..length(b) loop
            cur := cur || least(prev[j + 1] + 1, cur[j] + 1,
                                prev[j] + case when substr(a, i, 1) = substr(b, j, 1) then 0 else 1 end);
        end loop;
        prev := cur;
    end loop;
    return prev[length(b) + 1];
end
$$;
