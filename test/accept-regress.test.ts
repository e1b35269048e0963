// Acceptance: the scenarios of other replicators' regression suites (pglogical,
// Londiste, Slony, Bucardo: foreign key cascades, TRUNCATE ... CASCADE, MERGE, rows
// moving between partitions, dropped and re-added columns, a target whose columns
// are in another order, keys swapped in one statement...), replayed through dbsync
// with the sidecar applying live; each ends with the target equal to the source and
// no error recorded.
import { test } from "node:test";
import { Env, SOURCE_MAJOR, compat, freshEnv, startSidecar } from "./helpers";
import { strictlyConverged, synced } from "./kit/convergence";

interface Scenario {
  ddl: string;
  /** The target's DDL when it differs (column order...). */
  targetDdl?: string;
  tables: string[];
  /** Rows before the subscription: they travel by the initial copy. */
  seed?: string[];
  /** Statements on the source while the sidecar applies. */
  writes: string[];
  /** What to compare, when not the tables' rows as they are (a target's other column order). */
  compare?: string[];
}

async function replay(label: string, sc: Scenario): Promise<Env> {
  const env = await freshEnv(label);
  await env.source.query(compat(sc.ddl, "source"));
  await env.target.query(compat(sc.targetDdl ?? sc.ddl, "target"));
  for (const s of sc.seed ?? []) await env.source.query(s);
  for (const t of sc.tables) await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
    for (const w of sc.writes) await env.source.query(compat(w, "source"));
    await strictlyConverged(env, sc.compare ?? sc.tables);
  } finally {
    await sidecar.stop();
  }
  return env;
}

test("foreign keys with ON DELETE CASCADE, SET NULL and ON UPDATE CASCADE: the cascaded writes reach the target", async () => {
  await replay("acc_fk", {
    ddl: `create table p (id int primary key, v text);
          create table c (id int primary key, pid int references p on delete cascade on update cascade, v text);
          create table n (id int primary key, pid int references p on delete set null on update cascade, v text);`,
    tables: ["p", "c", "n"],
    seed: [
      "insert into p select g, 'p' || g from generate_series(1, 10) g",
      "insert into c select g, g % 10 + 1, 'c' from generate_series(1, 50) g",
      "insert into n select g, g % 10 + 1, 'n' from generate_series(1, 50) g",
    ],
    writes: [
      "delete from p where id in (1, 2)",
      "update p set id = id + 100 where id between 3 and 5",
      "begin; delete from p where id = 6; insert into p values (6, 'again'); update c set pid = 6 where id = 1; commit",
    ],
  });
});

test("TRUNCATE ... CASCADE and RESTART IDENTITY of a referenced table truncate the replicated referencing tables too", async () => {
  await replay("acc_trunc_cascade", {
    ddl: `create table p (id serial primary key, v text);
          create table c (id serial primary key, pid int references p, v text);`,
    tables: ["p", "c"],
    seed: ["insert into p (v) select 'p' from generate_series(1, 10)", "insert into c (pid, v) select g, 'c' from generate_series(1, 10) g"],
    writes: [
      "truncate p restart identity cascade",
      "insert into p (v) values ('after'); insert into c (pid, v) values (1, 'after')",
      "begin; insert into c (pid, v) values (1, 'doomed'); truncate p cascade; insert into p (v) values ('last'); commit",
    ],
  });
});

test("partitioned table: updates move rows between partitions and sub-partitions, into and out of the default partition", { skip: SOURCE_MAJOR < 11 && "rows move between partitions from PostgreSQL 11" }, async () => {
  await replay("acc_part_move", {
    ddl: `create table pt (id int not null, k int not null, v text, primary key (id, k)) partition by range (k);
          create table pt_1 partition of pt for values from (0) to (100);
          create table pt_2 partition of pt for values from (100) to (200) partition by list (id);
          create table pt_2a partition of pt_2 for values in (1, 2, 3, 4, 5);
          create table pt_2b partition of pt_2 default;
          create table pt_d partition of pt default;`,
    tables: ["pt"],
    seed: ["insert into pt select g, g * 10, 'v' from generate_series(1, 30) g"],
    writes: [
      "update pt set k = k + 100 where id <= 10",
      "update pt set k = 500 where id between 11 and 15",
      "update pt set k = 1, id = id + 1000 where k = 500",
      "delete from pt where id = 3; insert into pt values (3, 150, 'back')",
    ],
  });
});

