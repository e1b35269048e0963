-- Privileges, re-applied on every migrate. dbsync belongs to the role that ran
-- `dbsync migrate`; that role (or whoever it grants) administers replication.
-- Application roles need nothing here: capture trigger functions are SECURITY
-- DEFINER. PUBLIC can read nothing: events hold row data, subscriptions hold
-- conninfo. Monitoring roles (dbsync.grant_monitor) read the two status views and
-- may wait_for_sync; sidecar roles (dbsync.grant_sidecar) get what `dbsync run` uses.
revoke all on schema dbsync from public;
revoke all on all tables in schema dbsync from public;
revoke all on all sequences in schema dbsync from public;
revoke all on all functions in schema dbsync from public;
-- dbsync.status reads the queue sequences through this SECURITY DEFINER helper,
-- called with the view reader's rights: it must stay executable for a monitoring
-- role that was granted only the view. It reveals an event counter, nothing else.
grant execute on function dbsync._last_ev_id(int) to public;
-- Likewise the tables held by DDL outside execute_ddl (dbsync.ddl_log): names the
-- status views show their reader anyway.
grant execute on function dbsync._held_tables() to public;
-- Every role that alters a replicated table fires the DDL event trigger; a
-- function returning event_trigger cannot be called in any other way.
grant execute on function dbsync._on_ddl() to public;
grant execute on function dbsync._on_drop() to public;
grant execute on function dbsync._on_rewrite() to public;
-- The WHEN clause of a plain table's replica-mode capture trigger inlines this as
-- the writer: a statement's start time and trigger depth, nothing secret.
grant execute on function dbsync._statement_mark(int) to public;
-- Which dbsync installed this: nothing secret.
grant execute on function dbsync.version() to public;
-- The status views call these with their reader's rights (as _last_ev_id): they
-- only format text and decide what it may show; a monitoring role granted just the
-- views by hand must still be able to read them.
grant execute on function dbsync._shows_values() to public;
grant execute on function dbsync._without_values(text, boolean) to public;
grant execute on function dbsync._differences_message(text, name, name, bigint, bigint, text[], boolean) to public;
grant execute on function dbsync._held_message(bigint, text, text) to public;
-- Sidecar roles (dbsync.grant_sidecar) get their rights again: functions re-created
-- by this migrate, tables added since. migrate runs this once more after
-- graphile-worker's own migrations, for its schema.
select dbsync._regrant_sidecars();
-- Monitoring roles (dbsync.grant_monitor) likewise.
select dbsync._regrant_monitors();
