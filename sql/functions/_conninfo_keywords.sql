-- dbsync._conninfo_keywords() returns table (keyword text, support text, why text, allowed text[])
--   libpq's connection keywords (PostgreSQL 14 to 18) and what dbsync's sidecar does
--   with each: 'yes' (as libpq), 'no-op' (accepted, no effect in dbsync: why says
--   why), 'no' (refused by add_subscription: why says why). allowed: the values
--   libpq accepts for an enumerated keyword. The sidecar's copy is LIBPQ_KEYWORDS,
--   UNSUPPORTED_WHY and ENUM_VALUES in src/conninfo.ts; test/conninfo.test.ts keeps
--   them equal.
--   Parameters: none.
--   Returns: rows of (keyword, support, why, allowed).
--   Calls: nothing. Tables touched: none.
create or replace function dbsync._conninfo_keywords()
returns table (keyword text, support text, why text, allowed text[])
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select k.keyword, k.support, k.why, k.allowed
    from (values
        ('host', 'yes', null, null::text[]),
        ('hostaddr', 'yes', null, null),
        ('port', 'yes', null, null),
        ('dbname', 'yes', null, null),
        ('user', 'yes', null, null),
        ('password', 'yes', null, null),
        ('passfile', 'yes', null, null),
        ('service', 'yes', null, null),
        ('connect_timeout', 'yes', null, null),
        ('client_encoding', 'yes', null, null),
        ('options', 'yes', null, null),
        ('application_name', 'yes', null, null),
        ('fallback_application_name', 'yes', null, null),
        ('keepalives', 'yes', null, array['0', '1']),
        ('keepalives_idle', 'yes', null, null),
        ('keepalives_interval', 'no-op', 'Node.js sets only the idle time of TCP keepalives; dbsync also watches every link itself (DBSYNC_QUERY_TIMEOUT_MS)', null),
        ('keepalives_count', 'no-op', 'Node.js sets only the idle time of TCP keepalives; dbsync also watches every link itself (DBSYNC_QUERY_TIMEOUT_MS)', null),
        ('tcp_user_timeout', 'no-op', 'Node.js cannot set TCP_USER_TIMEOUT; dbsync watches every link itself (DBSYNC_QUERY_TIMEOUT_MS)', null),
        ('sslmode', 'yes', null, array['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']),
        ('sslnegotiation', 'yes', null, array['postgres', 'direct']),
        ('sslcompression', 'no-op', 'as in libpq with current OpenSSL, TLS compression is never used', array['0', '1']),
        ('sslcert', 'yes', null, null),
        ('sslkey', 'yes', null, null),
        ('sslpassword', 'yes', null, null),
        ('sslcertmode', 'yes', null, array['disable', 'allow', 'require']),
        ('sslrootcert', 'yes', null, null),
        ('sslcrl', 'yes', null, null),
        ('sslcrldir', 'yes', null, null),
        ('sslsni', 'yes', null, array['0', '1']),
        ('ssl_min_protocol_version', 'yes', null, array['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']),
        ('ssl_max_protocol_version', 'yes', null, array['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']),
        ('sslkeylogfile', 'no', 'TLS key logging is a debugging aid dbsync does not offer', null),
        ('channel_binding', 'yes', null, array['disable', 'prefer', 'require']),
        ('gssencmode', 'yes', null, array['disable', 'prefer', 'require']),
        ('krbsrvname', 'no', 'dbsync''s sidecar (node-postgres) has no GSSAPI/Kerberos support; use password, SCRAM or certificate authentication', null),
        ('gsslib', 'no', 'dbsync''s sidecar (node-postgres) has no GSSAPI/Kerberos support; use password, SCRAM or certificate authentication', null),
        ('gssdelegation', 'no', 'dbsync''s sidecar (node-postgres) has no GSSAPI/Kerberos support; use password, SCRAM or certificate authentication', null),
        ('requirepeer', 'no', 'node-postgres cannot read a Unix socket''s peer credentials', null),
        ('require_auth', 'no', 'node-postgres cannot restrict the authentication methods it accepts', null),
        ('target_session_attrs', 'yes', null, array['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby']),
        ('load_balance_hosts', 'yes', null, array['disable', 'random']),
        ('replication', 'no', 'dbsync connects as a normal client, never as a replication client', null),
        ('min_protocol_version', 'yes', null, array['3.0', '3.2', 'latest']),
        ('max_protocol_version', 'yes', null, array['3.0', '3.2', 'latest']),
        ('scram_client_key', 'no', 'it serves pass-through authentication (postgres_fdw, dblink), not clients like dbsync', null),
        ('scram_server_key', 'no', 'it serves pass-through authentication (postgres_fdw, dblink), not clients like dbsync', null),
        ('oauth_issuer', 'no', 'node-postgres has no OAuth support', null),
        ('oauth_client_id', 'no', 'node-postgres has no OAuth support', null),
        ('oauth_client_secret', 'no', 'node-postgres has no OAuth support', null),
        ('oauth_scope', 'no', 'node-postgres has no OAuth support', null)
    ) as k(keyword, support, why, allowed)
$$;
