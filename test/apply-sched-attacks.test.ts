// Attacks on apply scheduling (src/sidecar/appliers.ts): --concurrency slots taken
// in turns (an applier that held its slot 2 s yields it after a batch when another
// subscription waits), the caught-up applier's linger, and stages kept across
// execute_ddl (src/target/stage.ts), on real clusters with writers that never
// pause. Each test says what it tries, and what must hold: every subscription
// reaches the source's values while the writers go on, nothing is applied twice
// (an ALWAYS audit trigger on the target counts each row's inserts), and the
// tables end equal.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { Appliers, NO_COUNTERS } from "../src/sidecar/appliers";
import { APPLY_JOB, createJobs } from "../src/sidecar/jobs";
import { Outages, createLog } from "../src/log";
import { Env, Sidecar, compat, freshEnv, startSidecar, until, value } from "./helpers";
import { assertTablesEqual, setup } from "./kit/convergence";
import { planErrorAfterDdl } from "./kit/plan-race";
import { TARGET_AUDIT } from "./kit/workload";

/**
 * Groups g1..gN, each with an insert-only table tI (audited on the target) and a
 * table kI of 20 rows updated in place (through stages), and subscription sI.
 */
async function groups(label: string, n: number): Promise<Env> {
  const env = await freshEnv(label);
  for (let i = 1; i <= n; i++) {
    const ddl = `create table t${i} (id int primary key, v int not null); create table k${i} (id int primary key, v int not null, w text)`;
    await env.source.query(ddl + `; insert into k${i} select g, 0, 'x' from generate_series(1, 20) g`);
    await env.target.query(ddl + `; insert into k${i} select g, 0, 'x' from generate_series(1, 20) g;` + compat(TARGET_AUDIT(`t${i}`), "target"));
    await env.source.query(`select dbsync.add_table('t${i}', 'g${i}'), dbsync.add_table('k${i}', 'g${i}')`);
    await env.source.query(`select dbsync.add_subscription('s${i}', 'g${i}', $1, copy_data => false)`, [env.targetUrl]);
  }
  return env;
}

/** Writers flat out, one per group: each transaction inserts a row of tI and updates a row of kI. */
class Writers {
  private stopped = false;
  private loops: Promise<void>[] = [];
  private next = new Map<number, number>();

  constructor(private readonly source: Pool) {}

  start(i: number) {
    this.loops.push(
      (async () => {
        while (!this.stopped) {
          const id = (this.next.get(i) ?? 0) + 1;
          this.next.set(i, id);
          // (A table DDL rewrites meanwhile may refuse one; the next goes on.)
          await this.source
            .query(`with u as (update k${i} set v = v + 1 where id = $2) insert into t${i} (id, v) values ($1, $1)`, [id, 1 + (id % 20)])
            .catch(() => undefined);
        }
      })(),
    );
  }

  async stop() {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

const maxId = (p: Pool, t: string) => value<number>(p, `select coalesce(max(id), 0) from ${t}`);

/** What a failed wait shows: dbsync.status and the sidecars' last output. */
async function why(env: Env, sidecars: Sidecar[]): Promise<string> {
  const st = await env.source.query("select name, state, backlog_events, error_count, last_error from dbsync.status order by name");
  return `${JSON.stringify(st.rows)}\n${sidecars.map((s) => s.output().slice(-3000)).join("\n---\n")}`;
}

/**
 * Each of `tables` on the target reaches the id the source has now, while the
 * writers go on: every subscription gets its turn.
 */
async function progressed(env: Env, tables: string[], sidecars: Sidecar[], what: string) {
  const want = await Promise.all(tables.map((t) => maxId(env.source, t)));
  await explained(
    env,
    sidecars,
    until(
      `${what}: ${tables.map((t, i) => `${t} >= ${want[i]}`).join(", ")} on the target`,
      async () => (await Promise.all(tables.map((t) => maxId(env.target, t)))).every((m, i) => m >= want[i]),
      60_000,
      100,
    ),
  );
}

/** A wait that, when it times out, shows why (dbsync.status, the sidecars' output). */
async function explained(env: Env, sidecars: Sidecar[], wait: Promise<void>) {
  await wait.catch(async (err) => {
    throw new Error(`${(err as Error).message}\n${await why(env, sidecars)}`);
  });
}

/** Rows of tI's audit inserted more than once by committed applies (a batch applied twice). */
async function twice(env: Env, tables: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of tables) {
    const n = await value<number>(env.target, `select count(*)::int from (select id from ${t}_audit group by id having count(*) > 1) x`);
    if (n) out[t] = n;
  }
  return out;
}

async function inSync(env: Env, subs: string[], sidecars: Sidecar[]) {
  for (const s of subs) {
    if (await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [s])) continue;
    assert.fail(`${s} not in sync\n${await why(env, sidecars)}`);
  }
}

