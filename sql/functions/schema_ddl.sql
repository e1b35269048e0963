-- dbsync.schema_ddl(group_name text default null) returns setof text
--   The statements that create the replicated tables (of one group, or all) on an
--   empty target, without anything of dbsync: no capture trigger, no event trigger,
--   no dbsync schema (pg_dump -s carries them, and they fail on a target). In order:
--   schemas; enum types and domains the columns use; sequences their defaults use;
--   tables with their columns (types, collations, defaults, identity, generated,
--   NOT NULL), primary keys, unique, check and exclusion constraints, partitioning
--   and every partition; foreign keys between the tables written (others are named
--   in a comment, not created); other indexes; sequence ownership. Other types
--   (composite, range), functions that defaults call, triggers, policies and grants
--   are the DBA's: a comment names the types. One statement per row, without the
--   final semicolon; comments on one line each, whatever the names in them
--   (dbsync._comment_line). The CLI face is `dbsync schema`.
--   Errors: unknown group.
--   Parameters: group_name.
--   Returns: a set of text.
--   Calls: dbsync._comment_line, dbsync._group_id. Tables touched: dbsync.tables (read).
create or replace function dbsync.schema_ddl(group_name text default null) returns setof text
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v_group int := case when group_name is null then null else dbsync._group_id(group_name, false) end;
    v_rels oid[];
    r record;
    v_cols text;
    v_cons text;
    v_schemas text[] := '{}';
