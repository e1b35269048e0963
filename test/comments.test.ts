// The API explains itself in psql: every function, view and table of schema dbsync
// has a comment (\df+, \dv+, \dt+), taken from the header of its SQL file (functions,
// views) or sql/comments.sql (tables); dbsync.version() and `dbsync --version` agree
// with package.json.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { freshEnv, rows, value } from "./helpers";
import { runDbsync } from "./kit/dbsync";

const ROOT = path.join(__dirname, "..");
const VERSION = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")).version;

test("every function, view and table of schema dbsync has a comment", async () => {
  const env = await freshEnv("comments");
  await env.source.query("create table t (id int primary key); select dbsync.add_table('t', 'g')");
  const missing = await rows<{ what: string }>(
    env.source,
    `select 'function ' || p.oid::regprocedure::text as what from pg_proc p
      where p.pronamespace = 'dbsync'::regnamespace and p.proname !~ '^(capture_(trunc_|key_|old_|row_)?|key_changed_)\\d+$'
        and obj_description(p.oid, 'pg_proc') is null
     union all
     select (case c.relkind when 'v' then 'view ' else 'table ' end) || c.oid::regclass::text from pg_class c
      where c.relnamespace = 'dbsync'::regnamespace and c.relkind in ('r', 'p', 'v') and not c.relispartition
        and obj_description(c.oid, 'pg_class') is null
     order by 1`,
  );
  assert.deepEqual(missing.map((m) => m.what), [], "give these a header comment (functions, views) or a line in sql/comments.sql (tables)");
  // The text is the header's.
  const addTable = await value<string>(env.source, "select obj_description('dbsync.add_table(regclass,text,text[])'::regprocedure, 'pg_proc')");
  assert.match(addTable, /^Starts capturing tbl into the group \(created if missing\)\./);
  assert.match(await value<string>(env.source, "select obj_description('dbsync.begin_batch(text,bigint)'::regprocedure, 'pg_proc')"), /^Called by the sidecar \(dbsync run\); not for DBAs\./);
  assert.match(await value<string>(env.source, "select obj_description('dbsync._sub(text)'::regprocedure, 'pg_proc')"), /^Internal to dbsync, not an API\./);
  assert.match(await value<string>(env.source, "select obj_description('dbsync.status'::regclass, 'pg_class')"), /one row per subscription/);
});

test("select dbsync.version() and dbsync --version say package.json's version", async () => {
  const env = await freshEnv("version");
  assert.equal(await value(env.source, "select dbsync.version()"), VERSION);
  const r = await runDbsync(["--version"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), VERSION);
});