for (const concurrency of [1, 2]) {
  test(`--concurrency ${concurrency}: pause, resume, resync_table, execute_ddl, remove_table and drop_subscription while subscriptions take turns`, async () => {
    const env = await groups(`sched_api_${concurrency}`, 3);
    // A second table in g1 that remove_table takes out.
    await env.source.query("create table r1 (id int primary key)");
    await env.target.query("create table r1 (id int primary key)");
    await env.source.query("select dbsync.add_table('r1', 'g1')");
    const writers = new Writers(env.source);
    for (let i = 1; i <= 3; i++) writers.start(i);
    const sidecar = startSidecar(env.sourceUrl, ["--concurrency", String(concurrency), "--poll-interval", "200"], {
      DBSYNC_LOG_LEVEL: "debug",
      DBSYNC_LOG_FORMAT: "json",
    });
    const all = ["t1", "t2", "t3"];
    try {
      await progressed(env, all, [sidecar], "start");

      // Paused at any point of its turn: nothing committed after pause returned is applied.
      await env.source.query("select dbsync.pause('s1')");
      const paused = await maxId(env.source, "t1");
      await progressed(env, ["t2", "t3"], [sidecar], "s1 paused");
      assert.ok((await maxId(env.target, "t1")) <= paused, "a paused subscription was applied");
      await env.source.query("select dbsync.resume('s1')");
      await progressed(env, all, [sidecar], "s1 resumed");

      await env.source.query("select dbsync.resync_table('s2', 't2')");
      await progressed(env, all, [sidecar], "t2 resynced");

      // DDL while the writers go on (they name their columns).
      await env.source.query("select dbsync.execute_ddl('g3', 'alter table k3 add column x int not null default 7')");
      await progressed(env, all, [sidecar], "k3 gained a column");
      await env.source.query("select dbsync.execute_ddl('g3', 'alter table k3 alter column v type bigint, drop column w')");
      await progressed(env, all, [sidecar], "k3 changed");

      await env.source.query("insert into r1 values (1)");
      await until("r1's row", async () => (await value<number>(env.target, "select count(*)::int from r1")) === 1, 60_000);
      await env.source.query("select dbsync.remove_table('r1')");
      await env.source.query("insert into r1 values (2)");

      await env.source.query("select dbsync.drop_subscription('s2')");
      const dropped = await maxId(env.source, "t2");
      await progressed(env, ["t1", "t3"], [sidecar], "s2 dropped");
      assert.ok((await maxId(env.target, "t2")) <= dropped, "a dropped subscription was applied");

      await writers.stop();
      await inSync(env, ["s1", "s3"], [sidecar]);
      await assertTablesEqual(env.source, env.target, ["t1", "k1", "t3", "k3"]);
      assert.equal(await value<number>(env.target, "select count(*)::int from r1"), 1, "a removed table was applied");
      assert.deepEqual(await twice(env, all), {}, "rows inserted twice by committed applies");
      const st = await env.source.query("select name, last_error from dbsync.status where last_error is not null");
      assert.deepEqual(st.rows, [], "errors recorded");
      const errors = sidecar.output().split("\n").filter((l) => /"level":(50|60)/.test(l));
      assert.deepEqual(errors, [], "errors in the sidecar's log");
    } finally {
      await writers.stop();
      assert.equal(await sidecar.stop(), 0, sidecar.output().slice(-3000));
    }
  });
}

