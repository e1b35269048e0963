-- dbsync._add_owned_sequences(p_rel regclass, p_group_id int) returns void
--   The sequences table p_rel owns (serial, identity) travel with it: each is added
--   to group p_group_id unless a group carries it already, and the sidecar roles may
--   read it. Called by add_table, and by execute_ddl for a table that gained a column
--   (dbsync._ddl_recopy): a sequence made after add_table would otherwise not be
--   carried, and after a cutover the target's would hand out values the source used.
--   Parameters: p_rel, p_group_id.
--   Returns: nothing.
--   Calls: dbsync._grant_to_sidecars. Tables touched: dbsync.sequences (written).
create or replace function dbsync._add_owned_sequences(p_rel regclass, p_group_id int) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    insert into dbsync.sequences (relid, group_id, schema_name, seq_name)
    select c.oid, p_group_id, n.nspname, c.relname
    from pg_depend d
    join pg_class c on c.oid = d.objid and c.relkind = 'S'
    join pg_namespace n on n.oid = c.relnamespace
    where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
      and d.refobjid = p_rel and d.deptype in ('a', 'i')
    on conflict (relid) do nothing;
    perform dbsync._grant_to_sidecars(p_rel);
end
$$;
