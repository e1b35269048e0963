-- dbsync._conninfo_parse(p_conninfo text, p_what text) returns table (keyword text, value text)
--   The keywords and values of a libpq connection string, read as libpq's
--   conninfo_parse and conninfo_uri_parse read them: keyword=value pairs (values
--   single-quoted or backslash-escaped) or a postgres:// / postgresql:// URI
--   (user:password@host:port/dbname?keyword=value&..., percent-decoded; ssl=true
--   means sslmode=require). In order; a later keyword wins. Raises, with libpq's
--   words prefixed by p_what, on a malformed string or a keyword libpq does not know
--   (the hint names the nearest one). Never echoes a value: it may be a password.
--   The sidecar's twin is parseConninfo in src/conninfo.ts.
--   Parameters: p_conninfo, p_what.
--   Returns: rows of (keyword, value).
--   Calls: dbsync._conninfo_known, dbsync._uri_decode. Tables touched: none.
create or replace function dbsync._conninfo_parse(p_conninfo text, p_what text)
returns table (keyword text, value text)
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    s text := p_conninfo;
    n int := length(p_conninfo);
    i int := 1;
    c text;
    k text;
    v text;
    v_rest text;
    v_auth text;
    v_hosts text;
    v_userinfo text;
    v_host text;
    v_port text;
    v_hl text[] := '{}';
    v_pl text[] := '{}';
    v_param text;
    v_pos int;
    v_pairs text[][] := '{}';
    v_spec text;
    v_fmt constant text := 'Write keyword=value pairs separated by spaces (e.g. host=replica dbname=app user=dbsync), or a URI postgresql://user@host:5432/dbname.';