/** How many subscriptions' apply locks are held (an applier holds its own from its first batch until it lets go). */
const applyLocks = (env: Env) =>
  value<number>(env.source, "select count(*)::int from pg_locks where locktype = 'advisory' and classid = dbsync._lock_class('apply')::oid and granted");

test("two dbsync run processes of --concurrency 1 share four subscriptions in turns, each SIGKILLed right after a slot was given up and started again: none starved, nothing applied twice", async () => {
  const env = await groups("sched_two_procs", 4);
  const writers = new Writers(env.source);
  for (let i = 1; i <= 4; i++) writers.start(i);
  const start = () => startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"]);
  const procs = [start(), start()];
  const all = ["t1", "t2", "t3", "t4"];
  try {
    await progressed(env, all, procs, "start");
    await progressed(env, all, procs, "turns");
    for (const k of [0, 1]) {
      // Both slots applying, then one let go (a turn over, or a loop caught up): kill at once.
      await until("two appliers", async () => (await applyLocks(env)) === 2, 60_000, 20);
      await until("an applier let go", async () => (await applyLocks(env)) < 2, 60_000, 5);
      procs[k].proc.kill("SIGKILL");
      await procs[k].stop();
      await progressed(env, all, procs, `process ${k} killed`);
      procs[k] = start();
      await progressed(env, all, procs, `process ${k} restarted`);
    }
    await writers.stop();
    await inSync(env, ["s1", "s2", "s3", "s4"], procs);
    await assertTablesEqual(env.source, env.target, [...all, "k1", "k2", "k3", "k4"]);
    assert.deepEqual(await twice(env, all), {}, "rows inserted twice by committed applies");
    for (const p of procs) assert.equal(p.proc.exitCode, null, p.output());
  } finally {
    await writers.stop();
    for (const p of procs) await p.stop();
  }
});

test("--concurrency 3 (a slot left free: the caught-up applier lingers), one subscription flat out and one caught up: SIGKILL while the caught-up one lingers with its lock, twice, then restart: nothing lost, nothing applied twice", async () => {
  const env = await groups("sched_linger_kill", 2);
  const writers = new Writers(env.source);
  writers.start(1);
  const start = () => startSidecar(env.sourceUrl, ["--concurrency", "3", "--poll-interval", "200"]);
  let sidecar = start();
  let next = 0;
  // s2's applier lingers: in sync, its lock held.
  const lingering = async () =>
    (await maxId(env.target, "t2")) === next &&
    (await value<boolean>(env.source, `select exists (select from pg_locks l join dbsync.subscriptions s on l.objid = s.sub_id
       where l.locktype = 'advisory' and l.classid = dbsync._lock_class('apply')::oid and l.granted and s.name = 's2')`));
  try {
    for (let k = 1; k <= 2; k++) {
      await env.source.query("insert into t2 (id, v) values ($1, 0)", [++next]);
      await explained(env, [sidecar], until(`s2 applied row ${next} and lingers`, lingering, 60_000, 20));
      sidecar.proc.kill("SIGKILL");
      await sidecar.stop();
      await env.source.query("insert into t2 (id, v) values ($1, 0)", [++next]);
      sidecar = start();
      await progressed(env, ["t1", "t2"], [sidecar], `restart ${k}`);
    }
    await writers.stop();
    await inSync(env, ["s1", "s2"], [sidecar]);
    await assertTablesEqual(env.source, env.target, ["t1", "t2", "k1", "k2"]);
    assert.deepEqual(await twice(env, ["t1", "t2"]), {}, "rows inserted twice by committed applies");
  } finally {
    await writers.stop();
    await sidecar.stop();
  }
});

