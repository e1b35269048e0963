-- 0024: every tick gets a key, a random number below 2^53 (exact in JavaScript),
-- set when the tick is made. Tick ids alone do not name a tick: a source that fails
-- over to a standby that lagged (or is restored from a backup) makes its ticks again
-- under ids a target may already stand at, and a target's position that names
-- another tick than the source's would make the sidecar skip or repeat changes.
-- The target records the key with its position (dbsync.applied.tick_key), and
-- target_position refuses a key that is not the source's. Ticks made before this
-- migration have no key (null: unknown, accepted). Added without a default first: a
-- volatile default would give every existing tick a key, made up after the fact.
alter table dbsync.ticks add column tick_key bigint;
alter table dbsync.ticks alter column tick_key set default pg_catalog.floor(pg_catalog.random() * 9007199254740992)::bigint;
-- Their results (begin_batch, sidecar_subscription) or arguments (target_position)
-- change: sql/functions creates them again.
drop function if exists dbsync.begin_batch(text, bigint);
drop function if exists dbsync.target_position(int, bigint);
drop function if exists dbsync.sidecar_subscription(text);