begin
    -- Read character by character: bound the work (no conninfo is this long).
    if n > 10000 then
        raise exception '%: longer than 10000 characters', p_what
            using errcode = 'invalid_parameter_value', hint = v_fmt;
    end if;
    if s ~ '^postgres(ql)?://' then
        v_rest := regexp_replace(s, '^postgres(ql)?://', '');
        v_pos := coalesce(nullif(least(nullif(strpos(v_rest, '/'), 0), nullif(strpos(v_rest, '?'), 0)), 0), 0);
        if v_pos = 0 then
            v_auth := v_rest;
            v_rest := '';
        else
            v_auth := left(v_rest, v_pos - 1);
            v_rest := substr(v_rest, v_pos);
        end if;
        v_hosts := v_auth;
        if strpos(v_auth, '@') > 0 then
            v_userinfo := substring(v_auth from '^(.*)@');
            v_hosts := substring(v_auth from '^.*@(.*)$');
            if strpos(v_userinfo, ':') > 0 then
                if split_part(v_userinfo, ':', 1) <> '' then
                    keyword := 'user'; value := dbsync._uri_decode(split_part(v_userinfo, ':', 1), p_what); return next;
                end if;
                keyword := 'password'; value := dbsync._uri_decode(substr(v_userinfo, strpos(v_userinfo, ':') + 1), p_what); return next;
            elsif v_userinfo <> '' then
                keyword := 'user'; value := dbsync._uri_decode(v_userinfo, p_what); return next;
            end if;
        end if;
        if v_hosts <> '' then
            foreach v_spec in array string_to_array(v_hosts, ',') loop
                if left(v_spec, 1) = '[' then
                    if strpos(v_spec, ']') = 0 then
                        raise exception '%: end of string reached when looking for matching "]" in IPv6 host address in URI', p_what
                            using errcode = 'invalid_parameter_value', hint = v_fmt;
                    end if;
                    v_host := substr(v_spec, 2, strpos(v_spec, ']') - 2);
                    if v_host = '' then
                        raise exception '%: IPv6 host address may not be empty in URI', p_what
                            using errcode = 'invalid_parameter_value', hint = v_fmt;
                    end if;
                    v_port := substr(v_spec, strpos(v_spec, ']') + 1);
                    if v_port <> '' and left(v_port, 1) <> ':' then
                        raise exception '%: unexpected character after the IPv6 host address in URI (expected ":" or "/")', p_what
                            using errcode = 'invalid_parameter_value', hint = v_fmt;
                    end if;
                    v_port := substr(v_port, 2);
                elsif strpos(v_spec, ':') > 0 then
                    v_host := split_part(v_spec, ':', 1);
                    v_port := substr(v_spec, strpos(v_spec, ':') + 1);
                else
                    v_host := v_spec;
                    v_port := '';
                end if;
                v_hl := v_hl || dbsync._uri_decode(v_host, p_what);
                v_pl := v_pl || dbsync._uri_decode(v_port, p_what);
            end loop;
            if exists (select from unnest(v_hl) h where h <> '') then
                keyword := 'host'; value := array_to_string(v_hl, ','); return next;
            end if;
            if exists (select from unnest(v_pl) p where p <> '') then
                keyword := 'port'; value := array_to_string(v_pl, ','); return next;
            end if;
        end if;
        if left(v_rest, 1) = '/' then
            v_pos := strpos(v_rest, '?');
            v := case when v_pos = 0 then substr(v_rest, 2) else substr(v_rest, 2, v_pos - 2) end;
            if v <> '' then
                keyword := 'dbname'; value := dbsync._uri_decode(v, p_what); return next;
            end if;
            v_rest := case when v_pos = 0 then '' else substr(v_rest, v_pos + 1) end;
        elsif left(v_rest, 1) = '?' then
            v_rest := substr(v_rest, 2);
        end if;
        foreach v_param in array string_to_array(v_rest, '&') loop
            continue when v_param = '';
            if strpos(v_param, '=') = 0 then
                raise exception '%: missing key/value separator "=" in URI query parameter', p_what
                    using errcode = 'invalid_parameter_value', hint = v_fmt;
            end if;
            if strpos(substr(v_param, strpos(v_param, '=') + 1), '=') > 0 then
                raise exception '%: extra key/value separator "=" in URI query parameter', p_what
                    using errcode = 'invalid_parameter_value', hint = v_fmt;
            end if;
            k := dbsync._uri_decode(split_part(v_param, '=', 1), p_what);
            v := dbsync._uri_decode(substr(v_param, strpos(v_param, '=') + 1), p_what);
            if k = 'ssl' and v = 'true' then
                k := 'sslmode';
                v := 'require';
            end if;
            perform dbsync._conninfo_known(k, p_what || ': invalid URI query parameter:');
            keyword := k; value := v; return next;
        end loop;
        return;
    end if;

    while i <= n loop
        c := substr(s, i, 1);
        if c ~ E'^\\s$' then
            i := i + 1;
            continue;
        end if;
        k := '';
        while i <= n and substr(s, i, 1) <> '=' and substr(s, i, 1) !~ E'^\\s$' loop
            k := k || substr(s, i, 1);
            i := i + 1;
        end loop;
        while i <= n and substr(s, i, 1) ~ E'^\\s$' loop
            i := i + 1;
        end loop;
        if i > n or substr(s, i, 1) <> '=' then
            raise exception '%: missing "=" after "%" in connection info string', p_what, left(k, 40)
                using errcode = 'invalid_parameter_value', hint = v_fmt;
        end if;
        i := i + 1;
        while i <= n and substr(s, i, 1) ~ E'^\\s$' loop
            i := i + 1;
        end loop;
        v := '';
        if i > n or substr(s, i, 1) <> '''' then
            while i <= n and substr(s, i, 1) !~ E'^\\s$' loop
                if substr(s, i, 1) = chr(92) then
                    i := i + 1;
                    if i <= n then
                        v := v || substr(s, i, 1);
                        i := i + 1;
                    end if;
                else
                    v := v || substr(s, i, 1);
                    i := i + 1;
                end if;
            end loop;
        else
            i := i + 1;
            loop
                if i > n then
                    raise exception '%: unterminated quoted string in connection info string', p_what
                        using errcode = 'invalid_parameter_value',
                              hint = 'Close the value''s single quote; write ' || chr(92) || ''' for a quote inside it.';
                end if;
                c := substr(s, i, 1);
                if c = chr(92) then
                    i := i + 1;
                    if i <= n then
                        v := v || substr(s, i, 1);
                        i := i + 1;
                    end if;
                    continue;
                end if;
                i := i + 1;
                exit when c = '''';
                v := v || c;
            end loop;
        end if;
        perform dbsync._conninfo_known(k, p_what || ': invalid connection option');
        keyword := k; value := v; return next;
    end loop;
end
$$;
