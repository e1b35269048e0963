-- dbsync.unreplicated_ddl: changes to replicated tables made outside
-- dbsync.execute_ddl. Each must be repeated by hand on every target of the group.
create or replace view dbsync.unreplicated_ddl as
select l.logged_at, g.name as group_name, l.table_name, l.command_tag, l.statement, l.role_name
from dbsync.ddl_log l
left join dbsync.groups g using (group_id)
where not l.via_execute_ddl;
