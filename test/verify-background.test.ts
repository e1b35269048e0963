// Background verification (`dbsync run --verify-interval`): a sidecar that compares
// one bounded key range of one table per subscription per interval, rotating, at a
// consistent point of the stream. A write on the target shows in dbsync.status,
// dbsync.table_status and /metrics, unrepaired; writers on the source cause no false
// differences; the walk over the keys goes on across a restart; 0 turns it off.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool } from "pg";
import { freePort } from "../src/embedded/cluster";
import { parseDuration } from "../src/duration";
import { createDatabase, Env, freshEnv, pool, rows, seeded, sleep, startSidecar, tableText, until, value } from "./helpers";

interface StatusRow {
  state: string;
  last_error: string | null;
  last_error_table: string | null;
  verify_differences: string;
  last_verified_at: Date | null;
}

interface TableRow {
  table_name: string;
  state: string;
  last_error: string | null;
  verify_differences: string;
  verify_differing_keys: string[];
  verify_passes: number;
  last_verify_error: string | null;
}

async function status(env: Env, sub = "s"): Promise<StatusRow> {
  return (await rows<StatusRow>(env.source, "select * from dbsync.status where name = $1", [sub]))[0];
}

async function tableStatus(env: Env, table: string): Promise<TableRow> {
  return (await rows<TableRow>(env.source, "select * from dbsync.table_status where subscription = 's' and table_name = $1", [table]))[0];
}

