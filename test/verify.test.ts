// dbsync.verify_table and the verify job: one consistent point of the stream on
// both sides while writes go on, exact differences, repair, and the CLI face.
// The job runs here by calling runVerify directly, next to a real sidecar that
// streams; the last test goes through the sidecar once it registers the job.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { createLog } from "../src/log";
import { verifyCommand } from "../src/verify/cli";
import { runVerify } from "../src/verify/jobs";
import { Env, freshEnv, rows, seeded, sleep, SOURCE_MAJOR, sqlError, startSidecar, tableText, TARGET_MAJOR, until, value } from "./helpers";

const log = createLog(process.env.DBSYNC_LOG_LEVEL ?? "warn");

async function setup(label: string, ddl: (t: string) => string, fill: string, tables: string[]) {
  const env = await freshEnv(label);
  for (const t of tables) {
    await env.source.query(ddl(t));
    await env.target.query(ddl(t));
    await env.source.query(fill.replaceAll("$T", t));
    await env.source.query(`analyze ${t}`);
    await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  }
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  return env;
}

/** Random writes to rows with id in [1, maxId] (and new ids above 10,000,000) until stopped. */
function writer(source: Pool, table: string, stop: { done: boolean }, seed: number, maxId: number, composite = false) {
  let next = 10_000_000 + seed * 1_000_000;
  const key = composite ? "region = 'r' || ($1 % 3) and id = $1" : "id = $1";
  const rng = seeded(`verify/${table}/writer${seed}`);
  return (async () => {
    while (!stop.done) {
      const r = rng.next();
      const id = rng.int(1, maxId);
      if (r < 0.3) {
        const n = next++;
        if (composite) await source.query(`insert into ${table} values ('r' || ($1 % 3), $1, 'new', 1)`, [n]);
        else await source.query(`insert into ${table} values ($1, 1, 'new', 1)`, [n]);
      } else if (r < 0.7) await source.query(`update ${table} set amount = amount + 1, payload = 'upd' where ${key}`, [id]);
      else if (r < 0.85) await source.query(`delete from ${table} where ${key}`, [id]);
      else if (composite) await source.query(`insert into ${table} values ('r' || ($1 % 3), $1, 're', 2) on conflict do nothing`, [id]);
      else await source.query(`insert into ${table} values ($1, 2, 're', 2) on conflict do nothing`, [id]);
      // Paced: flat-out writers took the CPUs from the test files running alongside,
      // and grew the backlog each killed copy has to read again.
      await sleep(rng.int(1, 10));
    }
  })();
}

interface Verification {
  state: string;
  tick_id: number;
  rows_compared: number;
  chunks: number;
  chunks_differing: number;
  differing_count: number;
  rows_missing: number;
  rows_extra: number;
  rows_different: number;
  differing_keys: string[];
  rows_repaired: number;
  error: string | null;
  hold_tick: number | null;
}

async function verification(env: Env, id: number | string): Promise<Verification> {
  const [r] = await rows<Verification>(
    env.source,
    `select state, tick_id::int, rows_compared::int, chunks, chunks_differing, differing_count::int, rows_missing::int, rows_extra::int,
            rows_different::int, differing_keys, rows_repaired::int, error, hold_tick::int
       from dbsync.verifications where verification_id = $1`,
    [id],
  );
  return r;
}

/**
 * Runs the verification here, as the sidecar's job would. If the sidecar (which runs
 * verify jobs) took it first, waits for its outcome instead. `ran`: this test ran it
 * (with its chunk size).
 */
async function runOrAwait(env: Env, id: number, chunkRows: number): Promise<Verification & { ran: boolean }> {
  const outcome = await runVerify(env.sourceUrl, env.source, id, log, { chunkRows });
  if (outcome !== "done") {
    assert.ok(outcome === "busy" || outcome === "nothing", `verification ${id}: ${outcome}`);
    await until("the sidecar's verification", async () => ["done", "error"].includes((await verification(env, id)).state), 120_000);
  }
  const v = await verification(env, id);
  assert.equal(v.state, "done", `verification failed: ${v.error}`);
  return { ...v, ran: outcome === "done" };
}

