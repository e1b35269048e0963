// The stages shared by tables alike (src/target/stage.ts): many
// tables of one shape in one batch (same name in two schemas, a partitioned table,
// an inheritance parent, a plain one), each with rows going every way (updates in
// place, key changes: replace mode, unique values swapped between rows: an update
// in place that fails and falls back, inserts
// only: straight COPY, deletes), cut into many pieces; a first batch that fails
// late and is retried (its stages are gone), DDL in a batch that makes one table
// unlike the others, and a second group on the same target database served by the
// same connection (--concurrency 1). Every table must equal the source, no error.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, freshEnv, Sidecar, SOURCE_MAJOR, startSidecar, TARGET_MAJOR, until, value } from "./helpers";
import { assertTablesEqual, status } from "./kit/convergence";

const PIECES = { DBSYNC_STREAM_PIECE_LINES: "7" };

const SHAPE = "(k int primary key, u int unique, v text)";
const DDL = `create schema s1; create schema s2;
  create table s1.t ${SHAPE}; create table s2.t ${SHAPE}; create table q ${SHAPE};
  create table p (k int primary key, u int, v text) partition by range (k);
  create table p_lo partition of p for values from (minvalue) to (500);
  create table p_hi partition of p for values from (500) to (maxvalue);
  create table h ${SHAPE}; create table h_child (extra int) inherits (h);
  create table i1 (k int generated always as identity primary key, u int unique, v text);
  create table i2 (k int generated always as identity primary key, u int unique, v text);
  create table r1 ${SHAPE}; create table r2 ${SHAPE};`;
const G = ["s1.t", "s2.t", "q", "p", "h", "i1", "i2"];
const G2 = ["r1", "r2"];

/** In sync within 120 s; if not, the failure shows the subscription's status and what the sidecar printed (CI gives nothing else). */
async function inSync(env: Env, sub: string, sidecar: Sidecar) {
  try {
    await until(`${sub} in sync`, async () => (await value(env.source, "select dbsync.wait_for_sync($1, '2 s')", [sub])) === true, 120_000, 10);
  } catch (err) {
    throw new Error(`${(err as Error).message}; status ${JSON.stringify(await status(env, sub))}; sidecar's output: ${sidecar.output().slice(-4000)}`);
  }
}

/** Rows going every way in every table of `tables` (the table's k+1000 etc. stay within bounds). */
function churn(tables: string[], round: number): string {
  return tables
    // (h's child rows are not captured: only h's own rows change.)
    .map((t) => (t === "h" ? "only h" : t))
    .map((t) => (t.startsWith("i") ? `update ${t} set v = v || '.${round}' where k % 3 = ${round % 3};
        delete from ${t} where k % 11 = ${round % 11};
        insert into ${t} (u, v) select 10000 * ${round} + g + (select coalesce(max(u), 0) from ${t}), 'n' from generate_series(1, 5) g;`
      : `update ${t} set v = v || '.${round}' where k % 3 = ${round % 3};
        ${round % 2 ? "" : `update ${t} set k = k + 1000 where k % 13 = ${round % 13} and k < 1000;`}
        do $$ declare a int; b int; ua int; ub int; begin
          select min(k) into a from ${t}; select max(k) into b from ${t} where k < 1000;
          select u into ua from ${t} where k = a; select u into ub from ${t} where k = b;
          update ${t} set u = null where k = a; update ${t} set u = ua where k = b; update ${t} set u = ub where k = a;
        end $$;
        delete from ${t} where k % 11 = ${round % 11};
        insert into ${t.replace("only ", "")} select 2000 * (${round} + 1) + g, 2000 * (${round} + 1) + g, 'n' from generate_series(1, 30) g;`))
    .join("\n");
}

