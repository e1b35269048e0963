-- dbsync._group_id(group_name text, create_missing boolean) returns int
--   The id of a group by name; creates it when create_missing, else raises
--   "unknown group" with a hint.
--   Parameters: group_name, create_missing.
--   Returns: the group's id.
--   Calls: dbsync._check_name, dbsync.create_group. Tables touched: dbsync.groups (read).
create or replace function dbsync._group_id(group_name text, create_missing boolean) returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_id int;
begin
    perform dbsync._check_name('group', group_name);
    select g.group_id into v_id from dbsync.groups g where g.name = group_name;
    if v_id is null and create_missing then
        v_id := dbsync.create_group(group_name);
    elsif v_id is null then
        raise exception 'dbsync: unknown group "%"', group_name
            using errcode = 'undefined_object',
                  hint = 'Create it with dbsync.create_group(name) or dbsync.add_table(tbl, group_name).';
    end if;
    return v_id;
end
$$;
