// Parallelism: groups replicate independently of each other, a group fans out to
// two target databases that reach the same state, and several `dbsync run`
// processes against one source never apply one subscription at the same time.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { appliesPerTable, installApplyLog, overlappingApplies } from "./kit/apply-log";
import { createDatabase, freshEnv, orAfter, pool, seeded, Sidecar, sleep, startSidecar, tableText, until, value } from "./helpers";

/** Inserts, updates, deletes and key changes on `table (id int primary key, v int, note text)` until stopped. */
function writer(p: Pool, table: string, stop: { done: boolean }, seed: number) {
  let next = seed * 1_000_000;
  const rng = seeded(`sidecar-parallel/${table}/writer${seed}`);
  const rnd = (n: number) => rng.below(n);
  return (async () => {
    while (!stop.done) {
      const r = rng.next();
      const id = seed * 1_000_000 + rnd(Math.max(1, next - seed * 1_000_000));
      try {
        if (r < 0.4) await p.query(`insert into ${table} select $1 + g, g, 'new' from generate_series(0, $2) g`, [next, rnd(5)]);
        else if (r < 0.7) await p.query(`update ${table} set v = v + 1, note = 'upd' where id between $1 and $1 + 3`, [id]);
        else if (r < 0.85) await p.query(`delete from ${table} where id = $1`, [id]);
        else await p.query(`update ${table} set id = $2 where id = $1`, [id, next + 10]);
      } catch (err) {
        if (!["23505", "40P01"].includes((err as { code?: string }).code ?? "")) throw err;
      }
      next += 20;
      await sleep(5 + rnd(20));
    }
  })();
}

/** SIGTERM; resolves to the exit code and the time it took (code null: still running after 12 s). */
async function terminate(s: Sidecar): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  const code = await orAfter(s.stop("SIGTERM"), 12000, null);
  return { code, ms: Date.now() - t0 };
}

function assertCleanExit(name: string, r: { code: number | null; ms: number }, s: Sidecar) {
  assert.equal(r.code, 0, `${name} did not exit 0 on SIGTERM (took ${r.ms} ms)\n${s.output()}`);
  assert.ok(r.ms < 10000, `${name} took ${r.ms} ms to exit on SIGTERM`);
}

/** A sidecar that logs at info level, once it says it runs (SIGTERM handlers installed). */
async function startRunning(sourceUrl: string, args: string[]): Promise<Sidecar> {
  const s = startSidecar(sourceUrl, args, { DBSYNC_LOG_LEVEL: "info" });
  const t0 = Date.now();
  await until("sidecar running", async () => s.output().includes("dbsync sidecar running") || s.proc.exitCode !== null, 30000);
  assert.equal(s.proc.exitCode, null, s.output());
  started.push(Date.now() - t0);
  return s;
}
const started: number[] = [];

const TABLE = (t: string) => `create table ${t} (id int primary key, v int not null, note text);`;

test("groups apply independently, and one group fans out to two target databases with the same end state", async (t) => {
  const env = await freshEnv("sidecar_fanout");
  const target2Url = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "sidecar_fanout_t2");
  const target2 = pool(target2Url);
  const DDL = TABLE("orders") + TABLE("audit");
  await Promise.all([env.source.query(DDL), env.target.query(DDL), target2.query(DDL)]);
  await env.source.query("select dbsync.add_table('orders', 'shop'), dbsync.add_table('audit', 'logs')");
  await env.source.query(`select dbsync.add_subscription('orders_t1', 'shop', $1, copy_data => false),
                                 dbsync.add_subscription('orders_t2', 'shop', $2, copy_data => false),
                                 dbsync.add_subscription('audit_t1', 'logs', $1, copy_data => false)`, [env.targetUrl, target2Url]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  const stop = { done: false };
  const writers = [writer(env.source, "orders", stop, 1), writer(env.source, "orders", stop, 2), writer(env.source, "audit", stop, 3)];
  const blocker = await env.target.connect();
  try {
    await sleep(1500);
    for (const s of ["orders_t1", "orders_t2", "audit_t1"]) {
      assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true, `${s}\n${sidecar.output()}`);
    }
    // Block the first target's orders: its subscription stalls, the others go on.
    await blocker.query("begin; lock table orders in access exclusive mode");
    await sleep(500);
    const t0 = Date.now();
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('audit_t1', '30 s')"), true, "the other group waited for the stalled one");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('orders_t2', '30 s')"), true, "the other target of the group waited for the stalled one");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('orders_t1', '1 s')"), false, "orders_t1 should be stalled by the lock");
    t.diagnostic(`audit_t1 and orders_t2 caught up in ${Date.now() - t0} ms while orders_t1 was blocked`);
    await sleep(1000);
    await blocker.query("commit");

    await sleep(1500);
    stop.done = true;
    await Promise.all(writers);
    for (const s of ["orders_t1", "orders_t2", "audit_t1"]) {
      assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true, `${s}\n${sidecar.output()}`);
    }
    const orders = await tableText(env.source, "orders");
    assert.ok(orders.length > 50, `only ${orders.length} orders written`);
    assert.deepEqual(await tableText(env.target, "orders"), orders, "orders on the first target");
    assert.deepEqual(await tableText(target2, "orders"), orders, "orders on the second target");
    assert.deepEqual(await tableText(env.target, "audit"), await tableText(env.source, "audit"), "audit on the first target");
    assert.equal(await value(target2, "select count(*)::int from audit"), 0, "audit is not subscribed on the second target");
  } finally {
    stop.done = true;
    await blocker.query("rollback").catch(() => undefined);
    blocker.release();
    await Promise.allSettled(writers);
    assertCleanExit("the sidecar", await terminate(sidecar), sidecar);
  }
});