async function verify(env: Env, table: string, repair: boolean, chunkRows: number) {
  const id = await value<string>(env.source, "select dbsync.verify_table('s', $1, $2)::text", [table, repair]);
  return runOrAwait(env, Number(id), chunkRows);
}

/** `dbsync verify` (src/verify/cli.ts) while the job runs. */
async function cli(env: Env, table: string, repair: boolean, chunkRows: number): Promise<{ code: number; out: string; id: number }> {
  const lines: string[] = [];
  const before = Number(await value(env.source, "select coalesce(max(verification_id), 0) from dbsync.verifications"));
  const [code, id] = await Promise.all([
    verifyCommand(env.sourceUrl, "s", table, { repair, print: (l) => lines.push(l), pollMs: 100, timeoutSeconds: 120 }),
    (async () => {
      let id = 0;
      await until("queued", async () => {
        id = Number(await value(env.source, "select coalesce(max(verification_id), 0) from dbsync.verifications"));
        return id > before;
      });
      await runOrAwait(env, id, chunkRows);
      return id;
    })(),
  ]);
  return { code, out: lines.join("\n"), id };
}

/** Runs the verification (or waits for the sidecar's run of it) and returns its outcome, whatever it is. */
async function runToEnd(env: Env, id: number, chunkRows: number): Promise<Verification> {
  const outcome = await runVerify(env.sourceUrl, env.source, id, log, { chunkRows, waitTimeoutMs: 60_000 });
  if (outcome !== "done" && outcome !== "error") {
    assert.ok(outcome === "busy" || outcome === "nothing", `verification ${id}: ${outcome}`);
    await until("the sidecar's verification", async () => ["done", "error"].includes((await verification(env, id)).state), 120_000);
  }
  return verification(env, id);
}

test("verify_table refuses bad input with a hint", async () => {
  const env = await freshEnv("verify_api");
  await env.source.query("create table a (id int primary key); create table other (id int primary key)");
  await env.source.query("select dbsync.add_table('a', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const cases: [string, unknown[], string, RegExp][] = [
    ["select dbsync.verify_table('nope', 'a')", [], "42704", /unknown subscription "nope"/],
    ["select dbsync.verify_table('s', 'other')", [], "42704", /other is not replicated by subscription "s"/],
    ["select dbsync.verify_table('s', 'a')", [], "55000", /a is not copied to subscription "s" yet \(state pending\)/],
    ["select dbsync.verify_table('s', null)", [], "22023", /must not be NULL/],
    ["select dbsync.verify_table('s', 'a', null)", [], "22023", /repair must be true or false/],
  ];
  for (const [sql, params, code, message] of cases) {
    const err = await sqlError(env.source, sql, params);
    assert.equal(err.code, code, `${sql}: ${err.message}`);
    assert.match(err.message, message);
    assert.ok(err.hint && err.hint.length > 10, `${sql}: no hint`);
  }
  await env.source.query("update dbsync.subscription_tables set state = 'streaming'");
  await env.source.query("select dbsync.pause('s')");
  const err = await sqlError(env.source, "select dbsync.verify_table('s', 'a')");
  assert.match(err.message, /subscription "s" is paused/);
  assert.match(err.hint!, /dbsync\.resume\('s'\)/);
  assert.equal(await value(env.source, "select count(*)::int from dbsync.verifications"), 0);
  // Nothing in dbsync is open to PUBLIC.
  await env.source.query("create role verify_nobody login");
  const url = new URL(env.sourceUrl);
  url.username = "verify_nobody";
  url.password = "";
  const c = new Pool({ connectionString: url.toString(), max: 1 });
  try {
    const denied = await sqlError(c, "select dbsync.verify_table('s', 'a')");
    assert.equal(denied.code, "42501");
    assert.equal((await sqlError(c, "select * from dbsync.verifications")).code, "42501");
  } finally {
    await c.end();
  }
});

