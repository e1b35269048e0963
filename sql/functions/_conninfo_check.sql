-- dbsync._conninfo_check(p_conninfo text, p_what text) returns void
--   Raises unless p_conninfo is a connection string libpq accepts and dbsync's
--   sidecar can honour: its grammar and keywords (dbsync._conninfo_parse), the values
--   of enumerated and numeric keywords (libpq refuses a wrong one when it connects;
--   here it is refused at once), and the keywords dbsync cannot give their libpq
--   meaning (several hosts, GSSAPI, require_auth ...: see dbsync._conninfo_keywords).
--   What only the sidecar's host can tell (a certificate file, a service in
--   pg_service.conf) is checked when it connects. p_what prefixes the messages.
--   Values are never echoed (a misplaced password could be one), keywords are.
--   The sidecar's twin is checkValues in src/conninfo.ts.
--   Parameters: p_conninfo, p_what.
--   Returns: nothing.
--   Calls: dbsync._conninfo_keywords, dbsync._conninfo_parse. Tables touched: none.
create or replace function dbsync._conninfo_check(p_conninfo text, p_what text) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    r record;
    v_params jsonb := '{}';
    v text;
    v_part text;
begin
    for r in select * from dbsync._conninfo_parse(p_conninfo, p_what) loop
        v_params := v_params || jsonb_build_object(r.keyword, r.value);
    end loop;
    for r in select k.keyword, k.support, k.why, k.allowed, v_params ->> k.keyword as value
             from dbsync._conninfo_keywords() k
             where v_params ? k.keyword and v_params ->> k.keyword <> '' loop
        if r.support = 'no' and not (r.keyword = 'replication' and lower(r.value) in ('0', 'off', 'false', 'no')) then
            raise exception '%: "%" is not supported by dbsync', p_what, r.keyword
                using errcode = 'feature_not_supported', hint = r.why || '. Leave it out.';
        end if;
        if r.allowed is not null and not r.value = any (r.allowed) then
            raise exception '%: invalid % value', p_what, r.keyword
                using errcode = 'invalid_parameter_value',
                      hint = 'Valid values: ' || array_to_string(r.allowed, ', ') || '.';
        end if;
    end loop;
    for r in select k, case when k = 'port' then 1 else 0 end as min, case when k = 'port' then 65535 else 2147483647 end as max
             from unnest(array['port', 'connect_timeout', 'keepalives_idle', 'keepalives_interval', 'keepalives_count',
                               'tcp_user_timeout']) k loop
        v := v_params ->> r.k;
        continue when v is null or v = '';
        foreach v_part in array case when r.k = 'port' then string_to_array(v, ',') else array[v] end loop
            continue when v_part = '' and r.k = 'port';
            if v_part !~ E'^\\s*[+-]?\\d{1,10}\\s*$' or v_part::numeric < r.min or v_part::numeric > r.max then
                raise exception '%: invalid integer value for connection option "%"', p_what, r.k
                    using errcode = 'invalid_parameter_value',
                          hint = format('%s is a whole number from %s%s.', r.k, r.min,
                                        case when r.max < 2147483647 then ' to ' || r.max else '' end);
            end if;
        end loop;
    end loop;
    if coalesce(v_params ->> 'client_encoding', '') not in ('')
       and lower(v_params ->> 'client_encoding') !~ '^(utf-?8|unicode|auto)$' then
        raise exception '%: this client_encoding is not supported by dbsync', p_what
            using errcode = 'feature_not_supported',
                  hint = 'dbsync reads and writes text as UTF8: leave client_encoding out (or set UTF8).';
    end if;
    if v_params ->> 'gssencmode' = 'require' then
        raise exception '%: gssencmode=require is not supported by dbsync', p_what
            using errcode = 'feature_not_supported',
                  hint = 'dbsync''s sidecar (node-postgres) has no GSSAPI/Kerberos support; use sslmode for encryption.';
    end if;
    if v_params ->> 'sslcertmode' = 'require' then
        raise exception '%: sslcertmode=require is not supported by dbsync', p_what
            using errcode = 'feature_not_supported',
                  hint = 'node-postgres cannot tell whether the server asked for the client certificate; use sslcertmode=allow (the default).';
    end if;
    if v_params ->> 'min_protocol_version' = '3.2' then
        raise exception '%: min_protocol_version=3.2 is not supported by dbsync', p_what
            using errcode = 'feature_not_supported', hint = 'node-postgres speaks protocol 3.0; leave min_protocol_version out.';
    end if;
    if strpos(coalesce(v_params ->> 'host', '') || coalesce(v_params ->> 'hostaddr', '') || coalesce(v_params ->> 'port', ''), ',') > 0 then
        raise exception '%: several hosts or ports are not supported by dbsync', p_what
            using errcode = 'feature_not_supported',
                  hint = 'Name one host and one port (for failover, point a DNS name or a pooler at the current primary).';
    end if;
    if left(v_params ->> 'host', 1) = '@' then
        raise exception '%: abstract Unix sockets (host=@...) are not supported by dbsync', p_what
            using errcode = 'feature_not_supported', hint = 'Use a socket directory (host=/var/run/postgresql) or a TCP host.';
    end if;
    if v_params ->> 'sslrootcert' = 'system' and coalesce(v_params ->> 'sslmode', 'prefer') <> 'verify-full' then
        raise exception '%: weak sslmode "%" may not be used with sslrootcert=system (use "verify-full")', p_what,
                        coalesce(v_params ->> 'sslmode', 'prefer')
            using errcode = 'invalid_parameter_value',
                  hint = 'The system''s roots vouch for many hosts: only verify-full (certificate and host name) is safe with them; or name your own CA''s file in sslrootcert.';
    end if;
    if v_params ->> 'channel_binding' = 'require'
       and coalesce(v_params ->> 'sslmode', 'prefer') not in ('require', 'verify-ca', 'verify-full') then
        raise exception '%: channel_binding=require needs an encrypted connection that is known to be', p_what
            using errcode = 'invalid_parameter_value', hint = 'Set sslmode=require (or verify-ca, verify-full).';
    end if;
    if v_params ->> 'sslnegotiation' = 'direct'
       and coalesce(v_params ->> 'sslmode', 'prefer') not in ('require', 'verify-ca', 'verify-full') then
        raise exception '%: sslnegotiation=direct needs sslmode=require, verify-ca or verify-full', p_what
            using errcode = 'invalid_parameter_value',
                  hint = 'As in libpq: direct TLS cannot fall back to an unencrypted connection.';
    end if;
end
$$;
