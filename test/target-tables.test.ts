// A target table that is missing, or lacks columns the source has: the copy (before
// it starts), a batch (PostgreSQL's error) and a verification say it the same way,
// with the same hint (src/target/tables.ts, src/errors.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, startSidecar, until, value } from "./helpers";

const hintOf = (message: string) => /\(hint: (.*)\)$/s.exec(message)?.[1];

test("missing target table and columns: copy, batch and verify give one message and one hint", async () => {
  const env = await freshEnv("target_tables");
  await env.source.query(
    "create table a (id int primary key, v text); create table b (id int primary key, v text); create table c (id int primary key, v text)",
  );
  await env.target.query("create table b (id int primary key, v text); create table c (id int primary key)");
  await env.source.query("insert into a values (1, 'a'); insert into b values (1, 'b'); insert into c values (1, 'c')");
  await env.source.query("select dbsync.add_table(t, 'g') from unnest(array['a', 'b', 'c']::regclass[]) t");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  const tableError = (t: string) => value<string | null>(env.source, "select last_error from dbsync.table_status where table_name = $1", [t]);
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", "2", "--poll-interval", "200"]);
  try {
    // The copy: a and c cannot start.
    await until("a and c in error", async () => !!(await tableError("public.a")) && !!(await tableError("public.c")));
    const copyMissing = (await tableError("public.a"))!;
    const copyColumns = (await tableError("public.c"))!;
    assert.match(copyMissing, /^target table "public"\."a" does not exist \(hint: /);
    assert.match(copyColumns, /^target table "public"\."c" lacks column\(s\) "v" that the source has \(hint: /);
    await until("b streaming", async () =>
      (await value(env.source, "select state from dbsync.table_status where table_name = 'public.b'")) === "streaming");

    // A verification of b once its target table is gone.
    await env.target.query("alter table b rename to b_gone");
    const id = Number(await value(env.source, "select dbsync.verify_table('s', 'b')"));
    await until("verification failed", async () =>
      (await value(env.source, "select state from dbsync.verifications where verification_id = $1", [id])) === "error", 60_000);
    const verifyMissing = await value<string>(env.source, "select error from dbsync.verifications where verification_id = $1", [id]);
    assert.match(verifyMissing, /^target table "public"\."b" does not exist \(.*does not exist\) \(hint: /);

    // A batch into it.
    await env.source.query("insert into b values (2, 'b2')");
    await until("the batch failed", async () => /"public"\."b" does not exist/.test((await value<string | null>(env.source, "select last_error from dbsync.status")) ?? ""));
    const batchMissing = (await value<string>(env.source, "select last_error from dbsync.status"))!;
    assert.match(batchMissing, /^target table "public"\."b" does not exist \(.*\) \(hint: /);

    // One hint per cause, whoever found it (the table named in it).
    assert.equal(hintOf(verifyMissing), hintOf(copyMissing)!.replaceAll('"a"', '"b"'));
    assert.equal(hintOf(batchMissing), hintOf(copyMissing)!.replaceAll('"a"', '"b"'));
    assert.match(hintOf(copyColumns)!, /^Add the missing column\(s\) to "public"\."c" on the target/);

    // Fixed on the target: everything goes on by itself.
    await env.target.query("alter table b_gone rename to b; create table a (id int primary key, v text); alter table c add column v text");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    assert.equal(await value(env.target, "select string_agg(v, ',' order by v) from (select v from a union all select v from b union all select v from c) x"), "a,b,b2,c");
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});
