-- 0032: dbsync.sidecar_subscription returns the key of the position's tick as a
-- bigint, as dbsync.ticks holds it, not as a float8: a float8's text is rounded to
-- 15 digits in a session whose extra_float_digits is below 1, and a key has up to
-- 16 (the sidecar cast it back to bigint text itself, which only fixed its own
-- reads). Its result changes: sql/functions creates it again. A sidecar of before
-- reads the column as bigint text (position_key::bigint::text) and goes on working.
drop function if exists dbsync.sidecar_subscription(text);
