-- 0029: the sidecar's poll with verdicts kept between polls (dbsync.sidecar_poll).
-- _with_work takes the groups the poll already judged: sql/functions creates it
-- again with its new arguments (an overload beside the old one would make
-- sidecar_work's call of it ambiguous).
drop function if exists dbsync._with_work(int);