async function metrics(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

function metric(body: string, name: string, labels: string): number | undefined {
  const line = body.split("\n").find((l) => l.startsWith(`${name}{`) && labels.split(",").every((x) => l.includes(x)));
  return line ? Number(line.split(" ").pop()) : undefined;
}

/** Tables on both sides, added to group g, subscription s with a copy. */
async function setup(label: string, tables: Record<string, string>): Promise<Env> {
  const env = await freshEnv(label);
  for (const [t, fill] of Object.entries(tables)) {
    const ddl = `create table ${t} (id bigint primary key, v text, n int)`;
    await env.source.query(ddl);
    await env.target.query(ddl);
    await env.source.query(fill.replaceAll("$T", t));
    await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  }
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  return env;
}

/** Random writes to ids in [1, maxId] and new ids above 10,000,000 until stopped. */
function writer(source: Pool, table: string, stop: { done: boolean }, seed: number, maxId: number) {
  let next = 10_000_000 + seed * 1_000_000;
  const rng = seeded(`verify-background/${table}/writer${seed}`);
  return (async () => {
    while (!stop.done) {
      const r = rng.next();
      const id = rng.int(1, maxId);
      if (r < 0.3) await source.query(`insert into ${table} values ($1, 'new', 1)`, [next++]);
      else if (r < 0.7) await source.query(`update ${table} set n = n + 1, v = 'upd' where id = $1`, [id]);
      else if (r < 0.85) await source.query(`delete from ${table} where id = $1`, [id]);
      else await source.query(`insert into ${table} values ($1, 're', 2) on conflict do nothing`, [id]);
      // Paced: flat-out writers took the CPUs from the test files running alongside,
      // and grew the backlog each killed copy has to read again.
      await sleep(rng.int(1, 10));
    }
  })();
}

/**
 * The background verifications of a table, in order: each range starts where the
 * one before ended (the walk), and a new pass starts after one that reached the end.
 */
async function assertWalk(env: Env, table: string) {
  const vs = await rows<{ verification_id: string; key_after: string[] | null; key_reached: string[] | null; reached_end: boolean }>(
    env.source,
    `select verification_id, key_after, key_reached, reached_end from dbsync.verifications
      where background and state = 'done' and table_name = $1 order by verification_id`,
    [table],
  );
  for (let i = 1; i < vs.length; i++) {
    const expected = vs[i - 1].reached_end ? null : vs[i - 1].key_reached;
    assert.deepEqual(vs[i].key_after, expected, `verification ${vs[i].verification_id} of ${table} does not start where ${vs[i - 1].verification_id} ended`);
  }
  return vs;
}

test("--verify-interval takes durations", () => {
  assert.equal(parseDuration("10m"), 600_000);
  assert.equal(parseDuration("90s"), 90_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("30"), 30_000);
  assert.equal(parseDuration("0"), 0);
  assert.throws(() => parseDuration("5x"), /expected a duration such as 10m/);
  assert.throws(() => parseDuration("-1s"), /got "-1s"/);
});

test("rows written on the target show in dbsync.status, table_status and /metrics, unrepaired, until the table is fixed", async () => {
  const env = await setup("bgverify_found", {
    a: "insert into $T select g, 'a' || g, g from generate_series(1, 3000) g",
    b: "insert into $T select g, 'b' || g, g from generate_series(1, 500) g",
  });
  const port = await freePort();
  // Every 300 ms: the test waits for five passes or so over five ranges, one range an interval.
  const sidecar = startSidecar(env.sourceUrl, ["--verify-interval", "300ms", "--verify-chunk-rows", "1000", "--metrics-port", String(port)]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    // A complete pass over each table first: equal tables, nothing to report.
    await until("a first pass over both tables", async () =>
      (await tableStatus(env, "public.a")).verify_passes >= 1 && (await tableStatus(env, "public.b")).verify_passes >= 1, 120_000);
    assert.equal((await status(env)).state, "streaming");
    assert.equal(Number((await status(env)).verify_differences), 0);

    // Behind dbsync's back: one row changed, one deleted, two extra (below the
    // source's first key and past its last: the walk's open ends) in a; one changed in b.
    await env.target.query(`update a set v = 'hand' where id = 1500; delete from a where id = 2500;
      insert into a values (-5, 'extra', 0), (999999, 'extra', 0); update b set n = -1 where id = 250`);
    await until("the differences found", async () => Number((await status(env)).verify_differences) === 5, 120_000);

    const st = await status(env);
    assert.equal(st.state, "error");
    assert.match(st.last_error ?? "", /row\(s\) of public\.[ab] differ on the target \(found by background verification, keys: /);
    assert.match(st.last_error ?? "", /select dbsync\.resync_table\('s', 'public\.[ab]'\)/);
    assert.ok(st.last_verified_at, "last_verified_at");
    const a = await tableStatus(env, "public.a");
    assert.equal(a.state, "error");
    assert.equal(Number(a.verify_differences), 4);
    assert.deepEqual([...a.verify_differing_keys].sort(), ["-5", "1500", "2500", "999999"]);
    assert.match(a.last_error ?? "", /^4 row\(s\) of public\.a differ on the target .*resync_table\('s', 'public\.a'\)/);
    const b = await tableStatus(env, "public.b");
    assert.equal(b.state, "error");
    assert.deepEqual(b.verify_differing_keys, ["250"]);
    const body = await metrics(port);
    assert.equal(metric(body, "dbsync_verify_differences", 'subscription="s",table="public.a"'), 4);
    assert.equal(metric(body, "dbsync_verify_differences", 'subscription="s",table="public.b"'), 1);
    assert.equal(metric(body, "dbsync_error", 'subscription="s"'), 1);
    assert.ok(metric(body, "dbsync_verify_rows_total", 'subscription="s",table="public.a"')! >= 3000, body);
    assert.ok(metric(body, "dbsync_verify_last_timestamp_seconds", 'subscription="s",table="public.b"')! > Date.now() / 1000 - 60);

    // Reported, never repaired; and the stream goes on meanwhile.
    assert.equal(await value(env.target, "select v from a where id = 1500"), "hand");
    assert.equal(await value(env.target, "select count(*)::int from a where id in (-5, 999999)"), 2);
    await env.source.query("insert into a values (5000, 'after', 0)");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.equal(await value(env.target, "select v from a where id = 5000"), "after");
    await assertWalk(env, "public.a");

    // The DBA copies a again: its differences go with the copy, and later passes find none.
    await env.source.query("select dbsync.resync_table('s', 'a')");
    await until("a copied again", async () => (await tableStatus(env, "public.a")).state !== "copying" &&
      Number((await tableStatus(env, "public.a")).verify_differences) === 0, 120_000);
    const passes = (await tableStatus(env, "public.a")).verify_passes;
    // b is fixed by hand: its difference stays shown until a complete pass over b.
    await env.target.query("update b set n = 250 where id = 250");
    await until("a clean pass over a, then b clean too", async () =>
      (await tableStatus(env, "public.a")).verify_passes > passes && Number((await status(env)).verify_differences) === 0, 120_000);
    assert.equal(Number((await tableStatus(env, "public.a")).verify_differences), 0);
    const after = await status(env);
    assert.equal(after.state, "streaming", JSON.stringify(after));
    assert.equal(after.last_error, null);
    assert.equal(metric(await metrics(port), "dbsync_verify_differences", 'subscription="s",table="public.a"'), 0);
    assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));
  } finally {
    await sidecar.stop();
  }
});

