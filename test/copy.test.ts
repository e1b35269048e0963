// The consistent initial copy: under writes, with progress, killed midway, resync.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { Env, freshEnv, seeded, sleep, startSidecar, until, value } from "./helpers";
import { assertTablesEqual } from "./kit/convergence";

function ddl(t: string) {
  return `create table ${t} (id bigint primary key, grp int not null, payload text, amount numeric);`;
}

/** Random inserts, updates, deletes and key changes (of ids up to `maxId`) until stopped; returns the writer's promise. */
function writer(source: Pool, table: string, stop: { done: boolean }, seed: number, maxId = 200_000) {
  let next = 10_000_000 + seed * 1_000_000;
  const rng = seeded(`copy/${table}/writer${seed}`);
  return (async () => {
    while (!stop.done) {
      const r = rng.next();
      const id = rng.int(1, maxId);
      if (r < 0.3) await source.query(`insert into ${table} values ($1, 1, 'new', 1)`, [next++]);
      else if (r < 0.6) await source.query(`update ${table} set amount = amount + 1, payload = 'upd' where id = $1`, [id]);
      else if (r < 0.8) await source.query(`delete from ${table} where id = $1`, [id]);
      else await source.query(`update ${table} set id = $2 where id = $1`, [id, next++]).catch(() => undefined);
      // Paced: flat-out writers took the CPUs from the test files running alongside,
      // and grew the backlog each killed copy has to read again.
      await sleep(rng.int(1, 10));
    }
  })();
}

async function setup(env: Env, tables: string[], rowsEach: number) {
  for (const t of tables) {
    await env.source.query(ddl(t));
    await env.target.query(ddl(t));
    await env.source.query(
      `insert into ${t} select g, g % 10, repeat('x', 50) || g, g * 1.5 from generate_series(1, ${rowsEach}) g`,
    );
    await env.source.query(`analyze ${t}`);
    await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  }
}

async function assertSame(env: Env, tables: string[]) {
  assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true);
  await assertTablesEqual(env.source, env.target, tables);
}

// One table big enough that its copy lasts several progress reports (every 250 ms)
// on a fast machine; three smaller ones, copied in one batch, report between them.
for (const [n, rowsEach] of [[1, 200_000], [3, 100_000]]) {
  test(`${n} table(s) of ${rowsEach.toLocaleString("en")} rows copy consistently under writes, with progress in table_status`, async () => {
    const env = await freshEnv(`copy_${n}`);
    const tables = Array.from({ length: n }, (_, i) => `big${i}`);
    await setup(env, tables, rowsEach);
    // A copy lasts at least 2 s whatever the machine's speed (10 ms every 1,000 rows,
    // in a trigger that fires in replica mode): on an idle machine it had ended after
    // one progress report, and the test failed on the machine being fast.
    await env.target.query(`create function slow_copy() returns trigger language plpgsql as $$
      begin if new.id % 1000 = 0 then perform pg_sleep(0.01); end if; return new; end $$`);
    for (const t of tables) {
      await env.target.query(`create trigger slow_copy before insert on ${t} for each row execute procedure slow_copy();
                              alter table ${t} enable always trigger slow_copy`);
    }
    await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
    const stop = { done: false };
    const writers = tables.flatMap((t, i) => [writer(env.source, t, stop, i * 2, rowsEach), writer(env.source, t, stop, i * 2 + 1, rowsEach)]);
    const sidecar = startSidecar(env.sourceUrl);
    try {
      const samples = new Set<string>();
      await until("copies finished", async () => {
        const rows = (await env.source.query("select table_name, state, rows_copied, rows_estimated from dbsync.table_status")).rows;
        for (const r of rows) if (r.state === "copying" && Number(r.rows_copied) > 0) samples.add(`${r.table_name}:${r.rows_copied}`);
        return rows.every((r) => r.state === "streaming" || r.state === "catching_up");
      }, 120_000);
      await sleep(500);
      stop.done = true;
      await Promise.all(writers);
      await assertSame(env, tables);
      assert.ok(samples.size >= 2, `progress sampled during the copy: ${[...samples].join(", ")}`);
      // The estimate (from pg_class.reltuples after ANALYZE) gives the progress bar its 100 %.
      assert.ok(Number(await value(env.source, "select min(rows_estimated) from dbsync.table_status")) >= rowsEach * 0.95);
      assert.equal(await value(env.source, "select count(*)::int from dbsync.table_status where state <> 'streaming'"), 0);
    } finally {
      stop.done = true;
      await sidecar.stop();
    }
  });
}

