-- begin_batch takes the position its batch starts at (p_from), so that the sidecar can
-- take the next batch's tick while the target commits the batch before it
-- (sql/functions/begin_batch.sql); its one-argument form is gone.
drop function if exists dbsync.begin_batch(text);