test("a hold whose job is gone does not stop the stream", async () => {
  const env = await setup(
    "verify_stale",
    (t) => `create table ${t} (id bigint primary key, grp int not null, payload text, amount numeric)`,
    "insert into $T select g, g % 10, 'x' || g, g from generate_series(1, 100) g",
    ["t"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    // A verification left 'running' with a hold by a process that died.
    await env.source.query(
      `insert into dbsync.verifications (subscription, sub_id, table_id, table_name, state, tick_id, hold_tick)
       select 's', sub_id, table_id, 'public.t', 'running', s.position_tick, s.position_tick
         from dbsync.subscriptions s join dbsync.subscription_tables using (sub_id)`,
    );
    await env.source.query("insert into t values (1000, 1, 'after', 1)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.equal(await value(env.target, "select count(*)::int from t where id = 1000"), 1);
    // The sidecar starts it over, and it then holds the stream only while it runs.
    await runOrAwait(env, 1, 1000);
    const v = await verification(env, 1);
    assert.equal(v.state, "done");
    assert.equal(v.differing_count, 0);
    assert.equal(v.hold_tick, null);
    assert.deepEqual(await rows(env.source, "select * from dbsync._verify_todo()"), []);
  } finally {
    await sidecar.stop();
  }
});

test("no false differences under concurrent writes (5 verifications), and the stream goes on", async () => {
  const env = await setup(
    "verify_load",
    (t) => `create table ${t} (id bigint primary key, grp int not null, payload text, amount numeric)`,
    "insert into $T select g, g % 10, repeat('x', 40) || g, g * 1.5 from generate_series(1, 50000) g",
    ["big"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  const stop = { done: false };
  let writers: Promise<void>[] = [];
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true);
    writers = [1, 2, 3, 4].map((i) => writer(env.source, "big", stop, i, 60_000));
    for (let i = 0; i < 5; i++) {
      const before = Number(await value(env.source, "select count(*) from dbsync.events"));
      const v = await verify(env, "big", false, 4000);
      assert.equal(v.differing_count, 0, `run ${i + 1}: ${v.differing_count} false differences: ${v.differing_keys.slice(0, 10)}`);
      assert.equal(v.chunks_differing, 0);
      assert.ok(v.rows_compared > 40_000, `run ${i + 1}: compared ${v.rows_compared} rows`);
      assert.ok(v.chunks >= (v.ran ? 10 : 5), `run ${i + 1}: ${v.chunks} chunks`);
      assert.equal(v.hold_tick, null);
      // Writes went on during the verification, and the stream passes its tick.
      assert.ok(Number(await value(env.source, "select count(*) from dbsync.events")) > before, "writes during verify");
      await until("stream past the verification tick", async () =>
        Number(await value(env.source, "select position_tick from dbsync.subscriptions")) > v.tick_id);
    }
    stop.done = true;
    await Promise.all(writers);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true);
    assert.deepEqual(await tableText(env.target, "big"), await tableText(env.source, "big"));
  } finally {
    stop.done = true;
    await Promise.all(writers);
    await sidecar.stop();
  }
});

test("finds exactly the rows changed by hand on the target, repairs them under writes, then reports none", async () => {
  const env = await setup(
    "verify_repair",
    (t) => `create table ${t} (region text, id int, payload text, amount numeric, primary key (region, id))`,
    "insert into $T select 'r' || (g % 3), g, 'p' || g, g from generate_series(1, 30000) g",
    ["acct"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  const stop = { done: false };
  let writers: Promise<void>[] = [];
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true);
    // Writers keep to ids up to 20,000 (and new ids); the hand changes are above.
    writers = [1, 2].map((i) => writer(env.source, "acct", stop, i, 20_000, true));
    await env.target.query(`
      update acct set payload = 'hand' where (region, id) in (('r1', 25000), ('r0', 27000));
      update acct set amount = null where region = 'r2' and id = 29999;
      delete from acct where (region, id) in (('r0', 24000), ('r2', 28001));
      insert into acct values ('r9', 5, 'extra', 0), ('zz', 29000, 'extra', 0)`);
    const expected = ["(r0,24000)", "(r2,28001)", "(r9,5)", "(zz,29000)", "(r1,25000)", "(r0,27000)", "(r2,29999)"].sort();

    // The CLI face: it queues, the job runs, it prints what differs; exit code 4.
    const first = await cli(env, "acct", false, 2500);
    assert.equal(first.code, 4, first.out);
    const found = await verification(env, first.id);
    assert.deepEqual([...found.differing_keys].sort(), expected);
    assert.deepEqual([found.rows_missing, found.rows_extra, found.rows_different], [2, 2, 3]);
    assert.equal(found.rows_repaired, 0);
    assert.match(first.out, /7 rows differ: 2 missing on the target, 2 only on the target, 3 different/);

    // Repeat detection is stable, then repair.
    assert.deepEqual([...(await verify(env, "acct", false, 2500)).differing_keys].sort(), expected);
    const second = await cli(env, "acct", true, 2500);
    assert.equal(second.code, 0, second.out);
    const repaired = await verification(env, second.id);
    assert.equal(repaired.rows_repaired, 7);
    assert.deepEqual([...repaired.differing_keys].sort(), expected);
    assert.match(second.out, /repaired 7 rows/);

    // Still under writes: nothing differs any more.
    const again = await verify(env, "acct", false, 2500);
    assert.equal(again.differing_count, 0, `after repair: ${again.differing_keys}`);
    stop.done = true;
    await Promise.all(writers);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true);
    assert.deepEqual(await tableText(env.target, "acct"), await tableText(env.source, "acct"));
    const last = await verify(env, "acct", false, 2500);
    assert.equal(last.differing_count, 0);
    assert.equal(last.rows_compared, Number(await value(env.source, "select count(*) from acct")));
  } finally {
    stop.done = true;
    await Promise.all(writers);
    await sidecar.stop();
  }
});

