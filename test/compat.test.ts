// One code path for PostgreSQL 10-18 (src/compat.ts): the text installed on 14+
// is the text on disk, the text installed on older majors names nothing they lack,
// and the parts that behave differently there (partitioned tables on 10) replicate.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { REWRITES, compatSql } from "../src/compat";
import { codeBundle, knownMigrations } from "../src/migrate";
import { SOURCE_MAJOR, TARGET_MAJOR, freshEnv, sqlError, startSidecar, tableText, value } from "./helpers";

test("PostgreSQL 14+ installs the migrations and functions exactly as they are on disk", () => {
  for (const major of [14, 15, 16, 17, 18]) {
    const traits = { major, bigintTxids: false };
    for (const m of knownMigrations()) assert.equal(compatSql(m.sql, traits), m.sql, `${m.name} on ${major}`);
    assert.equal(codeBundle(traits).sha, codeBundle().sha, `the functions on ${major}`);
  }
});

test("older majors get no name they lack", () => {
  const missing: Record<number, RegExp> = {
    10: /\b(xid8|pg_snapshot|pg_current_xact_id|pg_current_snapshot|pg_visible_in_snapshot|pg_partition_tree|pg_partition_ancestors|attgenerated|tgparentid|conparentid|gen_random_uuid|indnkeyatts|regcollation)\b|execute function|as materialized/i,
    11: /\b(xid8|pg_snapshot|pg_current_xact_id|pg_current_snapshot|pg_visible_in_snapshot|pg_partition_tree|pg_partition_ancestors|attgenerated|tgparentid|gen_random_uuid|regcollation)\b|as materialized/i,
    12: /\b(xid8|pg_snapshot|pg_current_xact_id|pg_current_snapshot|pg_visible_in_snapshot|tgparentid|gen_random_uuid|regcollation)\b/i,
  };
  // Comments may name them; code may not.
  const code = (sql: string) => sql.replace(/--[^\n]*/g, "");
  for (const [major, re] of Object.entries(missing)) {
    const traits = { major: Number(major), bigintTxids: true };
    for (const m of knownMigrations()) assert.doesNotMatch(code(compatSql(m.sql, traits)), re, `${m.name} on ${major}`);
    assert.doesNotMatch(code(codeBundle(traits).sql), re, `the functions on ${major}`);
  }
  // Spellings no rewrite covers: PL/pgSQL on 10 takes no default for a row variable.
  const rowDefault = /^\s+\w+\s+(dbsync\.\w+|\w+%rowtype|record)\s*(:=|=|default)/im;
  for (const m of knownMigrations()) assert.doesNotMatch(code(m.sql), rowDefault, m.name);
  for (const f of codeBundle().sql.split(/(?=^create or replace function)/m)) {
    assert.doesNotMatch(code(f), rowDefault, `a row variable with a default (set it in the body): ${f.slice(0, 80)}`);
  }
  for (const r of REWRITES) assert.ok(r.why.length > 20, `rewrite ${r.name} says why`);
  // Every rewrite still finds something to rewrite: a rule matching nothing is dead.
  const all = knownMigrations().map((m) => m.sql).join("\n") + codeBundle().sql +
    fs.readFileSync(path.join(__dirname, "..", "src", "verify", "layout.ts"), "utf8");
  for (const r of REWRITES) assert.match(all, new RegExp(r.pattern.source, r.pattern.flags.replace("g", "")), `rewrite ${r.name}`);
});

test("a partitioned table: present and later partitions, a partition's TRUNCATE, DETACH", async () => {
  const env = await freshEnv("compat_partitions");
  // PostgreSQL 10 has no key on a partitioned table: each partition has its own,
  // and the table's key names them (they include the partition key). Each side as
  // its major declares it (a source on 11+ keys the table itself).
  const part = (major: number, name: string, values: number) =>
    major >= 11
      ? `create table ${name} partition of m for values in (${values});`
      : `create table ${name} partition of m (primary key (region, id)) for values in (${values});`;
  const ddl = (major: number) =>
    `create table m (region int not null, id int not null, v text${major >= 11 ? ", primary key (region, id)" : ""})
       partition by list (region);` + part(major, "m1", 1) + part(major, "m2", 2);
  await env.source.query(ddl(SOURCE_MAJOR));
  await env.target.query(ddl(TARGET_MAJOR));
  await env.source.query("insert into m select 1 + g % 2, g, 'before' from generate_series(1, 40) g");
  await env.source.query("select dbsync.add_table('m', 'g', $1)", [SOURCE_MAJOR >= 11 ? null : ["region", "id"]]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "m"), await tableText(env.source, "m"), "copied");

    // A partition created after add_table is captured (cloned trigger, or on 10 the
    // DDL event trigger's own).
    await env.target.query(part(TARGET_MAJOR, "m3", 3));
    await env.source.query(part(SOURCE_MAJOR, "m3", 3));
    await env.source.query("insert into m select 3, g, 'new partition' from generate_series(1, 10) g");
    await env.source.query("insert into m3 values (3, 100, 'straight into the partition')");
    await env.source.query("update m set v = 'updated' where id % 3 = 0");
    await env.source.query("delete from m where id % 7 = 0");
    await env.source.query("truncate m2");
    await env.source.query("alter table m detach partition m1");
    await env.target.query("alter table m detach partition m1");
    await env.source.query("insert into m values (2, 1000, 'after')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "m"), await tableText(env.source, "m"), "streamed");
    assert.equal(await value(env.source, "select count(*)::int from m3"), 10);

    if (SOURCE_MAJOR < 11) {
      // Without its own key a new partition would let duplicate keys in: refused.
      const err = await sqlError(env.source, "create table m4 partition of m for values in (4)");
      assert.match(err.message, /the key \(region, id\) of public\.m is no longer unique/);
      assert.match(err.hint ?? "", /create table p1 partition of p \(primary key \(region, id\)\)/);
    }
  } finally {
    await sidecar.stop();
  }
});

test("execute_ddl and TRUNCATE reach a target of another major", async () => {
  const env = await freshEnv("compat_ddl");
  const ddl = "create table t (id int primary key, v text)";
  await env.source.query(ddl);
  await env.target.query(ddl);
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("insert into t select g, 'v' || g from generate_series(1, 100) g");
    await env.source.query("select dbsync.execute_ddl('g', 'alter table t add column n int not null default 7')");
    await env.source.query("update t set n = id where id <= 10");
    await env.source.query("truncate t");
    await env.source.query("insert into t select g, 'after', g from generate_series(1, 5) g");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    assert.deepEqual(await tableText(env.target, "t"), await tableText(env.source, "t"));
  } finally {
    await sidecar.stop();
  }
});

test("wait_for_sync at its timeout: false with a NOTICE saying why, on every major", async () => {
  const env = await freshEnv("compat_wait_timeout");
  await env.source.query("create table t (id int primary key)");
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("select dbsync.pause('s')");
  await env.source.query("insert into t values (1)");
  const c = await env.source.connect();
  const notices: string[] = [];
  c.on("notice", (n) => notices.push(n.message ?? ""));
  try {
    assert.equal((await c.query("select dbsync.wait_for_sync('s', '0.2 s') as ok")).rows[0].ok, false);
  } finally {
    c.release();
  }
  assert.ok(notices.some((n) => /"s" not in sync after 0\.2 s: .*paused/.test(n)), notices.join("; "));
});
