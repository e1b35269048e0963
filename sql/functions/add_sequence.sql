-- dbsync.add_sequence(seq regclass, group_name text default 'default') returns int
--   Carries a sequence to every target of the group: with each batch the target's
--   sequence is set to the source's state, backwards too (dbsync.sidecar_sequences),
--   so after a cutover the target's next nextval gives the source's. add_table adds the
--   sequences a table owns (serial, identity) by itself.
--   Errors: not a sequence; already added.
--   Parameters: seq, group_name.
--   Returns: the sequence's id (dbsync.sequences.seq_id).
--   Calls: dbsync._grant_to_sidecars, dbsync._group_id. Tables touched: dbsync.sequences
--     (written).
create or replace function dbsync.add_sequence(seq regclass, group_name text default 'default') returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_id int;
begin
    if seq is null or (select relkind from pg_class where oid = seq) is distinct from 'S' then
        raise exception 'add_sequence: % is not a sequence', seq
            using errcode = 'wrong_object_type', hint = 'Pass a sequence, e.g. ''public.orders_id_seq''.';
    end if;
    if exists (select from dbsync.sequences s where s.relid = seq) then
        raise exception 'add_sequence: % is already replicated', seq using errcode = 'duplicate_object';
    end if;
    insert into dbsync.sequences (relid, group_id, schema_name, seq_name)
    select seq, dbsync._group_id(group_name, true), n.nspname, c.relname
    from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = seq
    returning seq_id into v_id;
    -- The sidecar reads its value as its own role.
    perform dbsync._grant_to_sidecars(seq);
    return v_id;
end
$$;
