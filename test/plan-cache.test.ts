// batch_plan keeps each streaming table's SQL in the reader's session for its next
// batches (sql/functions/_plan_cache.sql). A session that kept it must plan every
// batch as a session that kept nothing would: after each kind of DDL between two
// batches (by execute_ddl or outside it), a table added or removed, under a hostile
// search_path; the kept SQL is what the next batch uses; and a value given to the
// session by ALTER DATABASE ... SET is never taken for it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, escapeIdentifier, escapeLiteral } from "pg";
import { Env, freshEnv, value } from "./helpers";
import { setup } from "./kit/convergence";

interface Plan {
  stream: string | null;
  tables: unknown[];
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

async function planOf(c: Client, from: number): Promise<Plan> {
  await c.query("begin isolation level repeatable read");
  try {
    return (await c.query("select dbsync.batch_plan(sub_id, $1, $1, 1000000, 1000000) as p from dbsync.subscriptions where name = 's'", [from])).rows[0].p;
  } finally {
    await c.query("commit");
  }
}

/** The plan of the batch after `from` in the session that kept its SQL, and in a new one. */
async function bothPlans(env: Env, kept: Client, from: number): Promise<[Plan, Plan]> {
  const fresh = await session(env);
  try {
    return [await planOf(kept, from), await planOf(fresh, from)];
  } finally {
    await fresh.end();
  }
}

const WRITE = "update t set a = a + 1 where id <= 2; insert into t (id, a) values (default, 7); update u set v = v || '+'";

test("a session's kept SQL of a table is built again after each kind of DDL, and plans as a new session does", async () => {
  const env = await freshEnv("plan_cache");
  await setup(env, `create table t (id serial primary key, a int not null default 0, b text, c text);
    create table u (k text primary key, v text not null);
    insert into t (a, b, c) select g, 'b' || g, 'c' || g from generate_series(1, 5) g;
    insert into u select 'k' || g, 'v' from generate_series(1, 3) g;
    create schema evil; create table evil.t (id int, a int, b text, c text)`, ["t", "u"]);
  const kept = await session(env);
  try {
    const steps: [string, string][] = [
      ["nothing changed", ""],
      ["a column added", "alter table t add column d int"],
      ["a column renamed", "alter table t rename column d to e"],
      ["two columns of one type swap their names", "alter table t rename column b to x; alter table t rename column c to b; alter table t rename column x to c"],
      ["a column's type changed", "alter table t alter column a type bigint"],
      ["a column dropped", "alter table t drop column e"],
      ["the table renamed", "alter table t rename to t2; alter table t2 rename to t"],
      ["a hostile search_path in the kept session", ""],
      ["the key changed", "alter table u drop constraint u_pkey, add primary key (k, v)"],
      ["a column added by execute_ddl", "select dbsync.execute_ddl('g', 'alter table t add column f int')"],
      ["nothing changed after it", ""],
      ["a table added", "create table w (id int primary key); select dbsync.add_table('w', 'g')"],
      ["a table removed", "select dbsync.remove_table('u')"],
    ];
    for (const [label, ddl] of steps) {
      if (label.startsWith("a hostile")) await kept.query("set search_path = evil, public");
      if (ddl) await env.source.query(ddl);
      const from = await batch(env, WRITE + (label === "a table added" ? "; insert into w values (1)" : ""));
      const [mine, fresh] = await bothPlans(env, kept, from);
      assert.ok(fresh.stream, `${label}: a stream`);
      assert.deepEqual(mine, fresh, `${label}: the session that kept the SQL plans otherwise`);
    }
  } finally {
    await kept.end();
  }
});

test("the kept SQL is what the next batch uses; a value set for the session by ALTER DATABASE is not taken for it", async () => {
  const env = await freshEnv("plan_cache_kept");
  await setup(env, "create table t (id int primary key, a int not null default 0); insert into t select g, g from generate_series(1, 5) g", ["t"]);
  const table = Number(await value(env.source, "select table_id from dbsync.tables where relid = 't'::regclass"));
  const setting = `dbsync.plan_${table}`;
  const write = "update t set a = a + 1 where id = 1";
  const kept = await session(env);
  try {
    await planOf(kept, await batch(env, write));
    const value0 = (await kept.query("select current_setting($1, true) as v", [setting])).rows[0].v as string;
    // "<session's token> <key> <entry>"
    const head = value0.split(" ", 2).join(" ");
    const entry = JSON.parse(value0.slice(head.length + 1)) as { part: string | null; own: string | null };
    // The session's own value, its part marked: the next batch's stream is the marked one.
    for (const k of ["part", "own"] as const) entry[k] = entry[k]?.replace("select ", "select /*kept*/ ") ?? null;
    const marked = `${head} ${JSON.stringify(entry)}`;
    await kept.query("select set_config($1, $2, false)", [setting, marked]);
    assert.match((await planOf(kept, await batch(env, write))).stream ?? "", /\/\*kept\*\//, "the kept SQL was built again");

    // The same value, or junk, given to every new session of the database: ignored.
    const db = await value<string>(env.source, "select current_database()");
    for (const given of [marked, "junk", `${head} {"x": 1`]) {
      await env.source.query(`alter database ${escapeIdentifier(db)} set ${escapeIdentifier(setting)} = ${escapeLiteral(given)}`);
      const other = await session(env);
      try {
        assert.equal((await other.query("select current_setting($1, true) as v", [setting])).rows[0].v, given, "the session got the value");
        const plan = await planOf(other, await batch(env, write));
        assert.ok(plan.stream && !plan.stream.includes("/*kept*/"), `a value given to the session was taken: ${given.slice(0, 40)}`);
      } finally {
        await other.end();
      }
    }
  } finally {
    await kept.end();
  }
});