test("two dbsync run processes of --concurrency 1 and two subscriptions under writes that never pause: no slot given up, as no subscription waits for one (it was, every 3 s, for the other process's subscription)", async () => {
  const env = await groups("sched_two_two", 2);
  const writers = new Writers(env.source);
  for (let i = 1; i <= 2; i++) writers.start(i);
  const start = () => startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" });
  const procs = [start(), start()];
  const yields = () => procs.map((p) => p.output().split("\n").filter((l) => l.includes('"apply slot given up')).length);
  try {
    // (At start-up both processes start both subscriptions' loops: a loop that did
    // not count for the job runner turned a wake-up away, and gave its slot up for it.)
    await progressed(env, ["t1", "t2"], procs, "start");
    await progressed(env, ["t1", "t2"], procs, "settled");
    const before = yields();
    // Writers going on for a while: with the bug a slot was given up every 3 s.
    const end = Date.now() + 8000;
    for (let round = 1; Date.now() < end; round++) await progressed(env, ["t1", "t2"], procs, `round ${round}`);
    const after = yields();
    console.log(`# slots given up by each process: ${before.join(", ")} once settled, ${after.join(", ")} 8 s later`);
    // A wake-up queued for the subscription the other process applies is not one waiting for a slot.
    assert.deepEqual(after, before, "slots given up while no subscription waited for one");
  } finally {
    await writers.stop();
    for (const p of procs) await p.stop();
  }
});

