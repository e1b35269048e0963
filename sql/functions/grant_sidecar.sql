-- dbsync.grant_sidecar(role_name name) returns void
--   Lets role_name run `dbsync run` against this (source) database without owning
--   dbsync or being a superuser; the owner keeps `dbsync migrate`. Records the role
--   in dbsync.sidecar_roles (add_table and add_sequence then grant it what they add,
--   and every migrate grants it again) and grants it exactly what the sidecar uses:
--     * USAGE on schema dbsync; EXECUTE on the functions the sidecar calls (the
--       protocol section of sql/manifest.txt, dbsync._protocol_functions()): those
--       that change dbsync's state are SECURITY DEFINER; those that read, or write
--       the columns of dbsync.verifications below, run with the role's own rights;
--     * SELECT on the dbsync tables and views the sidecar reads directly
--       (subscriptions with their target_conninfo, groups, tables, sequences,
--       verifications, status, table_status) and UPDATE on the columns of
--       dbsync.verifications a verification fills in. Not the queue (dbsync.events):
--       batch_keys reads it for the sidecar;
--     * SELECT on every replicated table and carried sequence, USAGE on their schemas
--       (the sidecar's reader COPYs rows out of the tables as itself, and reads the
--       sequences' values);
--     * graphile-worker's schema dbsync_worker: USAGE, EXECUTE on its functions,
--       SELECT/INSERT/UPDATE/DELETE on its tables, USAGE/SELECT on its sequences, and
--       a policy letting the role through the row level security graphile-worker
--       enables on its tables (which admits nobody but their owner otherwise).
--   No admin function (add_table, add_subscription, execute_ddl, drop_subscription,
--   resync_table, pause, ...), no write to dbsync's tables but those above.
--   Only the dbsync owner (or a member of it) may call it: the rights include
--   reading every replicated table.
--   Errors: no such role; a predefined role (pg_*); caller not the dbsync owner.
--   Parameters: role_name.
--   Returns: nothing.
--   Calls: dbsync._grant_set. Tables touched: none.
create or replace function dbsync.grant_sidecar(role_name name) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform dbsync._grant_set('sidecar', role_name);
end
$$;

-- dbsync._grant_sidecar_rights(p_role name) returns void
--   The grants of grant_sidecar, idempotent: migrate runs them again for every
--   recorded role (after graphile-worker's migrations too).
--   Parameters: p_role.
--   Returns: nothing.
--   Calls: dbsync._grant_select, dbsync._require_owner. Tables touched: dbsync.sequences,
--     dbsync.tables, dbsync.verifications (read).
create or replace function dbsync._grant_sidecar_rights(p_role name) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
begin
    perform dbsync._require_owner('_grant_sidecar_rights');
    execute format('grant usage on schema dbsync to %I', p_role);
    -- The sidecar <-> source protocol (the protocol section of sql/manifest.txt),
    -- batch_keys among it: the COPY that batch_plan writes calls it.
    for r in
        select p.oid::regprocedure as fn
        from pg_proc p
        where p.pronamespace = 'dbsync'::regnamespace
          and p.proname = any (dbsync._protocol_functions())
    loop
        execute format('grant execute on function %s to %I', r.fn, p_role);
    end loop;
    for r in
        select c.oid::regclass as rel
        from pg_class c
        where c.relnamespace = 'dbsync'::regnamespace
          and c.relname in ('subscriptions', 'groups', 'tables', 'sequences', 'verifications', 'status', 'table_status')
    loop
        execute format('grant select on %s to %I', r.rel, p_role);
    end loop;
    -- A verification writes its progress and outcome, never what was asked for.
    execute format('grant update (%s) on dbsync.verifications to %I',
                   (select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
                    from pg_attribute a
                    where a.attrelid = 'dbsync.verifications'::regclass and a.attnum > 0 and not a.attisdropped
                      and a.attname not in ('verification_id', 'subscription', 'sub_id', 'table_id', 'table_name',
                                            'repair', 'requested_at', 'background', 'key_after', 'row_limit')),
                   p_role);
    for r in
        select t.relid::regclass as rel from dbsync.tables t
        where t.removed_at is null and exists (select from pg_class c where c.oid = t.relid)
        union all
        select q.relid::regclass from dbsync.sequences q
        where exists (select from pg_class c where c.oid = q.relid)
    loop
        perform dbsync._grant_select(r.rel, p_role);
    end loop;
    -- graphile-worker (installed by migrate after dbsync's own code, so perhaps not yet).
    if to_regnamespace('dbsync_worker') is not null then
        execute format('grant usage on schema dbsync_worker to %I', p_role);
        execute format('grant execute on all functions in schema dbsync_worker to %I', p_role);
        execute format('grant select, insert, update, delete on all tables in schema dbsync_worker to %I', p_role);
        execute format('grant usage, select on all sequences in schema dbsync_worker to %I', p_role);
        for r in
            select c.oid::regclass as rel, 'dbsync_sidecar_' || ro.oid::text as policy
            from pg_class c, pg_roles ro
            where c.relnamespace = 'dbsync_worker'::regnamespace and c.relkind in ('r', 'p') and c.relrowsecurity
              and ro.rolname = p_role
              and not exists (select from pg_policy po
                              where po.polrelid = c.oid and po.polname = 'dbsync_sidecar_' || ro.oid::text)
        loop
            execute format('create policy %I on %s to %I using (true) with check (true)', r.policy, r.rel, p_role);
        end loop;
    end if;
end
$$;

-- dbsync._grant_to_sidecars(p_rel regclass) returns void
--   SELECT on a table just added (and the sequences it owns that dbsync carries) or
--   a sequence just added, for every recorded sidecar role. Called by add_table and
--   add_sequence.
--   Parameters: p_rel.
--   Returns: nothing.
--   Calls: dbsync._grant_select. Tables touched: dbsync.sequences, dbsync.sidecar_roles,
--     dbsync.tables (read).
create or replace function dbsync._grant_to_sidecars(p_rel regclass) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
begin
    if not (exists (select from dbsync.tables t where t.relid = p_rel and t.removed_at is null)
            or exists (select from dbsync.sequences q where q.relid = p_rel)) then
        raise exception '_grant_to_sidecars: % is not a replicated table or sequence', p_rel
            using errcode = 'insufficient_privilege';
    end if;
    for r in
        select s.role_name, x.rel
        from dbsync.sidecar_roles s
        cross join (select p_rel as rel
                    union all
                    select q.relid::regclass from dbsync.sequences q
                    join pg_depend d on d.objid = q.relid and d.classid = 'pg_class'::regclass
                                    and d.refclassid = 'pg_class'::regclass and d.refobjid = p_rel
                                    and d.deptype in ('a', 'i')) x
        where exists (select from pg_roles ro where ro.rolname = s.role_name)
    loop
        perform dbsync._grant_select(r.rel, r.role_name);
    end loop;
end
$$;

-- dbsync._grant_select(p_rel regclass, p_role name) returns void
--   SELECT on a replicated table or sequence, and USAGE on its schema (without it the
--   reader cannot name the table), to a recorded sidecar role. Anything else is
--   refused: an admin role may hold EXECUTE on every dbsync function, and this runs
--   as the dbsync owner (often a superuser), who can grant SELECT on any table.
--   Parameters: p_rel, p_role.
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.sequences, dbsync.sidecar_roles, dbsync.tables
--     (read).
create or replace function dbsync._grant_select(p_rel regclass, p_role name) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    if not exists (select from dbsync.sidecar_roles s where s.role_name = p_role)
       or not (exists (select from dbsync.tables t where t.relid = p_rel and t.removed_at is null)
               or exists (select from dbsync.sequences q where q.relid = p_rel)) then
        raise exception '_grant_select: % is not a replicated table or sequence, or "%" is not a sidecar role', p_rel, p_role
            using errcode = 'insufficient_privilege';
    end if;
    execute format('grant usage on schema %I to %I',
                   (select n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = p_rel),
                   p_role);
    execute format('grant select on %s to %I', p_rel, p_role);
end
$$;

-- dbsync._regrant_sidecars() returns int
--   grant_sidecar's rights again for every recorded role that still exists; the
--   number of roles. Run by every migrate (sql/grants.sql, and after graphile-worker's
--   migrations).
--   Parameters: none.
--   Returns: the number of roles.
--   Calls: dbsync._grant_sidecar_rights, dbsync._require_owner. Tables touched:
--     dbsync.sidecar_roles (read).
create or replace function dbsync._regrant_sidecars() returns int
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
    n int := 0;
begin
    perform dbsync._require_owner('_regrant_sidecars');
    for r in
        select s.role_name from dbsync.sidecar_roles s
        where exists (select from pg_roles ro where ro.rolname = s.role_name)
        order by s.role_name
    loop
        perform dbsync._grant_sidecar_rights(r.role_name);
        n := n + 1;
    end loop;
    return n;
end
$$;

-- dbsync._require_owner(p_what text) returns void
--   Raises unless the session's role is the dbsync owner or a member of it
--   (dbsync._session_is_owner): what only the owner may do checks the session's role.
--   Parameters: p_what.
--   Returns: nothing.
--   Calls: dbsync._session_is_owner. Tables touched: none.
create or replace function dbsync._require_owner(p_what text) returns void
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    if not dbsync._session_is_owner() then
        raise exception '%: only the dbsync owner (%) may grant dbsync''s rights', p_what,
            (select n.nspowner::regrole from pg_namespace n where n.nspname = 'dbsync')
            using errcode = 'insufficient_privilege',
                  hint = 'Connect as the role that ran `dbsync migrate`.';
    end if;
end
$$;

-- dbsync._check_grantee(p_what text, p_role name, p_example name) returns void
--   Raises unless p_role is a role that may be granted dbsync's rights: one that
--   exists (PUBLIC is none) and is not a predefined role (pg_*). p_what names the
--   caller, p_example the role the hint suggests creating.
--   Parameters: p_what, p_role, p_example.
--   Returns: nothing.
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._check_grantee(p_what text, p_role name, p_example name) returns void
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    if p_role is null or not exists (select from pg_roles r where r.rolname = p_role) then
        raise exception '%: role "%" does not exist', p_what, p_role
            using errcode = 'undefined_object',
                  hint = format('Create it first, e.g. create role %I login.', p_example);
    end if;
    if p_role like E'pg\\_%' then
        raise exception '%: "%" is a predefined role', p_what, p_role
            using errcode = 'reserved_name',
                  hint = format('Create a login role for it, e.g. create role %I login.', p_example);
    end if;
end
$$;
