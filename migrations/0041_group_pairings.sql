-- 0041: a row per group that add_table and add_subscription both write
-- (dbsync._pair_group): each pairs its new row with the other's rows it sees, and a
-- REPEATABLE READ transaction whose snapshot predates the other's commit saw none of
-- them and paired silently wrong; writing one row makes it fail with a serialization
-- failure instead.
create table dbsync.group_pairings (
    group_id int primary key references dbsync.groups on delete cascade
);
