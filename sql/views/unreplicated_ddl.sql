-- dbsync.unreplicated_ddl: changes to replicated tables made outside
-- dbsync.execute_ddl, not yet acknowledged. Each must be repeated by hand on every
-- target of the group; then dbsync.acknowledge_ddl(ddl_id) takes it off this list.
-- role_name: the session's login role (session_user) that ran the DDL.
create or replace view dbsync.unreplicated_ddl as
select l.logged_at, g.name as group_name, l.table_name, l.command_tag, l.statement, l.role_name, l.ddl_id
from dbsync.ddl_log l
left join dbsync.groups g using (group_id)
where not l.via_execute_ddl and l.acknowledged_at is null;
