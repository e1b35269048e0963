// The sidecar killed with SIGKILL at random moments, again and again, while several
// clients write: once it runs again the target equals the source, and every
// inserted row arrived exactly once (an ALWAYS trigger on the target counts the
// inserts that apply transactions commit, so a batch applied twice would show even
// though the delete-then-insert apply would hide it in the table itself).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { compat, freshEnv, sleep, startSidecar, tableText, until, value } from "./helpers";

const DDL = `
  create table ins_only (id bigint primary key, writer int not null, n int not null, payload text);
  create table kv (k int primary key, v int not null, note text);
  insert into kv select g, 0, 'seed' from generate_series(1, 300) g;`;

// Target only: count every row insert that an apply transaction commits.
const TARGET_AUDIT = `
  create table ins_audit (id bigint not null);
  create function audit_ins() returns trigger language plpgsql as $$
  begin
    insert into ins_audit select id from new_rows;
    return null;
  end $$;
  create trigger audit after insert on ins_only referencing new table as new_rows
    for each statement execute function audit_ins();
  alter table ins_only enable always trigger audit;`;

const SKIPPABLE = new Set(["40P01", "40001", "23505"]);

async function attempt(pool: Pool, statements: [string, unknown[]][]): Promise<boolean> {
  const c = await pool.connect();
  try {
    await c.query("begin");
    for (const [sql, params] of statements) await c.query(sql, params);
    await c.query("commit");
    return true;
  } catch (err) {
    await c.query("rollback").catch(() => undefined);
    if (SKIPPABLE.has((err as { code?: string }).code ?? "")) return false;
    throw err;
  } finally {
    c.release();
  }
}

const rnd = (n: number) => Math.floor(Math.random() * n);

function inserter(pool: Pool, writer: number, stop: { done: boolean }, stats: { rows: number }) {
  let next = writer * 1_000_000_000;
  return (async () => {
    while (!stop.done) {
      const n = 1 + rnd(20);
      const first = next;
      next += n;
      const ok = await attempt(pool, [
        [
          "insert into ins_only select $1::int8 + g, $2, g, md5(g::text) from generate_series(1, $3::int) g",
          [first, writer, n],
        ],
      ]);
      assert.ok(ok, "an insert-only transaction failed");
      stats.rows += n;
      await sleep(10 + rnd(30));
    }
  })();
}

function churner(pool: Pool, stop: { done: boolean }, stats: { commits: number }) {
  return (async () => {
    while (!stop.done) {
      const ops: [string, unknown[]][] = [];
      for (let i = 1 + rnd(4); i > 0; i--) {
        const k = 1 + rnd(400);
        const r = Math.random();
        if (r < 0.4) ops.push(["update kv set v = v + 1, note = 'upd' where k = $1", [k]]);
        else if (r < 0.55) ops.push(["delete from kv where k = $1", [k]]);
        else if (r < 0.75) ops.push(["insert into kv values ($1, 0, 'ins') on conflict (k) do update set v = kv.v + 100, note = 'upsert'", [k]]);
        else if (r < 0.9) ops.push(["update kv set k = $2 where k = $1", [k, 1 + rnd(400)]]); // key change (may collide)
        else ops.push(["update kv set v = v - 1 where k between $1 and $1 + 10", [k]]);
      }
      if (Math.random() < 0.2) ops.push(["insert into ins_only values (-$1::int8, -1, 0, 'with kv')", [Date.now() * 1000 + rnd(1000)]]);
      if (await attempt(pool, ops)) stats.commits++;
      await sleep(10 + rnd(30));
    }
  })();
}

