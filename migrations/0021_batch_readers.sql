-- A big batch is read by several readers at its snapshot, each its own tables:
-- batch_plan takes how many readers the sidecar may use and the events a reader's
-- part must have (p_readers, p_split_events), and batch_keys the shapes a reader
-- hashes (p_shapes). The old signatures go, so that their callers resolve to the
-- new ones (both new parameters have defaults: an older sidecar still gets one
-- stream).
drop function if exists dbsync.batch_plan(int, bigint, bigint, bigint, bigint);
drop function if exists dbsync.batch_keys(int, bigint);
