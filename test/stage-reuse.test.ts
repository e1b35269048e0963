// Stage tables (src/target/stage.ts) live as long as their target connection, and
// a pooled connection serves the tables of many subscriptions (src/apply/links.ts).
// A batch's cost must follow its own tables, not every table the connection ever
// staged: ON COMMIT DELETE ROWS stages made each commit empty all of them (about
// 0.45 ms each: a connection that had applied 300 tables paid well over 100 ms at
// every commit). And a stage must be empty when a batch starts using it, whether
// the batch that used it last committed or rolled back. Tables alike share a stage
// (creating one per table cost the target about 2 ms each, again and again, with
// a thousand tables spread over a pool's connections), and a table's rows never
// meet another's there.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PoolClient } from "pg";
import { Stage, StageTables } from "../src/target/stage";
import { freshEnv } from "./helpers";

const OTHERS = 300;
const name = (i: number) => `t${i}`;

/** One batch's use of the stages of `tables`, as applyBatch does it; returns the stages (the transaction stays open). */
async function begin(c: PoolClient, stages: StageTables, tables: string[]): Promise<Stage[]> {
  await c.query("begin");
  const now = await stages.describe(c, tables);
  const out: Stage[] = [];
  for (const t of tables) out.push(await stages.ensure(c, t, ["id", "v"], now.get(t)));
  // As the first piece of each table does (merge.ts), before it writes the stage.
  for (const s of out) await stages.take(c, s);
  return out;
}

async function commit(c: PoolClient, stages: StageTables): Promise<number> {
  await stages.trim(c);
  const t0 = performance.now();
  await c.query("commit");
  const ms = performance.now() - t0;
  stages.committed();
  return ms;
}

const count = async (c: PoolClient, s: Stage) => Number((await c.query(`select count(*) from ${s.name}`)).rows[0].count);

async function medianCommitMs(c: PoolClient, stages: StageTables, table: string): Promise<number> {
  const ms: number[] = [];
  for (let k = 0; k < 9; k++) {
    const [s] = await begin(c, stages, [table]);
    await c.query(`insert into ${s.name} values ('U', 1, 'x')`);
    ms.push(await commit(c, stages));
  }
  return ms.sort((a, b) => a - b)[4];
}

test("a batch's commit costs the same whatever other tables the connection has staged", async () => {
  const env = await freshEnv("stage_reuse_cost", { migrate: false });
  // (Each of its own shape: tables alike share one stage.)
  await env.target.query(Array.from({ length: OTHERS + 1 }, (_, i) => `create table ${name(i)} (id int primary key, v varchar(${i + 1}));`).join("\n"));
  const c = await env.target.connect();
  try {
    const stages = new StageTables();
    const alone = await medianCommitMs(c, stages, name(0));
    // The connection applies 300 other tables (a pooled connection serving many groups).
    for (let i = 1; i <= OTHERS; i += 50) {
      const batch = Array.from({ length: 50 }, (_, k) => name(i + k));
      for (const s of await begin(c, stages, batch)) await c.query(`insert into ${s.name} values ('U', 1, 'x')`);
      await commit(c, stages);
    }
    const among = await medianCommitMs(c, stages, name(0));
    // Before: alone about 1 ms, among 300 others over 100 ms.
    assert.ok(among < Math.max(4 * alone, alone + 25), `commit of a one-table batch: ${alone.toFixed(1)} ms alone, ${among.toFixed(1)} ms among ${OTHERS} other stages`);
  } finally {
    c.release(true);
  }
});

test("a stage is empty when a batch starts using it: after a commit, a rollback, and a big batch", async () => {
  const env = await freshEnv("stage_reuse_empty", { migrate: false });
  await env.target.query("create table t (id int primary key, v text)");
  const c = await env.target.connect();
  try {
    const stages = new StageTables();
    // A batch leaves its rows in the stage and commits.
    let [s] = await begin(c, stages, ["t"]);
    await c.query(`insert into ${s.name} values ('U', 1, 'a'), ('D', 2, null)`);
    await commit(c, stages);
    assert.equal(await count(c, s), 2, "a stage keeps its rows after a commit (the next batch empties it)");
    // The next batch finds it empty; it writes and rolls back.
    [s] = await begin(c, stages, ["t"]);
    assert.equal(await count(c, s), 0, "emptied for the next batch");
    await c.query(`insert into ${s.name} values ('U', 3, 'b')`);
    await c.query("rollback");
    stages.rolledBack();
    assert.equal(await count(c, s), 2, "the rollback brought the committed rows back");
    [s] = await begin(c, stages, ["t"]);
    assert.equal(await count(c, s), 0, "emptied again after the rollback");
    // A big batch: written past the limit, the stage is truncated before the commit.
    await c.query(`insert into ${s.name} select 'U', g, 'x' from generate_series(1, 20000) g`);
    s.written += 20000;
    await commit(c, stages);
    assert.equal(await count(c, s), 0, "a big batch's rows do not stay in the stage");
    // A big batch truncated before a commit that then fails: the rows before it are back, and go at the next batch.
    [s] = await begin(c, stages, ["t"]);
    await c.query(`insert into ${s.name} values ('U', 5, 'c')`);
    await commit(c, stages);
    [s] = await begin(c, stages, ["t"]);
    await c.query(`insert into ${s.name} select 'U', g, 'x' from generate_series(1, 20000) g`);
    s.written += 20000;
    await stages.trim(c);
    await c.query("rollback");
    stages.rolledBack();
    assert.equal(await count(c, s), 1, "the rollback brought the committed row back");
    [s] = await begin(c, stages, ["t"]);
    assert.equal(await count(c, s), 0, "emptied after a batch whose TRUNCATE was rolled back");
    await c.query("rollback");
    stages.rolledBack();
  } finally {
    c.release(true);
  }
});

test("tables alike share one stage, and a table's rows are gone from it before the next table's come", async () => {
  const env = await freshEnv("stage_reuse_shared", { migrate: false });
  await env.target.query(`create table a (id int primary key, v text); create table b (id int primary key, v text);
                          create table c (id int primary key, v text collate "C"); create table d (id int generated always as identity primary key, v text)`);
  const c = await env.target.connect();
  try {
    const stages = new StageTables();
    const [a, b, cc, d] = await begin(c, stages, ["a", "b", "c", "d"]);
    assert.equal(a.name, b.name, "a and b are alike: one stage");
    assert.notEqual(a.name, cc.name, "another collation: another stage");
    assert.notEqual(a.name, d.name, "an identity column: another stage");
    await stages.take(c, a);
    await c.query(`insert into ${a.name} values ('U', 1, 'a')`);
    assert.ok(stages.holds(a) && !stages.holds(b));
    await stages.take(c, b);
    assert.equal(await count(c, b), 0, "a's rows are gone before b's come");
    await c.query(`insert into ${b.name} values ('U', 2, 'b')`);
    assert.ok(stages.holds(b) && !stages.holds(a));
    b.updateRefused = true;
    assert.ok(a.mayUpdate(["id"]) && !b.mayUpdate(["id"]), "what the target refused of one table is not held against another");
    assert.ok(!d.mayUpdate(["v"]) && d.mayUpdate(["id"]), "d's identity column GENERATED ALWAYS");
    await commit(c, stages);
    // The next batch: b's rows from the last one are still there until it empties them.
    const [a2] = await begin(c, stages, ["a"]);
    assert.equal(a2.name, a.name);
    assert.equal(await count(c, a2), 0, "emptied for the next batch");
    await c.query("rollback");
    stages.rolledBack();
  } finally {
    c.release(true);
  }
});
