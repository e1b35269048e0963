-- 0022: a row that says the source's unlogged tables still hold their rows. Crash
-- recovery empties every unlogged table (and a standby promoted to be the source
-- has them empty) without firing a trigger, so a replicated unlogged table lost its
-- rows on the source while its targets kept them. This table is unlogged too: its
-- row goes with theirs, and dbsync._unlogged_lost sees it gone.
create unlogged table dbsync.unlogged_intact (intact boolean primary key default true check (intact));
insert into dbsync.unlogged_intact default values;
