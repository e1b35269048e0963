// A savepoint the apply rolls back to is released too: ROLLBACK TO keeps it, and
// the subtransaction it starts again then holds the rest of the batch. A failed
// straight COPY (merge.ts copyRows) left one per table, nested: every later write of
// the batch took a subtransaction id per level, a batch of more than 64 such tables
// overflowed the backend's cache of them (every snapshot on the target then looks
// subtransactions up in pg_subtrans), and every visibility check of a row the batch
// wrote walks the levels (TransactionIdIsCurrentTransactionId).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, compat, freshEnv, rows, startSidecar, value } from "./helpers";
import { setup, synced } from "./kit/convergence";

const TABLES = 8;
const ROWS = 80;

/**
 * A trigger on each of `tables` on the target records the transaction ids its
 * statement's session holds: its own and one per subtransaction open around the
 * statement that wrote (a subtransaction's id is let go when it is released or
 * rolled back), in table seen.
 */
async function probe(env: Env, tables: string[]) {
  await env.target.query(`create table seen (tbl text, xids int);
    create function see() returns trigger language plpgsql as $$
    begin
      insert into seen select tg_table_name, count(*) from pg_locks where pid = pg_backend_pid() and locktype = 'transactionid';
      return null;
    end $$;`);
  for (const n of tables) {
    await env.target.query(compat(`create trigger see after insert or update on ${n} for each statement execute procedure see();
      alter table ${n} enable always trigger see;`, "target"));
  }
}

/** No statement probe saw ran deeper than one savepoint in its transaction. */
async function assertShallow(env: Env, what: string) {
  const deepest = await rows<{ tbl: string; xids: number }>(env.target, "select tbl, xids from seen order by xids desc limit 1");
  assert.ok(deepest.length && deepest[0].xids <= 2, `${what}: ${JSON.stringify(deepest)} transaction ids held`);
}

// Each table's rows updated in one transaction of more than INLINE_LINES events (so
// not merged at once): the straight COPY of each table's piece fails on keys the
// target has, and the piece goes through the stage.
test("a batch whose straight COPYs fail runs each table's merge one subtransaction deep, not one more per table before it", async () => {
  const env = await freshEnv("savepoints_copy");
  const names = Array.from({ length: TABLES }, (_, i) => `t${i}`);
  await setup(env, names.map((n) => `create table ${n} (id int primary key, v int not null);`).join("\n"), names);
  await probe(env, names);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    for (const n of names) await env.source.query(`insert into ${n} select g, 0 from generate_series(1, ${ROWS}) g`);
    await synced(env);
    await env.target.query("truncate seen");
    await env.source.query(`begin; ${names.map((n) => `update ${n} set v = v + 1;`).join(" ")} commit`);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
  for (const n of names) assert.equal(await value(env.target, `select count(*)::int from ${n} where v = 1`), ROWS, n);
  // The transaction's own id and the merge's savepoint; before, one more level per table merged before.
  await assertShallow(env, `a batch of ${TABLES} tables`);
});

// Copied tables are emptied first: all in one TRUNCATE, or, when that fails (a
// foreign key of the target references them), one by one, by DELETE where TRUNCATE
// fails (apply.ts emptyTable), each under a savepoint that was never released.
test("tables a foreign key references, emptied one by one for their copy: their rows are written one subtransaction deep at most", async () => {
  const env = await freshEnv("savepoints_empty");
  const names = Array.from({ length: 4 }, (_, i) => `c${i}`);
  await setup(env, names.map((n) => `create table ${n} (id int primary key, v int not null);`).join("\n"), names, { copyData: true });
  for (const n of names) await env.target.query(`create table ${n}_ref (id int references ${n})`);
  await probe(env, names);
  for (const n of names) await env.source.query(`insert into ${n} select g, 0 from generate_series(1, ${ROWS}) g`);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await synced(env);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
  for (const n of names) assert.equal(await value(env.target, `select count(*)::int from ${n}`), ROWS, n);
  await assertShallow(env, `a copy of ${names.length} referenced tables`);
});
