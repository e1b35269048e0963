-- dbsync._comment_line(p_text text) returns text
--   A SQL comment line saying p_text, for output that is run as SQL
--   (dbsync.schema_ddl, piped into psql on a target by an administrator). The text
--   holds names that other roles chose (a type, a constraint), and a line feed or
--   carriage return in one would end the comment: what follows it would run as a
--   statement (or, in psql, a backslash command). They are written as \n and \r.
--   Parameters: p_text.
--   Returns: text.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._comment_line(p_text text) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select '-- ' || replace(replace(p_text, E'\n', E'\\n'), E'\r', E'\\r')
$$;
