-- execute_ddl records the settings it read before the DDL ran: _queue_ddl takes them
-- (sql/functions/_queue_ddl.sql); its three-argument form is gone.
drop function if exists dbsync._queue_ddl(int, text, text);