test("a sidecar killed 20 times during the copy restarts it and ends identical", async () => {
  const env = await freshEnv("copy_kill");
  await setup(env, ["big"], 200_000);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const stop = { done: false };
  const writers = [writer(env.source, "big", stop, 1), writer(env.source, "big", stop, 2)];
  const rng = seeded("copy/kills");
  try {
    for (let i = 0; i < 20; i++) {
      const s = startSidecar(env.sourceUrl);
      await until("copy running", async () => {
        const state = await value(env.source, "select state from dbsync.table_status");
        // A copy that finished before the kill: start another one to kill.
        if (state === "streaming" || state === "catching_up") await env.source.query("select dbsync.resync_table('s', 'big')");
        return state === "copying" &&
          Number(await value(env.source, "select coalesce(max(rows_copied), 0) from dbsync.table_status")) > 0;
      }, 60_000);
      // Anywhere inside the copy: reading, writing, or about to commit.
      await sleep(rng.below(400));
      await s.stop("SIGKILL");
      await env.source.query("update dbsync.subscription_tables set rows_copied = 0 where state = 'copying'");
    }
    const s = startSidecar(env.sourceUrl);
    await until("copied", async () =>
      (await value(env.source, "select state from dbsync.table_status")) !== "copying", 120_000);
    stop.done = true;
    await Promise.all(writers);
    await assertSame(env, ["big"]);
    await s.stop();
  } finally {
    stop.done = true;
  }
});

test("resync_table restores a target table damaged by hand, under writes", async () => {
  const env = await freshEnv("copy_resync");
  await setup(env, ["a", "b"], 20_000);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  const stop = { done: false };
  try {
    await assertSame(env, ["a", "b"]);
    const writers = [writer(env.source, "a", stop, 1), writer(env.source, "b", stop, 2)];
    await env.target.query("delete from a where id % 5 = 0; update a set payload = 'damaged' where id % 7 = 0");
    await env.source.query("select dbsync.resync_table('s', 'a')");
    await until("resynced", async () =>
      (await value(env.source, "select state from dbsync.table_status where table_name = 'public.a'")) === "streaming", 60_000);
    stop.done = true;
    await Promise.all(writers);
    await assertSame(env, ["a", "b"]);
  } finally {
    stop.done = true;
    await sidecar.stop();
  }
});

test("a copy into a target table with missing columns fails clearly and harms nothing else", async () => {
  const env = await freshEnv("copy_columns");
  await setup(env, ["good"], 100);
  await env.source.query("create table bad (id int primary key, x text, y text)");
  await env.target.query("create table bad (id int primary key, x text)");
  await env.source.query("insert into bad values (1, 'a', 'b')");
  await env.source.query("select dbsync.add_table('bad', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await until("copy error", async () =>
      (await value(env.source, "select state from dbsync.table_status where table_name like '%bad%'")) === "error");
    const err = await value<string>(env.source, "select last_error from dbsync.table_status where table_name like '%bad%'");
    assert.match(err, /lacks column\(s\) "y"/);
    await until("good copied", async () =>
      (await value(env.source, "select state from dbsync.table_status where table_name like '%good%'")) === "streaming");
    await env.source.query("insert into good values (999999, 1, 'later', 1)");
    await until("good streams", async () => (await value(env.target, "select count(*)::int from good where id = 999999")) === 1);
    await env.target.query("alter table bad add column y text");
    await assertSame(env, ["good", "bad"]);
  } finally {
    await sidecar.stop();
  }
});
