-- 0007: a batch's keys are read in one scan of its events for all its tables
-- (dbsync.batch_keys(group, from)); the per-shape form it replaces is dropped so
-- that nothing can call it.
drop function if exists dbsync.batch_keys(int, bigint, int);