test("two and three `dbsync run` processes never apply one subscription at the same time, and exit 0 on SIGTERM", async (t) => {
  const env = await freshEnv("sidecar_two_runs");
  const tables = ["p1", "p2", "p3"];
  for (const tbl of tables) {
    await env.source.query(TABLE(tbl));
    await env.target.query(TABLE(tbl));
  }
  if (!(await installApplyLog(env.target, env.targetUrl, tables))) t.diagnostic("dblink is not available: only committed applies are logged");
  for (const [i, tbl] of tables.entries()) {
    await env.source.query(`select dbsync.add_table($1, $2)`, [tbl, `g${i + 1}`]);
    await env.source.query(`select dbsync.add_subscription($1, $2, $3, copy_data => false)`, [`s${i + 1}`, `g${i + 1}`, env.targetUrl]);
  }
  const args = ["--poll-interval", "50", "--concurrency", "2"];
  const stop = { done: false };
  const writers = tables.flatMap((tbl, i) => [writer(env.source, tbl, stop, 2 * i + 1), writer(env.source, tbl, stop, 2 * i + 2)]);
  // Three at once from the start; then hand-overs as processes stop and crash.
  // eslint-disable-next-line prefer-const -- a and b are replaced by later hand-overs; third is not
  let [a, b, third] = await Promise.all([
    startRunning(env.sourceUrl, args),
    startRunning(env.sourceUrl, args),
    startRunning(env.sourceUrl, args),
  ]);
  const all = [a, b, third];
  try {
    await sleep(3000);
    // A graceful stop of one: the other takes its subscriptions over (a newcomer starts meanwhile).
    assertCleanExit("process A", await terminate(a), a);
    const c = startRunning(env.sourceUrl, args);
    await sleep(2500);
    // A crash of the other: its target transactions may still be running for a moment.
    b.proc.kill("SIGKILL");
    await b.stop();
    const d = startRunning(env.sourceUrl, args);
    // The third one stops too, so that whatever it held is handed over.
    assertCleanExit("the third process", await terminate(third), third);
    await sleep(2500);
    stop.done = true;
    await Promise.all(writers);
    [a, b] = await Promise.all([c, d]);
    all.push(a, b);
    for (const s of ["s1", "s2", "s3"]) {
      assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [s]), true, `${s}\n${a.output()}\n${b.output()}`);
    }
    const [ra, rb] = await Promise.all([terminate(a), terminate(b)]);
    assertCleanExit("process C", ra, a);
    assertCleanExit("process D", rb, b);

    for (const tbl of tables) {
      assert.deepEqual(await tableText(env.target, tbl), await tableText(env.source, tbl), `${tbl} differs`);
    }
    // The log of apply transactions: per table (= per subscription), no two backends overlap.
    assert.deepEqual(await overlappingApplies(env.target), [], "two backends applied one subscription at the same time");
    const perTable = await appliesPerTable(env.target);
    t.diagnostic(`start-up times: ${started.join(", ")} ms`);
    t.diagnostic(`apply transactions per table: ${perTable.map((r) => `${r.tbl} ${r.txs} by ${r.pids} backends`).join(", ")}`);
    assert.equal(perTable.length, tables.length, "every subscription was applied");
    for (const r of perTable) {
      // (Each batch reads everything committed so far, so how many batches there were
      // depends on the machine's speed; what matters is that they crossed hand-overs.)
      assert.ok(r.pids >= 2, `${r.tbl}: applied by one backend only: no hand-over was exercised`);
    }
  } finally {
    stop.done = true;
    await Promise.allSettled(writers);
    for (const s of all) s.proc.kill("SIGKILL");
  }
});
