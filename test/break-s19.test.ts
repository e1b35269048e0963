// Attacks on the merged whole of session 18 (helper "breaker" of session 19): ways to
// make the target differ from the source while dbsync says it is in sync, or to make
// someone act with dbsync's (or its DBA's) rights.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar, value } from "./helpers";
import { runDbsync } from "./kit/dbsync";
import { setup, synced } from "./kit/convergence";

// The bytes of each row's text, as UTF8 whatever the session's client_encoding.
const utf8Bytes = "select id, encode(convert_to(v, 'UTF8'), 'hex') as v from t order by id";

test("client_encoding defaults of the source and target databases (LATIN1, WIN1252): non-ASCII text reaches the target as it is", async () => {
  // Held: node-postgres asks for UTF8 at start-up, which wins over both databases' defaults.
  const env = await freshEnv("brk19_enc");
  await setup(env, "create table t (id int primary key, v text);", ["t"], { copyData: true });
  // Two characters whose LATIN1 bytes (C3 A9) are the UTF8 of one other character.
  await env.source.query("insert into t values (1, 'caf' || chr(233)), (2, chr(195) || chr(169))");
  for (const [p, enc] of [[env.source, "LATIN1"], [env.target, "WIN1252"]] as const) {
    await p.query(`alter database "${await value<string>(p, "select current_database()")}" set client_encoding = '${enc}'`);
  }
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"]);
  try {
    await synced(env);
    await env.source.query("insert into t values (3, 'na' || chr(239) || 've')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '30 s')"), true);
    assert.deepEqual((await env.target.query(utf8Bytes)).rows, (await env.source.query(utf8Bytes)).rows);
  } finally {
    await sidecar.stop();
  }
});

test("names with line breaks in the comments of dbsync schema: piped into the target, they run nothing", async () => {
  // Any role that owns a type a replicated column uses, or a foreign key of a
  // replicated table to a table outside the group, names it; the DBA runs what
  // `dbsync schema` prints on the target as an administrator (README Quickstart).
  const env = await freshEnv("brk19_schema_nl");
  // (A line feed ends a comment, and so does a carriage return.)
  const evil = (what: string, eol: string) => `"${what}${eol}; create table pwned_${what} (); --"`;
  await env.source.query(`create type ${evil("type", "\n")} as (a int);
    create table other (id int primary key);
    create table t (id int primary key, c ${evil("type", "\n")}, o int, constraint ${evil("fk", "\r")} foreign key (o) references other);
    select dbsync.add_table('t', 'g')`);
  const r = await runDbsync(["schema", "--group", "g", "--source", env.sourceUrl]);
  assert.equal(r.code, 0, r.stderr);
  await env.target.query(`create type ${evil("type", "\n")} as (a int)`);
  await env.target.query(r.stdout);
  assert.deepEqual((await env.target.query("select relname from pg_class where relname like 'pwned%'")).rows, []);
});