test("dropped and re-added columns on the source, the target's columns in another order", async () => {
  await replay("acc_cols", {
    ddl: `create table t (id int primary key, gone text, a int, b text, c timestamptz default '2020-01-01');
          alter table t drop column gone; alter table t add column gone text;`,
    targetDdl: `create table t (c timestamptz default '1999-01-01', gone text, b text, id int primary key, a int);`,
    tables: ["t"],
    seed: ["insert into t (id, a, b, gone) select g, g, 'b' || g, 'g' from generate_series(1, 20) g"],
    writes: [
      "update t set a = -a, gone = null where id % 2 = 0",
      "insert into t (id, a) values (100, 1)",
      "select dbsync.execute_ddl('g', 'alter table t drop column b')",
      "select dbsync.execute_ddl('g', 'alter table t add column b int default 7')",
      "update t set b = id where id < 5",
    ],
    compare: ["(select id, a, b, c, gone from t)"],
  });
});

test("keys shifted and swapped inside one statement (deferrable key), an upsert moving keys, a writable CTE moving rows between tables", async () => {
  await replay("acc_keys", {
    ddl: `create table t (id int primary key deferrable initially immediate, v text);
          create table u (id int primary key, v text);
          create table w (id int primary key, v text);`,
    tables: ["t", "u", "w"],
    seed: ["insert into t select g, 'v' || g from generate_series(1, 20) g", "insert into w select g, 'w' from generate_series(1, 5) g"],
    writes: [
      "update t set id = id + 1",
      "update t set id = case when id = 2 then 3 when id = 3 then 2 else id end",
      "update t set id = 22 - id",
      "insert into w values (5, 'dup'), (6, 'new') on conflict (id) do update set id = w.id + 100, v = excluded.v || w.v",
      "with m as (delete from t where id > 15 returning *) insert into u select * from m",
      "with m as (delete from u where id > 18 returning *) insert into t select id + 100, v from m",
    ],
  });
});

test("MERGE inserting, updating and deleting in one statement, on a plain and a partitioned table", { skip: SOURCE_MAJOR < 15 && "MERGE comes with PostgreSQL 15" }, async () => {
  await replay("acc_merge", {
    ddl: `create table t (id int primary key, v int);
          create table pt (id int, k int, v int, primary key (id, k)) partition by range (k);
          create table pt_1 partition of pt for values from (0) to (10);
          create table pt_2 partition of pt for values from (10) to (20);
          create table src (id int, v int);`,
    tables: ["t", "pt"],
    seed: ["insert into t select g, g from generate_series(1, 20) g", "insert into pt select g, g % 20, g from generate_series(1, 20) g"],
    writes: [
      "insert into src select g, g * 10 from generate_series(10, 30) g",
      `merge into t using src on t.id = src.id
         when matched and src.v > 150 then delete
         when matched then update set v = src.v
         when not matched then insert values (src.id, src.v)`,
      `merge into pt using src on pt.id = src.id
         when matched and src.v > 150 then delete
         when matched then update set k = (pt.k + 10) % 20, v = src.v
         when not matched then insert values (src.id, src.id % 20, src.v)`,
    ],
  });
});

test("inheritance: parent and children replicated, statements on the parent changing the children's rows", async () => {
  await replay("acc_inherit", {
    ddl: `create table ip (id int primary key, v text);
          create table ic1 (extra int) inherits (ip); alter table ic1 add primary key (id);
          create table ic2 () inherits (ip); alter table ic2 add primary key (id);`,
    tables: ["ip", "ic1", "ic2"],
    seed: ["insert into ip values (1, 'p'), (2, 'p')", "insert into ic1 values (3, 'c1', 3), (4, 'c1', 4)", "insert into ic2 values (5, 'c2')"],
    writes: [
      "update ip set v = v || '!'",
      "update ip set id = id + 10 where id in (2, 4, 5)",
      "delete from ip where id = 3",
      "update only ip set v = 'only'",
      "truncate only ip",
      "insert into ip values (8, 'p8'); insert into ic1 values (9, 'c9', 9)",
      "delete from only ip where id = 8",
      "truncate ip",
      "insert into ic2 values (6, 'x'); insert into ip values (7, 'y'); insert into ic1 values (10, 'c10', 10)",
      "select dbsync.resync_table('s', 'ip')",
    ],
  });
});
