// The sidecar's JSON log: every line carries each field once. pino writes a child
// logger's fields (a subscription's applier and a verification log through one)
// and the call's both, so a field given by both shows twice in the line.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { freshEnv, until, value } from "./helpers";
import { repeatedLogKeys, spawnDbsync } from "./kit/dbsync";

test("repeatedLogKeys finds a top-level key given twice, not one nested or inside a string", () => {
  assert.deepEqual(repeatedLogKeys('{"a":1,"subscription":"s0","b":{"a":2},"subscription":"s0"}'), ["subscription"]);
  assert.deepEqual(repeatedLogKeys('{"a":"x\\",\\"a\\":1","b":[{"a":1},{"a":2}],"c":{"c":1}}'), []);
});

test("the sidecar's log lines carry each field once: applier, copy, a failed batch, verification", async () => {
  const env = await freshEnv("log_fields");
  await env.source.query("create table t (id int primary key, v text); create table bad (id int primary key, x text, y text)");
  await env.target.query("create table t (id int primary key, v text); create table bad (id int primary key, x text)");
  await env.source.query("insert into t select g, 'v' || g from generate_series(1, 100) g; insert into bad values (1, 'x', 'y')");
  await env.source.query("select dbsync.add_table('t', 'g'), dbsync.add_table('bad', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const lines: string[] = [];
  const sidecar = spawnDbsync(["run", "--source", env.sourceUrl, "--poll-interval", "200", "--concurrency", "2"], {
    env: { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" },
    onLine: (line) => lines.push(line),
  });
  try {
    // The copy of `bad` cannot start (the target lacks column y): the applier warns.
    await until("bad in error", async () =>
      (await value(env.source, "select state from dbsync.table_status where table_name = 'public.bad'")) === "error");
    await until("t streaming", async () =>
      (await value(env.source, "select state from dbsync.table_status where table_name = 'public.t'")) === "streaming");
    await env.source.query("insert into t values (101, 'later')");
    await until("the insert applied", async () => (await value(env.target, "select count(*)::int from t where id = 101")) === 1);
    // A batch that fails (a unique index only the target has, and a row of its own in
    // the way) and then recovers.
    await env.target.query("create unique index on t (v); insert into t values (999, 'clash')");
    await env.source.query("insert into t values (102, 'clash')");
    await until("the batch failed", async () => /duplicate key/.test((await value<string | null>(env.source, "select last_error from dbsync.status")) ?? ""));
    await env.target.query("delete from t where id = 999");
    await until("recovered", async () => (await value(env.target, "select v from t where id = 102")) === "clash");
    const id = Number(await value(env.source, "select dbsync.verify_table('s', 't')"));
    await until("verified", async () =>
      (await value(env.source, "select state from dbsync.verifications where verification_id = $1", [id])) === "done", 60_000);
  } finally {
    assert.equal(await sidecar.stop(), 0, lines.join("\n"));
  }
  const json = lines.filter((l) => l.startsWith("{"));
  const copyWarning = json.find((l) => /lacks column\(s\) \\"y\\"/.test(l));
  assert.ok(copyWarning, `no warning about bad's copy:\n${lines.join("\n")}`);
  assert.match(copyWarning, /"subscription":"s"/);
  assert.ok(json.some((l) => /"msg":"verification done"/.test(l)), lines.join("\n"));
  assert.ok(json.some((l) => /"subscription":"s".*duplicate key/.test(l)), lines.join("\n"));
  assert.ok(json.some((l) => /"msg":"subscription s recovered/.test(l)), lines.join("\n"));
  const repeated = json.map((l) => ({ l, keys: repeatedLogKeys(l) })).filter((r) => r.keys.length);
  assert.deepEqual(repeated, [], "log lines with a field given twice");
});

test("a throw from an event handler ends the sidecar with one fatal JSON line, not a bare stack", async () => {
  const env = await freshEnv("log_fatal");
  // Loaded before dbsync (NODE_OPTIONS): a timer that throws once the sidecar runs.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-throw-"));
  const preload = path.join(dir, "throw-later.js");
  fs.writeFileSync(preload, "setTimeout(() => { throw new Error('thrown from a timer'); }, 1500);\n");
  const lines: string[] = [];
  const sidecar = spawnDbsync(["run", "--source", env.sourceUrl, "--poll-interval", "200"], {
    env: { DBSYNC_LOG_FORMAT: "json", NODE_OPTIONS: `--require ${preload}` },
    onLine: (line) => lines.push(line),
  });
  try {
    assert.equal(await sidecar.exited, 1, lines.join("\n"));
    const fatal = lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { level: number; msg: string; err?: string }).filter((l) => l.level === 60);
    assert.equal(fatal.length, 1, lines.join("\n"));
    assert.match(fatal[0].msg, /unexpected error/);
    assert.match(fatal[0].err ?? "", /thrown from a timer/);
  } finally {
    await sidecar.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