test("tables alike in one batch, rows every way, a failed first batch, DDL, a second group on the same connection", {
  skip: Math.min(SOURCE_MAJOR, TARGET_MAJOR) < 11 && "a partitioned table has no primary key before PostgreSQL 11",
}, async () => {
  const env = await freshEnv("stage_alike");
  await env.source.query(DDL);
  await env.target.query(DDL);
  // h_child's rows are its own on both sides (not captured: ONLY h on the target).
  for (const s of [env.source, env.target]) await s.query("insert into h_child select g, g, 'child', g from generate_series(1, 5) g");
  for (const t of G) await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  for (const t of G2) await env.source.query("select dbsync.add_table($1, 'g2')", [t]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  await env.source.query("select dbsync.add_subscription('s2', 'g2', $1, copy_data => false)", [env.targetUrl]);
  // Each stage the apply sessions create, logged on the target by its backend: the
  // count of temp tables left at the end was 0 when the connection had been idle for
  // the pool's timeout before the test looked (CI, under load).
  await env.target.query(`create table stage_log (pid int, name text);
    create function log_stage() returns event_trigger language plpgsql as $f$ begin
      insert into public.stage_log select pg_backend_pid(), object_identity
        from pg_event_trigger_ddl_commands() where object_identity like '%dbsync_stage%';
    end $f$;
    create event trigger log_stages on ddl_command_end when tag in ('CREATE TABLE', 'CREATE TABLE AS') execute procedure log_stage();
    alter event trigger log_stages enable always;`);
  // The first batch of s fails in its last table's rows (a check on the target only).
  await env.target.query("alter table i2 add constraint no_bad check (v <> 'bad')");
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], PIECES);
  try {
    await env.source.query(
      `begin; ${G.concat(G2).map((t) => (t.startsWith("i") ? `insert into ${t} (u, v) select g, 'v' || g from generate_series(1, 60) g;` : `insert into ${t} select g, g, 'v' || g from generate_series(1, 60) g;`)).join("\n")}
       update i2 set v = 'bad' where k = 60; commit`,
    );
    await until("s's error shows", async () => !!(await status(env, "s"))?.last_error, 60_000);
    await inSync(env, "s2", sidecar);
    await env.target.query("alter table i2 drop constraint no_bad");
    await inSync(env, "s", sidecar);
    await assertTablesEqual(env.source, env.target, G.concat(G2), "after the retried first batch");
    for (let round = 1; round <= 6; round++) {
      await env.source.query(`begin; ${churn(G, round)} commit`);
      await env.source.query(`begin; ${churn(G2, round)} commit`);
      if (round === 3) {
        // s1.t is unlike the others from this point of the stream: its v a varchar, then a column more.
        await env.source.query("select dbsync.execute_ddl('g', 'alter table s1.t alter column v type varchar(40) collate \"C\"')");
        await env.source.query(`begin; ${churn(G, 30)} commit`);
        await env.source.query("select dbsync.execute_ddl('g', 'alter table q add column w int default 5')");
        await env.source.query(`begin; ${churn(G, 31)} commit`);
      }
    }
    await inSync(env, "s", sidecar);
    await inSync(env, "s2", sidecar);
    await assertTablesEqual(env.source, env.target, G.concat(G2), "after the rounds");
    for (const sub of ["s", "s2"]) assert.equal((await status(env, sub))?.last_error ?? null, null, `${sub}: no error expected`);
    // The rows went through shared stages, one per signature the tables had: (k int,
    // u int, v text), the same with an identity k, s1.t's after its ALTER TYPE, q's
    // with w. Four at most in any apply session, whatever the DDL (one per table
    // before stages were shared; 9 when every DDL made all of them again).
    const perSession = (await env.target.query<{ n: number }>("select count(*)::int n from stage_log group by pid")).rows.map((r) => r.n);
    console.log(`# stages created by each apply session on the target: ${perSession.join(", ")} for ${G.length + G2.length} tables`);
    assert.ok(perSession.length > 0 && Math.max(...perSession) <= 4, `stages per session: ${perSession.join(", ")}`);
  } finally {
    await sidecar.stop();
  }
});

