-- 0034: batch_plan keeps each table's SQL in a setting of its own
-- (dbsync.plan_<table_id>), not one setting per group: a batch then reads only its
-- own tables' entries (a group's value of 1,000 tables took about 40 ms to read as
-- jsonb at every batch). The helpers' signatures change: the old ones go
-- (sql/functions/_plan_cache.sql creates the new ones).
drop function if exists dbsync._plan_cache(int);
drop function if exists dbsync._plan_cache_keep(int, jsonb, jsonb, jsonb);