test("--concurrency 1, writes that never pause, and a second subscription another process applies, looked at between two of its batches (its apply lock let go, its wake-up due): no slot given up for it (the two processes' test above gave one up once at high load)", async () => {
  const env = await groups("sched_between", 2);
  const writers = new Writers(env.source);
  for (let i = 1; i <= 2; i++) writers.start(i);
  // The other process, as this one sees it at every look: s2's last batch applied
  // just now, its lock let go. (It applies nothing: this process's poll keeps s2's
  // wake-up due, and its runner, at --concurrency 1, turns it away while s1 runs.)
  let between = true;
  const other = (async () => {
    while (between) {
      await env.source.query("update dbsync.subscriptions set applied_at = now() where name = 's2'");
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" });
  // s1's: should s1 catch up once, this process applies s2 (its wake-up due first),
  // and s2 gives its slot up for s1, rightly, a turn later.
  const yields = () =>
    sidecar
      .output()
      .split("\n")
      .filter((l) => l.includes('"apply slot given up') && l.endsWith("}") && JSON.parse(l).subscription === "s1").length;
  try {
    await progressed(env, ["t1"], [sidecar], "start");
    // s1's turn lasts: a slot given up for s2 would be within 3 s (TURN_MS, then one look a second).
    const end = Date.now() + 8000;
    for (let round = 1; Date.now() < end; round++) await progressed(env, ["t1"], [sidecar], `round ${round}`);
    assert.equal(yields(), 0, "s1's slot given up for a subscription applied a moment ago");
  } finally {
    between = false;
    await other;
    await writers.stop();
    await sidecar.stop();
  }
});

test("a subscription whose target refuses its rows, among others at --concurrency 1: its retries and the others' turns go on, its error stays visible, and it catches up once the target is fixed", async () => {
  const env = await groups("sched_error", 3);
  await env.target.query("alter table t3 add constraint refuse check (v < 0)");
  const writers = new Writers(env.source);
  for (let i = 1; i <= 3; i++) writers.start(i);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"]);
  const errorCount = () => value<number>(env.source, "select error_count::int from dbsync.status where name = 's3'");
  try {
    await explained(env, [sidecar], until("s3 in error", async () => (await errorCount()) > 0, 60_000));
    const errors = await errorCount();
    await progressed(env, ["t1", "t2"], [sidecar], "s3 in error");
    await explained(env, [sidecar], until(`s3 retried (error_count > ${errors})`, async () => (await errorCount()) > errors, 60_000));
    const st = (await env.source.query("select state, last_error_sqlstate from dbsync.status where name = 's3'")).rows[0];
    assert.deepEqual(st, { state: "error", last_error_sqlstate: "23514" });
    await env.target.query("alter table t3 drop constraint refuse");
    await progressed(env, ["t1", "t2", "t3"], [sidecar], "s3 fixed");
    await writers.stop();
    await inSync(env, ["s1", "s2", "s3"], [sidecar]);
    await assertTablesEqual(env.source, env.target, ["t1", "t2", "t3", "k1", "k2", "k3"]);
    assert.deepEqual(await twice(env, ["t1", "t2", "t3"]), {});
    assert.equal(await value(env.source, "select last_error from dbsync.status where name = 's3'"), null);
  } finally {
    await writers.stop();
    assert.equal(await sidecar.stop(), 0, sidecar.output().slice(-3000));
  }
});

test("execute_ddl between batches on a target two groups share (one apply connection, stages kept): add a column with a default, change a type, drop a column and its type; every table equal", async () => {
  const env = await freshEnv("sched_ddl_stages");
  // a (g1) and b (g2) on one target connection: a's enum column m apart, they are
  // alike, and share a stage once it is dropped.
  const ddl = `create type mood as enum ('sad', 'ok', 'happy');
    create table a (id int primary key, v int not null, w text, m mood default 'ok');
    create table b (id int primary key, v int not null, w text)`;
  const rows = "insert into a select g, 0, 'x' from generate_series(1, 50) g; insert into b select g, 0, 'x' from generate_series(1, 50) g";
  await env.source.query(ddl + ";" + rows);
  await env.target.query(ddl + ";" + rows);
  await env.source.query("select dbsync.add_table('a', 'g1'), dbsync.add_table('b', 'g2')");
  await env.source.query("select dbsync.add_subscription('s1', 'g1', $1, copy_data => false), dbsync.add_subscription('s2', 'g2', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"]);
  let stopped = false;
  // Updates of several rows a statement (staged, not inserted straight), both groups, flat out.
  const writer = (t: string) =>
    (async () => {
      for (let n = 0; !stopped; n++) await env.source.query(`update ${t} set v = v + 1 where id % 7 = ${n % 7}`).catch(() => undefined);
    })();
  const loops = [writer("a"), writer("b")];
  const same = async (what: string) => {
    const want = await Promise.all(["a", "b"].map((t) => value<number>(env.source, `select sum(v)::int from ${t}`)));
    await explained(env, [sidecar], until(`${what}: a and b applied`, async () => {
      const got = await Promise.all(["a", "b"].map((t) => value<number>(env.target, `select sum(v)::int from ${t}`)));
      return got.every((g, i) => g >= want[i]);
    }, 60_000));
  };
  try {
    await same("start");
    for (const d of [
      "alter table a add column x int not null default 7",
      "alter table a alter column w type varchar(20)",
      "alter table a alter column v type bigint",
      // A column dropped between a batch's tick and its plan's read of the table.
      "alter table a add column y text default 'y'",
      "alter table a drop column y",
      "alter table a drop column m; drop type mood",
      // a now alike b: they share a stage.
      "alter table a alter column v type int, alter column w type text, drop column x",
    ]) {
      await env.source.query("select dbsync.execute_ddl('g1', $1)", [d]);
      await same(d);
    }
    stopped = true;
    await Promise.all(loops);
    await inSync(env, ["s1", "s2"], [sidecar]);
    await assertTablesEqual(env.source, env.target, ["a", "b"]);
    const st = await env.source.query("select name, error_count from dbsync.status where error_count > 0");
    assert.deepEqual(st.rows, [], `errors recorded:\n${sidecar.output().slice(-3000)}`);
    // (The DDL changes no setting of the apply session: its connection is kept, with its stages.)
    assert.doesNotMatch(sidecar.output(), /session changed/);
  } finally {
    stopped = true;
    await Promise.all(loops);
    assert.equal(await sidecar.stop(), 0, sidecar.output().slice(-3000));
  }
});

test("a column dropped by execute_ddl after a batch's snapshot, before its plan locked the table: the plan asks for a new snapshot (40001), not a read of the dropped column", async () => {
  const env = await freshEnv("sched_ddl_snapshot");
  await setup(env, "create table t (id int primary key, v int, m text)", ["t"]);
  await env.source.query("insert into t values (1, 1, 'x')");
  // (The plan's statements name t's columns as of the snapshot, and are parsed with the catalog of now.)
  const err = await planErrorAfterDdl(env, "alter table t drop column m");
  assert.equal(err.code, "40001", err.message);
});

/** What the turns test reaches of an Appliers (private at compile time only). */
interface AppliersInside {
  applier(name: string): unknown;
  turnOver(name: string): Promise<boolean>;
  waitForSlot(name: string): Promise<void>;
  running: Map<string, unknown>;
}

/**
 * `subs` subscriptions whose writes never pause (appliers that never catch up: a
 * 100 ms batch after another) in one process of `concurrency` slots, wake-ups in
 * the in-process queue, for `ms`: how many wake-ups were queued again while a slot
 * was free, and how many turns each subscription had.
 */
async function turns(subs: string[], concurrency: number, ms: number) {
  const log = createLog("silent");
  const abort = new AbortController();
  // The control pool's one question here (protocol.ts notApplying): no other process applies any.
  const control = { query: async (_sql: string, [names]: [string[]]) => ({ rows: names.map((name) => ({ name })) }) };
  const appliers = new Appliers({ sourceUrl: "postgres://nobody@127.0.0.1:1/none", concurrency }, control as never, NO_COUNTERS, log, abort.signal);
  const inside = appliers as unknown as AppliersInside;
  const started = new Map(subs.map((s) => [s, 0]));
  inside.applier = (name: string) => ({
    subscription: { group_id: 1 },
    async apply(signal: AbortSignal) {
      started.set(name, started.get(name)! + 1);
      for (;;) {
        await new Promise((r) => setTimeout(r, 100));
        if (signal.aborted) return "stopped";
        if (await inside.turnOver(name)) return "yielded";
      }
    },
    close: async () => undefined,
  });
  let refusedWithFreeSlot = 0;
  const waitForSlot = inside.waitForSlot.bind(appliers);
  inside.waitForSlot = (name: string) => {
    if (inside.running.size < concurrency && !inside.running.has(name)) refusedWithFreeSlot++;
    return waitForSlot(name);
  };
  const outages = new Outages(log);
  const tasks = { [APPLY_JOB]: async (p: unknown) => appliers.run((p as { subscription: string }).subscription) };
  // (Major 10: the in-process queue, LocalJobs.)
  const jobs = createJobs({ sourceUrl: undefined, concurrency, pollIntervalMs: 1000, log, outages, onRestart: async () => undefined, tasks }, 10);
  appliers.jobs = jobs;
  await jobs.start();
  for (const s of subs) await jobs.wakeApplier(s);
  await new Promise((r) => setTimeout(r, ms));
  abort.abort();
  await jobs.stop();
  await appliers.close();
  return { refusedWithFreeSlot, started: Object.fromEntries(started) };
}

test("slots in turns: a subscription that gave up its slot is not refused a free one for another that gave its own up since (the slot stayed free up to 3 s of every 5)", async () => {
  const [two, three] = await Promise.all([turns(["sa", "sb"], 1, 9000), turns(["sa", "sb", "sc"], 2, 9000)]);
  console.log(`# turns of 2 subscriptions at --concurrency 1: ${JSON.stringify(two)}; of 3 at --concurrency 2: ${JSON.stringify(three)}`);
  assert.equal(two.refusedWithFreeSlot, 0, JSON.stringify(two));
  // Each turn lasts at least 2 s: in 9 s, 5 of them at the most; the slot never idle, 3 at least.
  assert.ok(Object.values(two.started).reduce((a, b) => a + b) >= 3, JSON.stringify(two));
  assert.ok(Object.values(three.started).every((n) => n >= 2), JSON.stringify(three));
});
