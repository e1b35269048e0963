-- 0031: the OID of dbsync.groups in the database dbsync was installed in. A
-- database moved to another server by pg_dump and pg_restore brings dbsync's tables
-- along, but what they hold names the old database's objects and transactions:
-- dbsync.tables.relid and dbsync.sequences.relid are OIDs (the restored tables have
-- other ones: a plan joined the table to no relation and silently left it out, or to
-- another one), and the ticks' snapshots and the events' txids are the old
-- cluster's, while the new one counts its own, often from far below (a change
-- written there read as committed before the position, and no batch took it). A
-- physical copy (standby, PITR, cp -a of the data directory) and pg_upgrade keep
-- both OIDs and transaction ids; a restore gives dbsync.groups another OID, which
-- dbsync._restored_by_dump notices.
create table dbsync.installed_at (groups_oid oid not null);
insert into dbsync.installed_at (groups_oid) values ('dbsync.groups'::regclass);
