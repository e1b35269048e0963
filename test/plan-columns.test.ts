// batch_plan builds the SQL for the text of each column once per batch, by type and
// name (tables alike share it): tables of one batch whose columns have the same names
// with other types, or the same types under other names, must each be read by their own.
import { test } from "node:test";
import { freshEnv } from "./helpers";
import { firstBatchEqual, setup } from "./kit/convergence";

test("one batch of tables whose columns share names with other types, and types under other names: every table arrives as the source's", async () => {
  const env = await freshEnv("plancols");
  const tables = ["a", "b", "c", "d"];
  await setup(env, `create table a (id int primary key, v int, w text);
    create table b (id text primary key, v numeric, w timestamptz);
    create table c (k int primary key, x int, y text);
    create table d (id int primary key, v int, w text)`, tables);
  // Before the sidecar starts: its first batch holds all of it.
  await env.source.query(`begin;
    insert into a select g, g, 'a' || g from generate_series(1, 20) g;
    insert into b select 'b' || g, g / 3.0, timestamptz '2024-01-01 00:00+00' + g * interval '1 hour' from generate_series(1, 20) g;
    insert into c select g, -g, 'c' || g from generate_series(1, 20) g;
    insert into d select g, g * 10, 'd' || g from generate_series(1, 20) g;
    update a set v = v + 100 where id <= 5; delete from b where id = 'b7'; update c set y = null where k = 3; delete from d where id > 15;
    commit`);
  await firstBatchEqual(env, tables);
});