test("no false differences while writers run on the source; the walk goes on across a restart", async () => {
  const env = await setup("bgverify_load", {
    big: "insert into $T select g, repeat('x', 40) || g, g from generate_series(1, 20000) g",
  });
  const args = ["--verify-interval", "300ms", "--verify-chunk-rows", "2500", "--poll-interval", "200"];
  let sidecar = startSidecar(env.sourceUrl, args);
  const stop = { done: false };
  let writers: Promise<void>[] = [];
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    writers = [1, 2, 3].map((i) => writer(env.source, "big", stop, i, 25_000));
    const passes = async () => (await tableStatus(env, "public.big")).verify_passes;
    const verified = async () => Number(await value(env.source, "select count(*) from dbsync.verifications where background and state = 'done'"));
    await until("half a pass", async () => (await verified()) >= 4, 120_000);

    // A restart in the middle of a pass: the next range starts where the walk stood
    // (a range in flight goes back to the queue, from the same key).
    await until("the walk inside the table", async () => (await value(env.source, "select next_key from dbsync.verify_progress")) !== null);
    assert.equal(await sidecar.stop(), 0);
    const stoppedAt = await value<string[] | null>(env.source, "select next_key from dbsync.verify_progress");
    const before = await verified();
    sidecar = startSidecar(env.sourceUrl, args);
    await until("two complete passes", async () => (await passes()) >= 2, 300_000);
    const firstAfter = await rows<{ key_after: string[] | null }>(
      env.source,
      "select key_after from dbsync.verifications where background and state = 'done' order by verification_id offset $1 limit 1",
      [before],
    );
    assert.deepEqual(firstAfter[0].key_after, stoppedAt);

    const events = Number(await value(env.source, "select count(*) from dbsync.events"));
    assert.ok(events > 100, `writes ran during the verifications (${events} events)`);
    const bad = await rows(
      env.source,
      "select verification_id, state, error, differing_keys from dbsync.verifications where background and (state = 'error' or differing_count > 0)",
    );
    assert.deepEqual(bad, [], "false differences or failures under writes");
    const t = await tableStatus(env, "public.big");
    assert.equal(Number(t.verify_differences), 0);
    assert.equal(t.last_verify_error, null);
    assert.equal((await status(env)).state, "streaming");
    const vs = await assertWalk(env, "public.big");
    const compared = Number(await value(env.source, "select sum(rows_compared) from dbsync.verifications where background and state = 'done'"));
    assert.ok(compared >= 2 * 20_000 * 0.9, `${compared} rows compared in ${vs.length} verifications`);
    // The bound: no verification compared more than --verify-chunk-rows source rows.
    assert.equal(await value(env.source, "select max(rows_compared)::int from dbsync.verifications where background"), 2500);

    stop.done = true;
    await Promise.all(writers);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "big"), await tableText(env.source, "big"));
  } finally {
    stop.done = true;
    await Promise.all(writers);
    await sidecar.stop();
  }
});

