-- 0023: carried sequences dropped on the source before dbsync forgot them at the drop
-- (_on_drop, since this version). Their rows pointed at an object id that no longer
-- exists: the sidecar skipped them without a word, and a new sequence given that id
-- by PostgreSQL could not be added (relid is unique), or would have been carried under
-- its own name as if it were the old one.
delete from dbsync.sequences q
where not exists (select from pg_catalog.pg_class c where c.oid = q.relid and c.relkind = 'S');
