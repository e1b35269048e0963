-- dbsync._conninfo_own_password(p_conninfo text, p_what text) returns void
--   Raises unless p_conninfo carries its own password and names none of the sidecar's
--   own credentials (a password file, a service of its pg_service.conf, a client
--   certificate and its key): what a conninfo given by a role other than the dbsync
--   owner must do (dbsync.add_subscription). The sidecar connects to such a target with
--   that password only and refuses a server that does not ask for it (trust, peer, a
--   certificate): otherwise the role that wrote the conninfo could point the sidecar at
--   its own server and be sent the sidecar's PGPASSWORD, or at a server that lets the
--   sidecar's host in as any role, and run execute_ddl there as that role (dblink and
--   postgres_fdw require the same of non-superusers). The sidecar's twin is
--   ownPasswordOnly in src/conninfo.ts.
--   Parameters: p_conninfo, p_what.
--   Returns: nothing.
--   Calls: dbsync._conninfo_parse. Tables touched: none.
create or replace function dbsync._conninfo_own_password(p_conninfo text, p_what text) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    v_kw text;
begin
    select p.keyword into v_kw from dbsync._conninfo_parse(p_conninfo, p_what) p
    where p.keyword in ('passfile', 'service', 'sslcert', 'sslkey', 'sslpassword') and p.value <> ''
    limit 1;
    if v_kw is not null then
        raise exception '%: a target conninfo given by a role other than the dbsync owner may not name "%"', p_what, v_kw
            using errcode = 'insufficient_privilege',
                  hint = 'It names a file or setting of the sidecar''s host, which the sidecar would use with its own '
                         'credentials. Give the password in the conninfo, or ask the dbsync owner to add the subscription.';
    end if;
    if not exists (select from dbsync._conninfo_parse(p_conninfo, p_what) p where p.keyword = 'password' and p.value <> '') then
        raise exception '%: a target conninfo given by a role other than the dbsync owner must carry its own password', p_what
            using errcode = 'insufficient_privilege',
                  hint = 'Give the target role''s password in the conninfo (password=...), or ask the dbsync owner to '
                         'add the subscription: the sidecar fills in nothing from its own environment, files or host for '
                         'it, and connects only to a server that asks for that password.';
    end if;
end
$$;