begin
    -- Every table to write: the replicated ones and all their partitions (parents first).
    -- (pg_partition_tree lists nothing for a table that is not partitioned.)
    select array_agg(p.relid order by p.level, p.relid) into v_rels
    from (select pt.relid, min(pt.level) as level
          from dbsync.tables t,
               lateral (select t.relid, 0 as level
                        union all
                        select x.relid, x.level from pg_partition_tree(t.relid) x) pt
          where t.removed_at is null and (v_group is null or t.group_id = v_group)
          group by pt.relid) p;
    if v_rels is null then
        return;
    end if;

    -- Schemas.
    for r in select distinct n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where c.oid = any (v_rels) and n.nspname <> 'public' order by 1 loop
        return next format('create schema if not exists %I', r.nspname);
        v_schemas := v_schemas || r.nspname::text;
    end loop;

    -- Types the columns use, through arrays and domains: enums and domains are
    -- written (domains after what they are based on), others named.
    for r in
        with recursive used(typ, depth) as (
            select a.atttypid, 0 from pg_attribute a
            where a.attrelid = any (v_rels) and a.attnum > 0 and not a.attisdropped
            union
            select case when t.typcategory = 'A' then t.typelem else t.typbasetype end, u.depth + 1
            from used u join pg_type t on t.oid = u.typ
            where (t.typcategory = 'A' and t.typelem <> 0) or t.typtype = 'd'
        )
        select t.oid, t.typtype, t.typnamespace, n.nspname, format_type(t.oid, null) as name, max(u.depth) as depth
        from used u join pg_type t on t.oid = u.typ join pg_namespace n on n.oid = t.typnamespace
        where n.nspname not in ('pg_catalog', 'information_schema') and t.typcategory <> 'A'
        group by t.oid, t.typtype, t.typnamespace, n.nspname
        order by max(u.depth) desc, t.oid
    loop
        if r.nspname <> 'public' and not r.nspname = any (v_schemas) then
            return next format('create schema if not exists %I', r.nspname);
            v_schemas := v_schemas || r.nspname::text;
        end if;
        if r.typtype = 'e' then
            return next format('create type %s as enum (%s)', r.name,
                               (select string_agg(quote_literal(e.enumlabel), ', ' order by e.enumsortorder)
                                from pg_enum e where e.enumtypid = r.oid));
        elsif r.typtype = 'd' then
            return next (select format('create domain %s as %s%s%s%s%s', r.name, format_type(t.typbasetype, t.typtypmod),
                                       case when t.typcollation <> 0 and t.typcollation <> bt.typcollation
                                            then ' collate ' || (select format('%I.%I', cn.nspname, co.collname) from pg_collation co
                                                                 join pg_namespace cn on cn.oid = co.collnamespace where co.oid = t.typcollation)
                                            else '' end,
                                       case when t.typdefault is not null then ' default ' || t.typdefault else '' end,
                                       case when t.typnotnull then ' not null' else '' end,
                                       coalesce((select string_agg(format(' constraint %I %s', c.conname, pg_get_constraintdef(c.oid)), '' order by c.conname)
                                                 from pg_constraint c where c.contypid = t.oid and c.contype = 'c'), ''))
                         from pg_type t join pg_type bt on bt.oid = t.typbasetype where t.oid = r.oid);
        else
            return next dbsync._comment_line(format('type %s (%s) is used by the tables: create it on the target before the statements below',
                               r.name, case r.typtype when 'c' then 'composite' when 'r' then 'range' when 'm' then 'multirange'
                                                      when 'b' then 'base type, from an extension?' else r.typtype::text end));
        end if;
    end loop;

    -- Sequences that column defaults use (identity columns make their own).
    for r in select distinct s.seqrelid, s.seqrelid::regclass::text as name, format_type(s.seqtypid, null) as typ,
                    s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle
             from pg_depend d
             join pg_attrdef ad on ad.oid = d.objid and d.classid = 'pg_attrdef'::regclass
             join pg_sequence s on s.seqrelid = d.refobjid and d.refclassid = 'pg_class'::regclass
             where ad.adrelid = any (v_rels)
               and not exists (select from pg_depend i where i.objid = s.seqrelid and i.deptype = 'i')
             order by 2 loop
        return next format('create sequence if not exists %s as %s increment by %s minvalue %s maxvalue %s start with %s cache %s%s',
                           r.name, r.typ, r.seqincrement, r.seqmin, r.seqmax, r.seqstart, r.seqcache,
                           case when r.seqcycle then ' cycle' else '' end);
    end loop;

    -- Tables, parents before partitions.
    for r in select c.oid, c.oid::regclass::text as name, c.relkind, c.relispartition, c.relpersistence,
                    (select i.inhparent::regclass::text from pg_inherits i where i.inhrelid = c.oid) as parent,
                    pg_get_expr(c.relpartbound, c.oid) as bound,
                    case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end as partkey
             from unnest(v_rels) with ordinality u(relid, o) join pg_class c on c.oid = u.relid
             order by u.o loop
        if r.relispartition then
            return next format('create %stable %s partition of %s %s%s',
                               case when r.relpersistence = 'u' then 'unlogged ' else '' end,
                               r.name, r.parent, r.bound, coalesce(' partition by ' || r.partkey, ''));
            -- Constraints of its own (a partition's CHECK); the parent's come with it.
            for v_cons in select format('alter table %s add constraint %I %s', r.name, c.conname, pg_get_constraintdef(c.oid))
                          from pg_constraint c where c.conrelid = r.oid and c.conislocal and c.contype in ('c', 'u', 'x', 'p')
                            and c.conparentid = 0 order by c.conname loop
                return next v_cons;
            end loop;
            continue;
        end if;
        select string_agg(format('%I %s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                 case when a.attcollation <> 0 and a.attcollation <> t.typcollation
                                      then ' collate ' || (select format('%I.%I', cn.nspname, co.collname) from pg_collation co
                                                           join pg_namespace cn on cn.oid = co.collnamespace where co.oid = a.attcollation)
                                      else '' end,
                                 case when a.attgenerated = 's' then format(' generated always as (%s) stored', pg_get_expr(ad.adbin, ad.adrelid))
                                      when a.attgenerated = 'v' then format(' generated always as (%s) virtual', pg_get_expr(ad.adbin, ad.adrelid))
                                      when a.attidentity = 'a' then ' generated always as identity'
                                      when a.attidentity = 'd' then ' generated by default as identity'
                                      when ad.adbin is not null then ' default ' || pg_get_expr(ad.adbin, ad.adrelid)
                                      else '' end,
                                 case when a.attnotnull then ' not null' else '' end), ', ' order by a.attnum)
          into v_cols
        from pg_attribute a
        join pg_type t on t.oid = a.atttypid
        left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
        where a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped;
        select string_agg(format('constraint %I %s', c.conname, pg_get_constraintdef(c.oid)), ', '
                          order by case c.contype when 'p' then 0 when 'u' then 1 else 2 end, c.conname)
          into v_cons
        from pg_constraint c where c.conrelid = r.oid and c.contype in ('p', 'u', 'c', 'x') and c.conislocal;
        return next format('create %stable %s (%s%s)%s', case when r.relpersistence = 'u' then 'unlogged ' else '' end,
                           r.name, coalesce(v_cols, ''), coalesce(', ' || v_cons, ''), coalesce(' partition by ' || r.partkey, ''));
    end loop;

    -- Foreign keys, once every table exists; only between the tables written.
    for r in select c.conrelid::regclass::text as tbl, c.conname, pg_get_constraintdef(c.oid) as def,
                    c.confrelid = any (v_rels) as inside, c.confrelid::regclass::text as ref
             from pg_constraint c
             where c.conrelid = any (v_rels) and c.contype = 'f' and c.conislocal and c.conparentid = 0
             order by 1, 2 loop
        if r.inside then
            return next format('alter table %s add constraint %I %s', r.tbl, r.conname, r.def);
        else
            return next dbsync._comment_line(format('foreign key %I of %s references %s, which is not among these tables: not created',
                                                    r.conname, r.tbl, r.ref));
        end if;
    end loop;

    -- Other indexes (not those of constraints, nor a partitioned index's partitions).
    -- On a partitioned table, without ONLY: the index is made on every partition too.
    for r in select replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ') as def
             from pg_index i
             where i.indrelid = any (v_rels)
               and not exists (select from pg_constraint c where c.conindid = i.indexrelid and c.contype in ('p', 'u', 'x'))
               and not exists (select from pg_inherits h where h.inhrelid = i.indexrelid)
             order by i.indrelid, i.indexrelid loop
        return next r.def;
    end loop;

    -- Sequences owned by columns (serial): owned there too.
    for r in select d.objid::regclass::text as seq, format('%s.%I', d.refobjid::regclass, a.attname) as col
             from pg_depend d
             join pg_class s on s.oid = d.objid and s.relkind = 'S'
             join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
             where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
               and d.refobjid = any (v_rels) and d.deptype = 'a'
             order by 1 loop
        return next format('alter sequence %s owned by %s', r.seq, r.col);
    end loop;
end
$$;