test("--verify-interval 0 turns it off; the default turns it on", async () => {
  const env = await setup("bgverify_off", { o: "insert into $T select g, 'o' || g, g from generate_series(1, 1000) g" });
  const port = await freePort();
  let sidecar = startSidecar(env.sourceUrl, ["--verify-interval", "0", "--metrics-port", String(port)]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    // Created a day ago: any interval up to a day would make it due now.
    await env.source.query("update dbsync.subscriptions set created_at = now() - interval '1 day'");
    await env.target.query("delete from o where id = 10");
    await sleep(4000);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.verifications"), 0);
    const st = await status(env);
    assert.equal(st.state, "streaming");
    assert.equal(Number(st.verify_differences), 0);
    assert.equal(st.last_verified_at, null);
    assert.doesNotMatch(await metrics(port), /^dbsync_verify_differences\{/m);
    assert.equal(await sidecar.stop(), 0);

    // Without the flag (10 minutes), the subscription is due at once.
    sidecar = startSidecar(env.sourceUrl);
    await until("the difference found", async () => Number((await status(env)).verify_differences) === 1, 120_000);
    assert.deepEqual((await tableStatus(env, "public.o")).verify_differing_keys, ["10"]);
  } finally {
    await sidecar.stop();
  }
});

test("every subscription takes its turn, and a difference shows on the subscription whose target has it", async () => {
  const env = await setup("bgverify_two", { t: "insert into $T select g, 't' || g, g from generate_series(1, 800) g" });
  const target2Url = await createDatabase(process.env.DBSYNC_TEST_TARGET_URL!, "bgverify_two_b");
  const target2 = pool(target2Url);
  await target2.query("create table t (id bigint primary key, v text, n int)");
  await env.source.query("select dbsync.add_subscription('s2', 'g', $1)", [target2Url]);
  const sidecar = startSidecar(env.sourceUrl, ["--verify-interval", "1s"]);
  try {
    for (const sub of ["s", "s2"]) assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '60 s')", [sub]), true);
    await target2.query("update t set v = 'hand' where id = 42");
    await until("the difference on s2", async () => Number((await status(env, "s2")).verify_differences) === 1, 120_000);
    const s2 = await status(env, "s2");
    assert.equal(s2.state, "error");
    assert.match(s2.last_error ?? "", /keys: 42\).*resync_table\('s2', 'public\.t'\)/);
    // s is verified too, and its target is equal.
    await until("s verified", async () => (await status(env, "s")).last_verified_at !== null, 60_000);
    const s = await status(env, "s");
    assert.equal(s.state, "streaming");
    assert.equal(Number(s.verify_differences), 0);
    const perSub = await rows<{ subscription: string; n: number }>(
      env.source,
      "select subscription, count(*)::int as n from dbsync.verifications where background group by 1 order by 1",
    );
    assert.deepEqual(perSub.map((r) => r.subscription), ["s", "s2"]);
  } finally {
    await sidecar.stop();
  }
});

test("the least-privilege sidecar role (grant_sidecar) runs background verification", async () => {
  const env = await setup("bgverify_role", { r: "insert into $T select g, 'r' || g, g from generate_series(1, 600) g" });
  const role = `dbsync_bgv_${Math.random().toString(16).slice(2, 10)}`;
  await env.source.query(`create role ${role} login`);
  await env.source.query("select dbsync.grant_sidecar($1)", [role]);
  const url = new URL(env.sourceUrl);
  url.username = role;
  url.password = "";
  const sidecar = startSidecar(url.toString(), ["--verify-interval", "1s"]);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await env.target.query("delete from r where id = 7");
    await until("the difference found", async () => Number((await status(env)).verify_differences) === 1, 120_000);
    assert.deepEqual((await tableStatus(env, "public.r")).verify_differing_keys, ["7"]);
    assert.equal(await sidecar.stop(), 0);
    assert.doesNotMatch(sidecar.output(), /permission denied|could not be scheduled|could not book/, sidecar.output());
  } finally {
    await sidecar.stop();
    await env.source.query(`drop owned by ${role}; drop role ${role}`).catch(() => undefined);
  }
});
