// batch_plan returns each streaming table's SQL it built ("kept"), and takes it
// back with a later batch (p_kept) instead of building it again; the sidecar's
// process keeps it (src/source/kept-plans.ts). A plan given the SQL of earlier
// batches must be the plan of a call given none: after each kind of DDL between two
// batches (by execute_ddl or outside it), a table added or removed, under a hostile
// search_path; what is given is what the batch uses, unless its key (what the SQL
// is built from, and the installed code) is not the one of now.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "pg";
import { KeptPlan, KeptPlans } from "../src/source/kept-plans";
import { Env, freshEnv, value } from "./helpers";
import { setup } from "./kit/convergence";

interface Plan {
  stream: string | null;
  tables: { table_id: number; action: string }[];
  kept: Record<string, KeptPlan>;
}

async function session(env: Env): Promise<Client> {
  const c = new Client({ connectionString: env.sourceUrl });
  await c.connect();
  return c;
}

/** A batch: the tick before `write`, the tick after. */
async function batch(env: Env, write: string): Promise<number> {
  const from = Number(await value(env.source, "select dbsync.tick(group_id, true) from dbsync.groups where name = 'g'"));
  await env.source.query(write);
  await env.source.query("select dbsync.tick(group_id, true) from dbsync.groups where name = 'g'");
  return from;
}

/** The plan of the batch after `from`, given `kept` (batch_plan's p_kept). */
async function planOf(c: Client, from: number, kept: Record<string, KeptPlan> | null = null): Promise<Plan> {
  await c.query("begin isolation level repeatable read");
  try {
    return (
      await c.query("select dbsync.batch_plan(sub_id, $1, $1, 1000000, 1000000, 1, null, false, $2) as p from dbsync.subscriptions where name = 's'", [
        from,
        kept && JSON.stringify(kept),
      ])
    ).rows[0].p;
  } finally {
    await c.query("commit");
  }
}

/** The group's id, as the sidecar knows it from its batch. */
async function groupOf(env: Env): Promise<number> {
  return value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
}

/** A plan without what it built for later batches. */
function withoutKept({ kept: _, ...plan }: Plan) {
  return plan;
}

const WRITE = "update t set a = a + 1 where id <= 2; insert into t (id, a) values (default, 7); update u set v = v || '+'";

test("a table's SQL given back is built again after each kind of DDL, and plans as a call given none", async () => {
  const env = await freshEnv("plan_cache");
  await setup(env, `create table t (id serial primary key, a int not null default 0, b text, c text);
    create table u (k text primary key, v text not null);
    insert into t (a, b, c) select g, 'b' || g, 'c' || g from generate_series(1, 5) g;
    insert into u select 'k' || g, 'v' from generate_series(1, 3) g;
    create schema evil; create table evil.t (id int, a int, b text, c text)`, ["t", "u"]);
  const group = await groupOf(env);
  const plans = new KeptPlans();
  const [mine, fresh] = [await session(env), await session(env)];
  const t = () => value<string>(env.source, "select table_id::text from dbsync.tables where relid = 't'::regclass");
  try {
    // [step, DDL before the batch, whether t's SQL is built again (and kept)]
    const steps: [string, string, boolean][] = [
      ["nothing changed", "", true],
      ["nothing changed again", "", false],
      ["a column added", "alter table t add column d int", true],
      ["a column renamed", "alter table t rename column d to e", true],
      ["two columns of one type swap their names", "alter table t rename column b to x; alter table t rename column c to b; alter table t rename column x to c", true],
      ["a column's type changed", "alter table t alter column a type bigint", true],
      ["a column dropped", "alter table t drop column e", true],
      ["the table renamed", "alter table t rename to t2; alter table t2 rename to t", false],
      ["a hostile search_path in the planning session", "", false],
      ["the key changed", "alter table u drop constraint u_pkey, add primary key (k, v)", false],
      ["a column added by execute_ddl in the batch", "", false],
      ["nothing changed after it", "", true],
      ["a table added", "create table w (id int primary key); select dbsync.add_table('w', 'g')", false],
      ["a table removed", "select dbsync.remove_table('u')", false],
      ["the code installed again", "update dbsync.installed_code set sha = 'another'", true],
    ];
    for (const [label, ddl, built] of steps) {
      if (label.startsWith("a hostile")) await mine.query("set search_path = evil, public");
      if (ddl) await env.source.query(ddl);
      const extra = { "a table added": "; insert into w values (1)", "a column added by execute_ddl in the batch": "; select dbsync.execute_ddl('g', 'alter table t add column f int')" };
      const from = await batch(env, WRITE + (extra[label as keyof typeof extra] ?? ""));
      const given = plans.given(group);
      const plan = await planOf(mine, from, given);
      const none = await planOf(fresh, from);
      assert.ok(none.stream, `${label}: a stream`);
      assert.deepEqual(withoutKept(plan), withoutKept(none), `${label}: the plan given earlier SQL differs`);
      // (A batch with DDL builds t's SQL and keeps none: the next builds it again.)
      assert.equal((await t()) in plan.kept, built, `${label}: t's SQL ${built ? "not " : ""}built again and kept`);
      plans.took(group, plan.tables.filter((x) => x.action === "refresh").map((x) => x.table_id), plan.kept);
    }
  } finally {
    await mine.end();
    await fresh.end();
  }
});

test("the SQL given back is what the batch uses, under its key only", async () => {
  const env = await freshEnv("plan_cache_kept");
  await setup(env, "create table t (id int primary key, a int not null default 0); insert into t select g, g from generate_series(1, 5) g", ["t"]);
  const table = await value<string>(env.source, "select table_id::text from dbsync.tables where relid = 't'::regclass");
  const write = "update t set a = a + 1 where id = 1";
  const c = await session(env);
  try {
    const { key, entry } = (await planOf(c, await batch(env, write))).kept[table];
    // Its part marked: the stream of a batch given it is the marked one.
    const marked = { ...(entry as Record<string, string | null>) };
    for (const k of ["part", "own"]) marked[k] = marked[k]?.replace("select ", "select /*kept*/ ") ?? null;
    const from = await batch(env, write);
    const used = await planOf(c, from, { [table]: { key, entry: marked } });
    assert.match(used.stream ?? "", /\/\*kept\*\//, "the SQL given was built again");
    assert.deepEqual(used.kept, {}, "the SQL given was kept again");
    for (const other of [`${key}0`, ""]) {
      const plan = await planOf(c, from, { [table]: { key: other, entry: marked } });
      assert.ok(plan.stream && !plan.stream.includes("/*kept*/"), `the SQL given under key "${other}" was taken`);
      assert.equal(plan.kept[table]?.key, key, "the table's SQL built again and kept under its key");
    }
  } finally {
    await c.end();
  }
});