test("two tables alike with big pieces (cut by bytes) and over 1,000 lines: TRUNCATE of the shared stage, a failed batch between", async () => {
  const env = await freshEnv("stage_alike_big");
  const ddl = "create table a (k int primary key, u int unique, v text); create table b (k int primary key, u int unique, v text);";
  await env.source.query(ddl);
  await env.target.query(ddl);
  for (const t of ["a", "b"]) await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"]);
  // Values of about 40 kB that do not compress: 300 of them make about 12 MB, three pieces or more by bytes.
  const big = (t: string, from: number, to: number, tag: string) =>
    `insert into ${t} select g, g, (select string_agg(md5('${tag}' || g || '.' || i), '') from generate_series(1, 1250) i) from generate_series(${from}, ${to}) g;`;
  try {
    await env.source.query(`begin; ${big("a", 1, 300, "a")} ${big("b", 1, 300, "b")} insert into a select g, g, 'small' from generate_series(1001, 2500) g; commit`);
    await inSync(env, "s", sidecar);
    await assertTablesEqual(env.source, env.target, ["a", "b"], "after the first big batch");
    // a: updates in place (over 1,000 lines); b: a key change (replace mode), big rows.
    await env.source.query(`begin;
      update a set v = v || '+' where k > 1000;
      update a set v = md5(v) where k <= 150;
      update b set k = k + 10000 where k % 2 = 0;
      update b set v = v || '!' where k % 3 = 0;
      commit`);
    await inSync(env, "s", sidecar);
    await assertTablesEqual(env.source, env.target, ["a", "b"], "after the second batch");
    // A batch that fails at its end (b's last row), then goes through.
    await env.target.query("alter table b add constraint no_bad check (v <> 'bad')");
    await env.source.query(`begin; update a set v = 'again' where k > 1200; delete from a where k % 10 = 0;
      update b set v = v || '?' where k < 200; update b set v = 'bad' where k = 299; commit`);
    await until("the error shows", async () => !!(await status(env, "s"))?.last_error, 60_000);
    await env.target.query("alter table b drop constraint no_bad");
    await inSync(env, "s", sidecar);
    await env.source.query("begin; update b set v = 'last' where k < 50; update a set u = -u where k > 2400; commit");
    await inSync(env, "s", sidecar);
    await assertTablesEqual(env.source, env.target, ["a", "b"], "at the end");
  } finally {
    await sidecar.stop();
  }
});

test("identity tables alike, one made GENERATED BY DEFAULT and one given a column by execute_ddl between writes of one batch", async () => {
  const env = await freshEnv("stage_alike_identity");
  const ddl = `create table i1 (k int generated always as identity primary key, n int generated always as identity (start 100) unique, v text);
               create table i2 (k int generated always as identity primary key, n int generated always as identity (start 100) unique, v text);
               create table i3 (k int generated always as identity primary key, n int generated always as identity (start 100) unique, v text);`;
  await env.source.query(ddl);
  await env.target.query(ddl);
  for (const t of ["i1", "i2", "i3"]) await env.source.query("select dbsync.add_table($1, 'g')", [t]);
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [env.targetUrl]);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "1", "--poll-interval", "200"], PIECES);
  const all = ["i1", "i2", "i3"];
  const write = (tag: string) => all.map((t) => `insert into ${t} (v) select '${tag}' || g from generate_series(1, 20) g;
      update ${t} set v = v || '.${tag}', n = default where k % 3 = 0; delete from ${t} where k % 7 = 0;`).join("\n");
  try {
    await env.source.query(`begin; ${write("a")} commit`);
    await inSync(env, "s", sidecar);
    await env.source.query("select dbsync.pause('s')");
    await env.source.query(`begin; ${write("b")} commit`);
    await env.source.query("select dbsync.execute_ddl('g', 'alter table i2 alter column n set generated by default')");
    await env.source.query(`begin; ${write("c")} update i2 set n = -n where k % 2 = 0; commit`);
    await env.source.query("select dbsync.execute_ddl('g', 'alter table i3 add column w numeric(12,4) default 1.2345')");
    await env.source.query(`begin; ${write("d")} update i3 set w = k + 0.0001; commit`);
    await env.source.query("select dbsync.resume('s')");
    await inSync(env, "s", sidecar);
    await env.source.query(`begin; ${write("e")} update i2 set n = n - 100000 where k % 5 = 0; update i3 set w = w * 2; commit`);
    await inSync(env, "s", sidecar);
    await assertTablesEqual(env.source, env.target, all);
    assert.equal((await status(env, "s"))?.last_error ?? null, null);
  } finally {
    await sidecar.stop();
  }
});
