// The schema the two-reader tests (apply-readers, apply-pipeline-attacks) write to:
// a and b alike (one stage on the target, so one stream), c and d each with columns
// of their own, so that a big batch splits into streams of several tables and of one.
export const TWO_STREAMS_DDL = `create table a (id int primary key, v text);
             create table b (id int primary key, v text);
             create table c (id int primary key, n int, w text);
             create table d (k text primary key, x int, y int, z text)`;
export const TWO_STREAMS_TABLES = ["a", "b", "c", "d"];