test("keys ordered differently on the two sides (collations) give no false differences", async () => {
  const env = await freshEnv("verify_collation");
  const icu = await value<number>(env.source, "select count(*)::int from pg_collation where collname = 'und-x-icu'");
  // Source: ICU order ('a' < 'B'); target: byte order ('B' < 'a'). Chunk bounds taken
  // from the source fall elsewhere among the target's keys.
  const srcColl = icu ? `collate "und-x-icu"` : "";
  await env.source.query(`create table words (w text ${srcColl} primary key, n int)`);
  await env.target.query(`create table words (w text collate "C" primary key, n int)`);
  await env.source.query(
    `insert into words select s, i from (select i, case when i % 2 = 0 then upper(md5(i::text)) else md5(i::text) end as s
       from generate_series(1, 3000) i) x`,
  );
  await env.source.query("select dbsync.add_table('words', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    const v = await verify(env, "words", false, 97);
    assert.equal(v.differing_count, 0, `false differences: ${v.differing_keys.slice(0, 5)}`);
    assert.equal(v.rows_compared, 3000);
    if (icu && v.ran) assert.ok(v.chunks_differing > 0, "the collations did put boundary keys in other chunks");
    await env.target.query("delete from words where n = 10; update words set n = -1 where n = 11");
    const d = await verify(env, "words", true, 97);
    assert.deepEqual([d.rows_missing, d.rows_extra, d.rows_different, d.rows_repaired], [1, 0, 1, 2]);
    assert.equal((await verify(env, "words", false, 97)).differing_count, 0);
  } finally {
    await sidecar.stop();
  }
});

test("a partitioned table: differences found and repaired across partitions", async () => {
  const env = await freshEnv("verify_part");
  // PostgreSQL 10: no key on a partitioned table, one on each partition.
  const pk10 = Math.min(SOURCE_MAJOR, TARGET_MAJOR) < 11;
  const ddl = `create table m (day date not null, id int not null, v text${pk10 ? "" : ", primary key (day, id)"}) partition by range (day);
    create table m_1 partition of m ${pk10 ? "(primary key (day, id))" : ""} for values from ('2024-01-01') to ('2024-02-01');
    create table m_2 partition of m ${pk10 ? "(primary key (day, id))" : ""} for values from ('2024-02-01') to ('2024-03-01');`;
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query("insert into m select date '2024-01-01' + (g % 59), g, 'v' || g from generate_series(1, 5000) g");
  await env.source.query("select dbsync.add_table('m', 'g', $1)", [pk10 ? ["day", "id"] : null]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.equal((await verify(env, "m", false, 700)).differing_count, 0);
    await env.target.query(`delete from m_2 where id = 100; update m_1 set v = 'x' where id = 3;
      insert into m values ('2024-02-20', 999999, 'extra')`);
    const v = await verify(env, "m", true, 700);
    assert.deepEqual([...v.differing_keys].sort(), ["(2024-01-04,3)", "(2024-02-11,100)", "(2024-02-20,999999)"]);
    assert.equal(v.rows_repaired, 3);
    assert.equal((await verify(env, "m", false, 700)).differing_count, 0);
    assert.deepEqual(await tableText(env.target, "m"), await tableText(env.source, "m"));
  } finally {
    await sidecar.stop();
  }
});

