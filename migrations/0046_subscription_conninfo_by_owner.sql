-- 0046: whether a subscription's target conninfo was given by the dbsync owner
-- (dbsync.add_subscription). A conninfo given by another role (an admin role granted
-- EXECUTE) must carry its own password, and the sidecar connects with that password
-- only, to a server that asks for it: it fills in nothing from its own environment,
-- files or host (PGPASSWORD, ~/.pgpass, PGSERVICE, a client certificate, trust or peer
-- logins), which an admin role's conninfo aimed at its own server had the sidecar hand
-- over. Subscriptions made before were accepted as the owner's (true).
alter table dbsync.subscriptions add column conninfo_by_owner boolean not null default true;
-- Both return it now.
drop function if exists dbsync.sidecar_subscription(text);
drop function if exists dbsync._verify_job(bigint);
