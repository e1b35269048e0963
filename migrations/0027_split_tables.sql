-- 0027: one heavy table of a big batch read by several readers, each the keys of
-- its share (hashtext of the key's text modulo the shares): batch_plan takes
-- p_split_tables, batch_keys the shapes split and the reader's share (p_split,
-- p_share, p_shares). The old signatures go, so that their callers resolve to the
-- new ones (the new parameters have defaults: an older sidecar still reads each
-- table with one reader).
drop function if exists dbsync.batch_plan(int, bigint, bigint, bigint, bigint, int, bigint);
drop function if exists dbsync.batch_keys(int, bigint, int[]);
