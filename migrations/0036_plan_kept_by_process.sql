-- 0036: each streaming table's SQL that batch_plan built is kept by the sidecar's
-- process and given back with its next batches (batch_plan's p_kept and "kept"),
-- not in a setting of the reader's session: a process's pooled readers each serve
-- any of its subscriptions, so a session seldom planned the same group twice.
-- batch_plan takes one parameter more (sql/functions/batch_plan.sql creates it;
-- the old one beside it would make calls with fewer arguments ambiguous), and the
-- session's helpers go.
drop function if exists dbsync.batch_plan(int, bigint, bigint, bigint, bigint, int, bigint, boolean);
drop function if exists dbsync._plan_cache(int, text, text);
drop function if exists dbsync._plan_cache_keep(int, text, text, jsonb);
drop function if exists dbsync._plan_cache_token();
