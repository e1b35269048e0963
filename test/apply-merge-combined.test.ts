// A small batch's tables merged in one round trip (src/target/merge.ts mergeAtOnce):
// the stream hands every waiting piece at once (src/target/stream.ts), and the
// pieces of tables merged in place go in one statement string under one savepoint.
// The result must be the one of a table at a time: the same rows, updates in place,
// a failing table named in dbsync.status, an application trigger on the target
// seeing each row once, and nothing left of the savepoint when it fails.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { DbsyncError } from "../src/errors";
import { PlanTable } from "../src/source/batches";
import { StagedTable, StreamMerge } from "../src/target/merge";
import { Phases } from "../src/target/phases";
import { StageTables } from "../src/target/stage";
import { StraightCopies } from "../src/target/straight-copies";
import { Piece, SinkItem, readStream } from "../src/target/stream";
import { withTable } from "../src/target/tables";
import { freshEnv, startSidecar, tableText, until } from "./helpers";
import { phasesOf } from "./kit/apply-log";
import { failsWith, setup, status, strictlyConverged, synced, targetCounts } from "./kit/convergence";

const DEBUG_LOG = { DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" };
const AT_ONCE = "merge tables at once";

test("the stream hands a small stream to a sink that takes items in one call, once it has ended", async () => {
  const text = ["1\tU\t1\t\\N\n", "1\tD\t2\t\\N\n", "2\tU\t3\tx\n", "3\tU\t4\t\\N\n"].join("");
  // Chunks of 4 bytes: the pieces arrive over several reads.
  const reader = {
    query: () => Readable.from(Array.from({ length: Math.ceil(text.length / 4) }, (_, i) => Buffer.from(text.slice(i * 4, i * 4 + 4)))),
  };
  const calls: string[][] = [];
  const one = async () => {
    throw new Error("a piece handed alone");
  };
  await readStream(reader as never, "copy ... to stdout", (id) => ({ 1: 1, 2: 0, 3: 1 })[id], {
    whole: true,
    ready: new Promise((resolve) => setTimeout(resolve, 50)),
    piece: one,
    end: one,
    async items(items: SinkItem[]) {
      calls.push(items.map((i) => ("piece" in i ? `${i.piece.id}: ${Buffer.concat(i.piece.data).toString().trim()}` : `end ${i.end}`)));
    },
  });
  assert.deepEqual(calls, [["1: U\t1\nD\t2", "end 1", "2: U\t3\tx", "end 2", "3: U\t4", "end 3"]]);
});

test("a small batch of several tables merged at once: inserts, updates, deletes and key moves as one table at a time does them", async () => {
  const env = await freshEnv("merge_at_once");
  // Columns of other names: tables alike would share a temp table, and go one at a time.
  await setup(env, "create table a (id int primary key, v text); create table b (id int primary key, w text); create table h (id int primary key, x text)", ["a", "b", "h"]);
  const sidecar = startSidecar(env.sourceUrl, [], DEBUG_LOG);
  try {
    await env.source.query(`begin;
      insert into a select g, 'a' || g from generate_series(1, 20) g;
      insert into b select g, 'b' || g from generate_series(1, 20) g;
      commit`);
    await synced(env);
    await env.source.query(`begin;
      update a set v = 'changed ' || id where id <= 10;
      delete from a where id between 11 and 15;
      insert into a select g, 'new' || g from generate_series(21, 25) g;
      update b set id = id + 1000 where id <= 5;
      update b set id = 100, w = 'moved' where id = 6;
      insert into h select g, 'h' || g from generate_series(1, 30) g;
      commit`);
    await strictlyConverged(env, ["a", "b", "h"]);
    assert.ok(AT_ONCE in phasesOf(sidecar.output()), "the tables were merged at once");
    await sidecar.stop();
    // As a table at a time (apply-merge's first test): rows of keys the target has
    // updated, none deleted to be inserted again; keys gone deleted.
    await until("the target's statistics show the batches", async () => {
      const [ca, cb, ch] = [await targetCounts(env, "a"), await targetCounts(env, "b"), await targetCounts(env, "h")];
      return ca.ins === 25 && ca.upd === 10 && ca.del === 5 && cb.ins === 26 && cb.del === 6 && ch.ins === 30;
    }, 20_000).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify([await targetCounts(env, "a"), await targetCounts(env, "b"), await targetCounts(env, "h")])}`);
    });
  } finally {
    await sidecar.stop();
  }
});

test("a unique value moving between rows, beside another table: the tables go one at a time, no error", async () => {
  const env = await freshEnv("merge_at_once_unique");
  await setup(env, "create table t (id int primary key, email text not null unique, n int); create table u (id int primary key, v text)", ["t", "u"]);
  const sidecar = startSidecar(env.sourceUrl, [], DEBUG_LOG);
  try {
    await env.source.query("begin; insert into t values (1, 'a', 1), (2, 'b', 2), (3, 'c', 3); insert into u values (1, 'x'); commit");
    await synced(env);
    await env.source.query(`begin;
      update t set email = 'tmp' where id = 1;
      update t set email = 'a' where id = 2;
      update t set email = 'b' where id = 3;
      update t set email = 'c' where id = 1;
      update u set v = 'y';
      insert into u values (2, 'z');
      commit`);
    assert.deepEqual(await tableText(env.source, "t"), ["(1,c,1)", "(2,a,2)", "(3,b,3)"]);
    await strictlyConverged(env, ["t", "u"]);
    await env.source.query("begin; update t set n = n * 10; update u set v = 'w'; commit");
    await strictlyConverged(env, ["t", "u"]);
    assert.equal((await status(env))?.last_error ?? null, null);
  } finally {
    await sidecar.stop();
  }
});

test("a failing table in a batch merged at once: dbsync.status names it, nothing of the batch stays, and it goes on once fixed", async () => {
  const env = await freshEnv("merge_at_once_failing");
  await setup(env, "create table a (id int primary key, v text); create table b (id int primary key, v text)", ["a", "b"], {
    targetDdl: "create table a (id int primary key, v text); create table b (id int primary key, v text constraint b_not_bad check (v <> 'bad'))",
  });
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await env.source.query("begin; insert into a values (1, 'x'); insert into b values (1, 'x'); commit");
    await synced(env);
    await env.source.query("begin; update a set v = 'y'; insert into a values (2, 'z'); update b set v = 'bad'; commit");
    await failsWith(env, /b_not_bad/);
    assert.match((await status(env))?.last_error_table ?? "", /"?b"?$/);
    assert.deepEqual(await tableText(env.target, "a"), ["(1,x)"], "nothing of the failed batch on the target");
    await env.target.query("alter table b drop constraint b_not_bad");
    await strictlyConverged(env, ["a", "b"]);
  } finally {
    await sidecar.stop();
  }
});

test("a small batch's merge and its commit share one round trip", async () => {
  const env = await freshEnv("merge_at_once_commit");
  await setup(env, "create table a (id int primary key, v text); create table b (id int primary key, w text)", ["a", "b"]);
  const sidecar = startSidecar(env.sourceUrl, [], DEBUG_LOG);
  try {
    await env.source.query("begin; insert into a select g, 'a' from generate_series(1, 20) g; insert into b values (1, 'b'); commit");
    await synced(env);
    await env.source.query("begin; update a set v = 'changed' where id <= 10; delete from a where id > 15; insert into b values (2, 'new'); commit");
    await strictlyConverged(env, ["a", "b"]);
    const batches = sidecar
      .output()
      .split("\n")
      .filter((l) => l.includes('"batch applied"'))
      .map((l) => JSON.parse(l).phases as Record<string, number>);
    const atOnce = batches.filter((p) => AT_ONCE in p);
    assert.ok(atOnce.length >= 2, JSON.stringify(batches));
    // StreamMerge.mergeAndCommit: no round trip of its own for the commit.
    assert.deepEqual(atOnce.filter((p) => "commit" in p), []);
  } finally {
    await sidecar.stop();
  }
});

test("a deferred constraint of the target that fails the commit of a batch merged with it: the error in dbsync.status, nothing of the batch stays, and it goes on once fixed", async () => {
  const env = await freshEnv("merge_at_once_deferred");
  await setup(env, "create table a (id int primary key, v text); create table b (id int primary key, v text)", ["a", "b"], {
    targetDdl: `create table a (id int primary key, v text); create table b (id int primary key, v text);
      create function no_bad() returns trigger language plpgsql as $$
      begin
        if new.v = 'bad' then raise exception 'b_no_bad: % is bad', new.id; end if;
        return null;
      end $$;
      create constraint trigger b_no_bad after insert or update on b deferrable initially deferred for each row execute procedure no_bad();
      alter table b enable always trigger b_no_bad`,
  });
  const sidecar = startSidecar(env.sourceUrl, [], DEBUG_LOG);
  try {
    await env.source.query("begin; insert into a values (1, 'x'); insert into b values (1, 'x'); commit");
    await synced(env);
    await env.source.query("begin; update a set v = 'y'; insert into a values (2, 'z'); update b set v = 'bad'; commit");
    await failsWith(env, /b_no_bad/);
    assert.deepEqual(await tableText(env.target, "a"), ["(1,x)"], "nothing of the failed batch on the target");
    assert.deepEqual(await tableText(env.target, "b"), ["(1,x)"]);
    await env.target.query("drop trigger b_no_bad on b");
    await strictlyConverged(env, ["a", "b"]);
    assert.ok(AT_ONCE in phasesOf(sidecar.output()));
  } finally {
    await sidecar.stop();
  }
});

test("application triggers on the target (ENABLE ALWAYS) in a batch merged at once: each row seen once, a skipping trigger no loss", async () => {
  const env = await freshEnv("merge_at_once_triggers");
  await setup(env, "create table a (id int primary key, v text); create table h (id int primary key, v text); create table k (id int primary key, v text)", ["a", "h", "k"]);
  await env.target.query(`
    create table audit (tbl text, op text, id int);
    create function audit_row() returns trigger language plpgsql as $$
    begin
      insert into audit values (tg_table_name, tg_op, case tg_op when 'DELETE' then old.id else new.id end);
      return null;
    end $$;
    create trigger a_audit after insert or update or delete on a for each row execute procedure audit_row();
    create trigger h_audit after insert or update or delete on h for each row execute procedure audit_row();
    alter table a enable always trigger a_audit;
    alter table h enable always trigger h_audit;
    -- An application's "ignore duplicates": an insert of a key k has does nothing.
    create function skip_known() returns trigger language plpgsql as $$
    begin
      if exists (select from k where id = new.id) then return null; end if;
      return new;
    end $$;
    create trigger k_skip before insert on k for each row execute procedure skip_known();
    alter table k enable always trigger k_skip`);
  const audited = async () =>
    (await env.target.query<{ x: string }>(
      `select tbl || ' ' || op || ' ' || count(*) || ' ' || (count(*) - count(distinct id)) as x from audit group by tbl, op order by tbl, op`,
    )).rows.map((r) => r.x);
  const sidecar = startSidecar(env.sourceUrl, [], DEBUG_LOG);
  try {
    await env.source.query(`begin;
      insert into a select g, 'a' from generate_series(1, 10) g;
      insert into k select g, 'k' from generate_series(1, 10) g;
      commit`);
    await strictlyConverged(env, ["a", "h", "k"]);
    await env.target.query("truncate audit");
    // h: new rows (straight into the table); a: updates, deletes and new rows; k:
    // rows of keys it has only, which its trigger would skip if they were inserted.
    await env.source.query(`begin;
      insert into h select g, 'h' from generate_series(1, 7) g;
      update a set v = 'changed' where id <= 4;
      delete from a where id > 8;
      insert into a values (11, 'new');
      update k set v = 'changed' where id % 2 = 0;
      commit`);
    await strictlyConverged(env, ["a", "h", "k"]);
    assert.deepEqual(await audited(), ["a DELETE 2 0", "a INSERT 1 0", "a UPDATE 4 0", "h INSERT 7 0"]);
    assert.ok(AT_ONCE in phasesOf(sidecar.output()));
  } finally {
    await sidecar.stop();
  }
});

/** A table of the plan as batch_plan describes one merged in place on key id. */
function planTable(tableId: number, name: string, columns: string[]): PlanTable {
  return {
    table_id: tableId, target: name, partitioned: false, columns, events: 1, action: "refresh", forced: false, truncate: false,
    copy_request: 0, rows_estimated: null, sql: null, shapes: [{ op: "D", key_columns: ["id"] }], upsert_key: ["id"], in_place: true, chunk: null,
  };
}

/** A piece of table `id`: lines of COPY text (op first). */
function piece(id: number, lines: string[]): Piece {
  const data = [Buffer.from(lines.map((l) => `${l}\n`).join(""))];
  const counts = new Map<string, number>();
  for (const l of lines) counts.set(l.split("\t")[0], (counts.get(l.split("\t")[0]) ?? 0) + 1);
  return { id, data, bytes: data[0].length, counts };
}

test("the savepoint of a merge at once does not outlive its failure, and a failing table is named", async () => {
  const env = await freshEnv("merge_at_once_savepoint");
  const client = await env.target.connect();
  try {
    await client.query(`create table a (id int primary key, v text);
                        create table b (id int primary key, email text not null unique, n int check (n >= 0))`);
    await client.query("insert into a values (1, 'x'); insert into b values (1, 'p', 1), (2, 'q', 2)");
    const merge = async (items: SinkItem[]) => {
      const stages = new StageTables();
      const now = await stages.describe(client, ["a", "b"]);
      const tables = new Map<number, StagedTable>();
      for (const t of [planTable(1, "a", ["id", "v"]), planTable(2, "b", ["id", "email", "n"])]) {
        const stage = await stages.ensure(client, t.target, t.columns, now.get(t.target));
        tables.set(t.table_id, { t, stage, table: `only ${t.target}`, refusesDuplicates: true });
      }
      const phases = new Phases();
      await new StreamMerge(client, tables, phases, withTable, stages, new StraightCopies(), true).items(items);
      return phases.toJSON();
    };
    // b's emails swap: its update in place fails, and so does the statement of both tables.
    await client.query("begin");
    const phases = await merge([{ piece: piece(1, ["U\t1\ty", "U\t2\tz"]) }, { end: 1 }, { piece: piece(2, ["U\t1\tq\t1", "U\t2\tp\t2"]) }, { end: 2 }]);
    assert.ok(AT_ONCE in phases);
    assert.deepEqual(await tableText(client, "a"), ["(1,y)", "(2,z)"]);
    assert.deepEqual(await tableText(client, "b"), ["(1,q,1)", "(2,p,2)"]);
    await assert.rejects(client.query("release savepoint dbsync_merge"), { code: "3B001" });
    await client.query("rollback");
    // A value b refuses: the error names b.
    await client.query("begin");
    await assert.rejects(merge([{ piece: piece(1, ["U\t1\ty"]) }, { end: 1 }, { piece: piece(2, ["U\t1\tp\t-1"]) }, { end: 2 }]), (err: unknown) => {
      assert.ok(err instanceof DbsyncError && err.context.table === "b", String(err));
      return true;
    });
    await client.query("rollback");
  } finally {
    client.release();
  }
});
