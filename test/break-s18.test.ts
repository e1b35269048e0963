// Attacks on what landed in session 17, by a breaker on the merged whole (s18); each
// failed before its fix.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { Cluster, startCluster } from "../src/embedded/cluster";
import { migrate } from "../src/migrate";
import { Env, SOURCE_MAJOR, createDatabase, freshEnv, pool, sqlError, startSidecar, value } from "./helpers";
import { assertTablesEqual, failsWith, setup, synced } from "./kit/convergence";

/** pg_dump and pg_restore on PATH, with the major they read up to. */
function pgDumpTools(): { bin: string; major: number } | undefined {
  const r = spawnSync("pg_dump", ["--version"], { encoding: "utf8" });
  const major = Number(/\(PostgreSQL\) (\d+)/.exec(r.stdout ?? "")?.[1]);
  if (r.status !== 0 || !major) return undefined;
  return { bin: path.dirname(spawnSync("bash", ["-c", "command -v pg_dump"], { encoding: "utf8" }).stdout.trim()), major };
}

const tools = pgDumpTools();
const own: Cluster[] = [];
after(async () => {
  await Promise.all(own.map((c) => c.stop()));
});

// The source database moved to another server by pg_dump and pg_restore (a new
// server, a major upgrade by dump, a pg_dump backup restored): dbsync's tables come
// along, but name the old database's tables by OID and its positions by transaction
// ids. The new cluster counts its own ids from far below: a change written there
// read as committed before the position, and the old cluster's last events were
// beyond every batch's end; the plan joined the tables' old OIDs to no relation (or
// to another one) and left them out. wait_for_sync said true, the target lacked
// every change since the dump. Now: an error that says to set dbsync up again.
test("a source restored from a pg_dump into another cluster: an error that says to set dbsync up again, not silently lost changes", {
  skip: !tools ? "no pg_dump on this machine" : false,
}, async () => {
  const major = Math.min(SOURCE_MAJOR, tools!.major);
  const [old, fresh] = await Promise.all([startCluster({ major }), startCluster({ major })]);
  own.push(old, fresh);
  const [sourceUrl, targetUrl] = await Promise.all([createDatabase(old.url(), "brk18_dump"), createDatabase(old.url(), "brk18_dump_target")]);
  await migrate(sourceUrl);
  const env: Env = { sourceUrl, targetUrl, source: pool(sourceUrl), target: pool(targetUrl) };
  await setup(env, "create table t (id int primary key, v text)", ["t"]);
  let sidecar = startSidecar(sourceUrl, ["--poll-interval", "100"]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-brk18-"));
  try {
    await env.source.query("insert into t select g, 'a' from generate_series(1, 10) g");
    await synced(env);
    // A source that has lived: its transaction ids well past what a restore uses.
    await env.source.query("do $$ begin for i in 1 .. 20000 loop perform pg_catalog.txid_current(); commit; end loop; end $$");
    await env.source.query("insert into t select g, 'b' from generate_series(11, 15) g");
    await synced(env);
    assert.equal(await sidecar.stop(), 0, sidecar.output());
    await env.source.query("insert into t select g, 'b' from generate_series(16, 20) g");
    const dump = path.join(dir, "source.dump");
    const run = (cmd: string, args: string[]) => {
      const r = spawnSync(path.join(tools!.bin, cmd), args, { encoding: "utf8" });
      assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
    };
    run("pg_dump", ["--format=custom", `--file=${dump}`, sourceUrl]);
    const restoredUrl = await createDatabase(fresh.url(), "brk18_restored");
    run("pg_restore", ["--exit-on-error", `--dbname=${restoredUrl}`, dump]);
    const restored: Env = { ...env, sourceUrl: restoredUrl, source: pool(restoredUrl) };
    await restored.source.query("insert into t select g, 'c' from generate_series(21, 25) g");
    await restored.source.query("update t set v = 'c' where id <= 5");
    sidecar = startSidecar(restoredUrl, ["--poll-interval", "100"]);
    assert.equal(await value(restored.source, "select dbsync.wait_for_sync('s', '5 s')"), false, "in sync, though the target lacks the changes since the dump");
    await failsWith(restored, /restored from a pg_dump of another one.*dbsync uninstall --yes, dbsync migrate/);
    assert.equal(await value(restored.target, "select count(*)::int from t"), 15, "the target was written");
    // The original source, where dbsync was installed, is not taken for a restored one.
    assert.equal(await value(env.source, "select dbsync._restored_by_dump()"), false);
  } finally {
    await sidecar.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// The unique index a key stands on dropped by the CASCADE of what it depends on (a
// collation of its column, which any role that made it may drop, the index with
// it): only DROP INDEX was checked. The key then took duplicates on the source, and
// the target, which merges a key's rows into its one row, silently kept one of them.
test("DROP COLLATION ... CASCADE that drops the unique index a key stands on is refused, as DROP INDEX is", async () => {
  const env = await freshEnv("brk18_drop_collation");
  await setup(env, `create collation brk18_c from "C";
    create table kc (id int, k text not null, v text); create unique index kc_k on kc (k collate brk18_c)`, ["kc"],
  { keyColumns: { kc: ["k"] }, targetDdl: "create table kc (id int, k text primary key, v text)" });
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into kc select g, 'k' || g, 'a' from generate_series(1, 10) g");
    await synced(env);
    const err = await sqlError(env.source, "drop collation brk18_c cascade");
    assert.match(err.message, /the key \(k\) of public\.kc is no longer unique/);
    assert.equal(await value(env.source, "select count(*)::int from pg_index where indexrelid = 'kc_k'::regclass"), 1);
    assert.match((await sqlError(env.source, "insert into kc values (11, 'k1', 'twice')")).message, /duplicate key/);
    await env.source.query("update kc set v = 'b' where id <= 5");
    await synced(env);
    await assertTablesEqual(env.source, env.target, ["kc"]);
  } finally {
    await sidecar.stop();
  }
});

// ALTER COLUMN ... TYPE ... USING outside execute_ddl rewrites the source's rows with
// no row trigger; with the same type the target's shape still fits, so nothing
// stops: the WARNING's hint said "replication of this table stops with an error
// until the target matches", and the DBA waited for an error that never came while
// wait_for_sync said true. The hint now says what does happen: the subscription
// shows an error until the change is acknowledged, then copies the table (the
// whole story: test/ddl-rewrite-outside.test.ts).
test("ALTER COLUMN ... TYPE ... USING outside execute_ddl: the WARNING says the subscription waits for the change to be acknowledged, then copies the table", async () => {
  const env = await freshEnv("brk18_using");
  await setup(env, "create table a (id int primary key, v text)", ["a"]);
  const c = await env.source.connect();
  const said: string[] = [];
  c.on("notice", (n) => said.push(`${n.severity}: ${n.message} (hint: ${n.hint})`));
  try {
    await c.query("alter table a alter column v type text using upper(v)");
    const warning = said.find((w) => /^WARNING: .*ALTER TABLE of replicated table public\.a/.test(w)) ?? said.join("\n");
    assert.match(warning, /changed its rows outside dbsync\.execute_ddl.*shows an error until you make the same change.*acknowledge_ddl\(\d+\).*copies public\.a again/);
  } finally {
    c.release();
  }
});
