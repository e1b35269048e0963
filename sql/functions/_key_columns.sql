-- dbsync._key_columns(tbl regclass, key_columns text[]) returns text[]
--   The columns that identify a row of tbl: its primary key when key_columns is
--   NULL, else key_columns after checking that they exist, are NOT NULL, are not
--   generated, and that a unique index (no predicate, no expression) covers a
--   subset of them, which makes the set unique.
--   Parameters: tbl, key_columns.
--   Returns: text[].
--   Calls: dbsync._key_is_unique. Tables touched: none.
create or replace function dbsync._key_columns(tbl regclass, key_columns text[]) returns text[]
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v_keys text[];
    v_col text;
    v_att record;
begin
    if key_columns is null then
        select array_agg(a.attname::text order by k.ord) into v_keys
        from pg_index i
        cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
        where i.indrelid = tbl and i.indisprimary;
        if v_keys is null then
            -- A unique index on NOT NULL stored columns would do: name it.
            select format('key_columns => array[%s]', string_agg(quote_literal(a.attname), ', ' order by k.ord))
              into v_col
            from (select i.indexrelid, i.indkey from pg_index i
                  where i.indrelid = tbl and i.indisunique and i.indisvalid and i.indpred is null and i.indexprs is null
                    and not exists (select from pg_attribute a
                                    where a.attrelid = tbl and a.attnum = any (i.indkey::int2[])
                                      and (not a.attnotnull or a.attgenerated <> ''))
                  order by i.indnatts, i.indexrelid limit 1) i
            cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
            join pg_attribute a on a.attrelid = tbl and a.attnum = k.attnum
            group by i.indexrelid;
            raise exception 'add_table: table % has no primary key', tbl
                using errcode = 'invalid_table_definition',
                      hint = case when (select c.relkind from pg_class c where c.oid = tbl) = 'p'
                                       and not dbsync._server_has('partitioned_unique')
                                  then 'A partitioned table has no primary key on PostgreSQL 10: pass key_columns => array[...] '
                                       'naming NOT NULL columns that include the partition key and that a unique index of '
                                       'every partition covers.'
                                  else 'dbsync must identify each row. Either add a primary key (alter table ' || tbl::text || ' add primary key (...)), '
                                       || coalesce('or pass ' || v_col || ' (a unique index on NOT NULL columns covers them), ',
                                                   'or pass key_columns => array[...] naming NOT NULL columns covered by a unique index, ')
                                       || 'or leave the table out of replication.' end;
        end if;
        -- A generated column is computed by each side from the others: the sidecar
        -- copies stored columns only, so it cannot identify rows.
        select a.attname into v_col
        from pg_attribute a
        where a.attrelid = tbl and a.attname = any (v_keys) and a.attgenerated <> ''
        limit 1;
        if v_col is not null then
            raise exception 'add_table: primary key column "%" of % is a generated column', v_col, tbl
                using errcode = 'invalid_table_definition',
                      hint = 'Pass key_columns => array[...] naming stored NOT NULL columns covered by a unique index.';
        end if;
        return v_keys;
    end if;

    if cardinality(key_columns) = 0 or array_position(key_columns, null) is not null then
        raise exception 'add_table: key_columns of % must name at least one column and no NULLs', tbl
            using errcode = 'invalid_parameter_value',
                  hint = 'Pass key_columns => NULL to use the primary key, or name NOT NULL columns covered by a unique index.';
    end if;
    foreach v_col in array key_columns loop
        select a.attnotnull, a.attgenerated into v_att
        from pg_attribute a
        where a.attrelid = tbl and a.attname = v_col and a.attnum > 0 and not a.attisdropped;
        if not found then
            raise exception 'add_table: key column "%" does not exist in %', v_col, tbl
                using errcode = 'undefined_column',
                      hint = E'key_columns are column names, case-sensitive as stored (see \\d of the table).';
        end if;
        if not v_att.attnotnull then
            raise exception 'add_table: key column "%" of % is nullable', v_col, tbl
                using errcode = 'invalid_table_definition',
                      hint = format('Key columns must be NOT NULL: alter table %s alter column %I set not null.', tbl, v_col);
        end if;
        if v_att.attgenerated <> '' then
            raise exception 'add_table: key column "%" of % is a generated column', v_col, tbl
                using errcode = 'invalid_table_definition',
                      hint = 'Generated columns are not captured; name stored columns as key_columns.';
        end if;
    end loop;
    if not dbsync._key_is_unique(tbl, key_columns) then
        raise exception 'add_table: key_columns % of % are not unique', key_columns, tbl
            using errcode = 'invalid_table_definition',
                  hint = case when (select c.relkind from pg_class c where c.oid = tbl) = 'p'
                                   and not dbsync._server_has('partitioned_unique')
                              then 'On PostgreSQL 10 the key of a partitioned table must include its partition key, '
                                   'and every partition needs a unique index on these columns (or a subset of them).'
                              else 'Create a unique index on these columns (or a subset of them) first.' end;
    end if;
    return key_columns;
end
$$;