test("a verification interrupted by a stopping sidecar goes back to the queue and holds nothing", async () => {
  const env = await setup(
    "verify_stop",
    (t) => `create table ${t} (id bigint primary key, grp int not null, payload text, amount numeric)`,
    "insert into $T select g, g % 10, 'x' || g, g from generate_series(1, 20000) g",
    ["t"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    const id = Number(await value(env.source, "select dbsync.verify_table('s', 't', true)"));
    const abort = new AbortController();
    const running = runVerify(env.sourceUrl, env.source, id, log, { chunkRows: 100, signal: abort.signal });
    await until("comparing", async () => Number((await verification(env, id)).rows_compared) > 0);
    abort.abort();
    assert.equal(await running, "stopped");
    const v = await verification(env, id);
    // The sidecar may already have started it over.
    assert.ok(["queued", "running", "done"].includes(v.state), v.state);
    await env.source.query("insert into t values (0, 0, 'after', 0)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await runOrAwait(env, id, 5000);
  } finally {
    await sidecar.stop();
  }
});

test("end to end: `dbsync verify` through the sidecar", async () => {
  const env = await setup(
    "verify_e2e",
    (t) => `create table ${t} (id bigint primary key, payload text)`,
    "insert into $T select g, 'p' || g from generate_series(1, 20000) g",
    ["e"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true);
    await env.target.query("delete from e where id = 7; update e set payload = 'x' where id = 19999");
    const out: string[] = [];
    assert.equal(await verifyCommand(env.sourceUrl, "s", "e", { print: (l) => out.push(l), pollMs: 100, timeoutSeconds: 60 }), 4, out.join("\n"));
    assert.equal(await verifyCommand(env.sourceUrl, "s", "e", { repair: true, print: (l) => out.push(l), pollMs: 100, timeoutSeconds: 60 }), 0, out.join("\n"));
    assert.equal(await verifyCommand(env.sourceUrl, "s", "e", { print: (l) => out.push(l), pollMs: 100, timeoutSeconds: 60 }), 0, out.join("\n"));
    assert.match(out.join("\n"), /no differences/);
  } finally {
    await sidecar.stop();
  }
});

test("`dbsync verify <subscription>`: every table, one outcome each and one exit code; verify_subscription is all or nothing", async () => {
  const env = await setup(
    "verify_all",
    (t) => `create table ${t} (id bigint primary key, payload text)`,
    "insert into $T select g, 'p' || g from generate_series(1, 3000) g",
    ["va", "vb"],
  );
  // A third table whose copy cannot start: the target lacks a column.
  await env.source.query("create table vc (id int primary key, x text, y text); insert into vc values (1, 'a', 'b')");
  await env.target.query("create table vc (id int primary key, x text)");
  await env.source.query("select dbsync.add_table('vc', 'g')");
  const run = async (repair = false) => {
    const out: string[] = [];
    const code = await verifyCommand(env.sourceUrl, "s", undefined, { repair, print: (l) => out.push(l), pollMs: 100, timeoutSeconds: 120 });
    return { code, out: out.join("\n") };
  };
  // The SQL face refuses what verify_table refuses, and then queues nothing.
  assert.match((await sqlError(env.source, "select * from dbsync.verify_subscription('nope')")).message, /unknown subscription "nope"/);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await until("va and vb copied, vc failing", async () =>
      JSON.stringify(await rows(env.source, "select table_name, state from dbsync.table_status order by 1")) ===
      JSON.stringify([{ table_name: "public.va", state: "streaming" }, { table_name: "public.vb", state: "streaming" }, { table_name: "public.vc", state: "error" }]), 60_000);
    await env.source.query("select dbsync.pause('s')");
    const paused = await sqlError(env.source, "select * from dbsync.verify_subscription('s')");
    assert.match(paused.message, /subscription "s" is paused/);
    assert.match(paused.hint!, /dbsync\.resume\('s'\)/);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.verifications"), 0);
    await env.source.query("select dbsync.resume('s')");

    await env.target.query("delete from vb where id = 7; update vb set payload = 'x' where id = 2999; insert into vb values (5000, 'extra')");
    const found = await run();
    assert.equal(found.code, 4, found.out);
    assert.match(found.out, /^verifications \d+, \d+: 3 table\(s\) of subscription "s"$/m);
    assert.match(found.out, /^public\.va: 3000 rows in \d+ chunks compared at tick \d+.*\nno differences$/m);
    assert.match(found.out, /^3 rows differ: 1 missing on the target, 1 only on the target, 1 different$/m);
    assert.match(found.out, /^keys: .*\b7\b/m);
    assert.match(found.out, /^public\.vc: not verified: not copied yet \(state error\): see dbsync\.table_status$/m);
    assert.match(found.out, /^subscription "s": 3 table\(s\): 1 equal, 1 with differences, 1 failed or not verified$/m);

    // Repaired: no differences left, but vc is still not verified.
    const repaired = await run(true);
    assert.equal(repaired.code, 1, repaired.out);
    assert.match(repaired.out, /^repaired 3 rows on the target$/m);
    assert.deepEqual(await tableText(env.target, "vb"), await tableText(env.source, "vb"));

    // Once vc is copied, every table is equal: exit 0; as JSON, one entry per table.
    await env.target.query("alter table vc add column y text");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '120 s')"), true, sidecar.output());
    const out: string[] = [];
    assert.equal(await verifyCommand(env.sourceUrl, "s", undefined, { json: true, print: (l) => out.push(l), pollMs: 100, timeoutSeconds: 120 }), 0);
    const doc = JSON.parse(out.join("\n"));
    assert.equal(doc.exit_code, 0);
    assert.deepEqual(doc.tables.map((t: { table_name: string; state: string; differing_count: string }) => [t.table_name, t.state, t.differing_count]), [
      ["public.va", "done", "0"],
      ["public.vb", "done", "0"],
      ["public.vc", "done", "0"],
    ]);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

test("a column added on the source only is reported, and once on both sides it is compared", async () => {
  const env = await setup(
    "verify_newcol",
    (t) => `create table ${t} (id bigint primary key, payload text)`,
    "insert into $T select g, 'p' || g from generate_series(1, 2000) g",
    ["c"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.equal((await verify(env, "c", false, 500)).differing_count, 0);
    // Not through execute_ddl: the target never gets the column.
    await env.source.query("alter table c add column extra int not null default 7");
    const id = Number(await value(env.source, "select dbsync.verify_table('s', 'c')"));
    const v = await runToEnd(env, id, 500);
    assert.equal(v.state, "error", `a column missing on the target passed: ${JSON.stringify(v)}`);
    assert.match(v.error ?? "", /target table "public"\."c" lacks column\(s\) "extra" that the source has/);
    assert.equal(v.hold_tick, null);
    // With the column on the target too, its values are compared like any other.
    await env.target.query("alter table c add column extra int not null default 7");
    assert.equal((await verify(env, "c", false, 500)).differing_count, 0);
    await env.target.query("update c set extra = 8 where id = 1234");
    const d = await verify(env, "c", true, 500);
    assert.deepEqual([d.rows_missing, d.rows_extra, d.rows_different, d.rows_repaired], [0, 0, 1, 1]);
    assert.deepEqual(d.differing_keys, ["1234"]);
    assert.equal(await value(env.target, "select extra from c where id = 1234"), 7);
    // The stream went on through all of it.
    await env.source.query("insert into c values (0, 'after', 9)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "c"), await tableText(env.source, "c"));
  } finally {
    await sidecar.stop();
  }
});

test("a table owner's casts on an enum key are never run by verify (nor its repair)", async () => {
  const env = await freshEnv("verify_hostile");
  // On both sides: an enum whose order is not its labels' text order, and casts to
  // and from text (implicit, to be picked wherever a cast could be) that record who ran them.
  const ddl = `create schema app;
    create type app.e as enum ('m', 'b', 'z', 'a');
    create table app.calls (who text, what text);
    grant usage on schema app to public;
    grant insert on app.calls to public;
    create function app.e_text(app.e) returns text language plpgsql as
      $f$ begin insert into app.calls values (current_user, 'e -> text'); return 'hostile'; end $f$;
    create function app.text_e(text) returns app.e language plpgsql as
      $f$ begin insert into app.calls values (current_user, 'text -> e'); return 'a'::app.e; end $f$;
    create cast (app.e as text) with function app.e_text(app.e) as implicit;
    create cast (text as app.e) with function app.text_e(text) as implicit;
    create table app.k (e app.e, n int, v text, primary key (e, n));`;
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query(
    "insert into app.k select ('{m,b,z,a}'::app.e[])[1 + g % 4], g, 'v' || g from generate_series(1, 3000) g",
  );
  await env.source.query("select dbsync.add_table('app.k', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    const clean = await verify(env, "app.k", false, 250);
    assert.equal(clean.differing_count, 0, `false differences: ${clean.differing_keys.slice(0, 5)}`);
    assert.equal(clean.rows_compared, 3000);
    assert.ok(!clean.ran || clean.chunks >= 12, `${clean.chunks} chunks`);
    // By n alone (unique here): "e = 'z'" would itself pick the implicit cast to text.
    await env.target.query(`delete from app.k where n = 2; update app.k set v = 'hand' where n = 1;
      insert into app.k values ('m', 999999, 'extra')`);
    const d = await verify(env, "app.k", true, 250);
    assert.deepEqual([d.rows_missing, d.rows_extra, d.rows_different, d.rows_repaired], [1, 1, 1, 3]);
    assert.deepEqual([...d.differing_keys].sort(), ["(b,1)", "(m,999999)", "(z,2)"]);
    assert.equal((await verify(env, "app.k", false, 250)).differing_count, 0);
    assert.deepEqual(await tableText(env.target, "app.k"), await tableText(env.source, "app.k"));
    assert.deepEqual(await rows(env.source, "select * from app.calls"), []);
    assert.deepEqual(await rows(env.target, "select * from app.calls"), []);
  } finally {
    await sidecar.stop();
  }
});

test("a verification's tick never falls between an applier's look for holds and its own tick", async () => {
  const env = await setup(
    "verify_race",
    (t) => `create table ${t} (id bigint primary key, payload text)`,
    "insert into $T select g, 'p' || g from generate_series(1, 1000) g",
    ["r"],
  );
  const sidecar = startSidecar(env.sourceUrl);
  const c = await env.source.connect();
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    // What dbsync.begin_batch does: look for holds, then take a tick, in one
    // READ COMMITTED transaction; here with a verification starting in between.
    await c.query("begin isolation level read committed");
    assert.equal(await value(c, "select dbsync._verify_hold('s')"), null);
    const id = Number(await value(env.source, "select dbsync.verify_table('s', 'r')"));
    const running = runOrAwait(env, id, 1000);
    running.catch(() => undefined);
    await until("the verification waits for the tick being taken", async () =>
      Number(await value(env.source,
        `select count(*) from pg_locks where locktype = 'advisory' and classid = 1684174440 and not granted
          and database = (select oid from pg_database where datname = current_database())`)) > 0);
    const batchTick = Number(await value(c,
      "select tick_id from dbsync._export_tick((select group_id from dbsync.subscriptions where name = 's'))"));
    await c.query("commit");
    const v = await running;
    assert.ok(v.tick_id > batchTick, `verification tick ${v.tick_id}, batch tick ${batchTick}`);
    assert.equal(v.differing_count, 0);
  } finally {
    await c.query("rollback").catch(() => undefined);
    c.release();
    await sidecar.stop();
  }
});