test("SIGKILL at random moments under concurrent writes: nothing lost, nothing applied twice", async (t) => {
  const env = await freshEnv("sidecar_kill");
  await env.source.query(DDL);
  await env.target.query(DDL);
  await env.target.query(compat(TARGET_AUDIT, "target"));
  await env.source.query("select dbsync.add_table('ins_only', 'k'), dbsync.add_table('kv', 'k')");
  await env.source.query("select dbsync.add_subscription('ks', 'k', $1, copy_data => false)", [env.targetUrl]);
  const args = ["--poll-interval", "100"];
  const appliedTick = () => value<number>(env.target, "select coalesce(max(tick_id), 0)::int from dbsync.applied").catch(() => 0);

  const stop = { done: false };
  const ins = { rows: 0 };
  const churn = { commits: 0 };
  const writers = [
    inserter(env.source, 1, stop, ins),
    inserter(env.source, 2, stop, ins),
    churner(env.source, stop, churn),
    churner(env.source, stop, churn),
  ];
  const KILLS = 20;
  let midApply = 0;
  let lastOutput = "";
  try {
    const t0 = Date.now();
    for (let i = 0; i < KILLS; i++) {
      const sidecar = startSidecar(env.sourceUrl, args, { DBSYNC_LOG_LEVEL: "info" });
      // Most lives are counted from the moment the sidecar runs, so that it dies while
      // applying; every fourth one dies at a random moment of its start-up.
      if (i % 4 !== 3) {
        await until("sidecar running", async () => sidecar.output().includes("dbsync sidecar running") || sidecar.proc.exitCode !== null, 20000);
        assert.equal(sidecar.proc.exitCode, null, sidecar.output());
      }
      // Every batch reads all that committed since the target's position, so a
      // backlog is one batch: half the lives are long enough for it to commit,
      // or the kills would only ever roll the same growing batch back.
      await sleep(i % 2 === 0 ? 100 + rnd(600) : 1500 + rnd(1500));
      const busy = await value<number>(
        env.target,
        "select count(*)::int from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%' and xact_start is not null",
      );
      if (busy > 0) midApply++;
      sidecar.proc.kill("SIGKILL");
      await sidecar.stop(); // resolves once it is gone
      lastOutput = sidecar.output();
    }
    const killPhaseMs = Date.now() - t0;
    const tickAfterKills = await appliedTick();
    stop.done = true;
    await Promise.all(writers);

    // Started once more, it catches up by itself.
    const final = startSidecar(env.sourceUrl, args);
    try {
      const tw = Date.now();
      const ok = await value(env.source, "select dbsync.wait_for_sync('ks', '90 s')");
      const catchUpMs = Date.now() - tw;
      assert.equal(ok, true, final.output() + lastOutput);
      const srcCount = await value<number>(env.source, "select count(*)::int from ins_only where id > 0");
      t.diagnostic(
        `${KILLS} kills (${midApply} with an apply transaction open on the target); ` +
          `target reached tick ${tickAfterKills} during the kills (${killPhaseMs} ms); ${ins.rows} rows inserted, ` +
          `${churn.commits} kv transactions; the last sidecar caught up in ${catchUpMs} ms`,
      );
      assert.ok(tickAfterKills > 5, `the killed sidecars applied almost nothing (tick ${tickAfterKills})`);
      for (const table of ["ins_only", "kv"]) {
        const [src, dst] = await Promise.all([tableText(env.source, table), tableText(env.target, table)]);
        assert.equal(dst.length, src.length, `${table}: row count`);
        assert.deepEqual(dst, src, `${table} differs`);
      }
      assert.equal(srcCount, ins.rows, "every committed insert is on the source");
      assert.equal(await value<number>(env.target, "select count(*)::int from ins_only where id > 0"), ins.rows);
      // Exactly once: each row of ins_only was inserted by exactly one committed apply.
      const audit = (await env.target.query(
        "select count(*)::int as n, count(distinct id)::int as d from ins_audit",
      )).rows[0];
      const total = await value<number>(env.source, "select count(*)::int from ins_only");
      assert.equal(audit.d, total, "rows of ins_only never inserted on the target");
      assert.equal(audit.n, total, `${audit.n - audit.d} rows of ins_only were inserted on the target more than once`);
    } finally {
      assert.equal(await final.stop(), 0, final.output());
    }
  } finally {
    stop.done = true;
    await Promise.allSettled(writers);
  }
});
