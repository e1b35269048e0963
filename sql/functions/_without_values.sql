-- dbsync._without_values(p_text text, p_shows boolean) returns text
--   An error text of dbsync.status or dbsync.table_status as a reader sees it:
--   unchanged when p_shows (dbsync._shows_values), else cut where PostgreSQL's DETAIL
--   starts (" (detail: ", as src/errors.ts reportOf writes it). Everything after that
--   goes too: the hint that follows the detail could not be told apart from a value
--   in the detail that imitates its start.
--   Parameters: p_text, p_shows.
--   Returns: text.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._without_values(p_text text, p_shows boolean) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select case when p_shows or strpos(p_text, ' (detail: ') = 0 then p_text
                else left(p_text, strpos(p_text, ' (detail: ') - 1)
                     || ' (detail withheld: it may quote row values, which this role may not read)' end
$$;
