// Attacks on the pipelined apply loop (the next batch opened while the target
// commits the one before, src/apply/applier.ts) and on big batches read by two
// readers (src/target/readers.ts), on real clusters with writers going on: control
// calls made while a batch commits and the next is planned, DDL and TRUNCATE in big
// batches, the readers' sessions killed, the process killed between a commit and
// its report, the pool full with several subscriptions. Each ends with the tables
// compared row by row (test/kit/convergence.ts) right after wait_for_sync.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, Sidecar, freshEnv, sleep, startSidecar, until, value } from "./helpers";
import { assertTablesEqual, setup, strictlyConverged } from "./kit/convergence";
import { TWO_STREAMS_DDL, TWO_STREAMS_TABLES } from "./kit/two-streams";

/** Batches of a few dozen events read by two readers; small pieces. */
const SPLIT_ENV = { DBSYNC_SPLIT_EVENTS: "20", DBSYNC_STREAM_PIECE_LINES: "50", DBSYNC_LOG_LEVEL: "debug", DBSYNC_LOG_FORMAT: "json" };
const DDL = TWO_STREAMS_DDL;
const TABLES = TWO_STREAMS_TABLES;

/** Writers on the four tables until `stop()`: inserts, updates of earlier rows, deletes. */
function writers(env: Env, count = 2): { stop: () => Promise<number> } {
  let stopping = false;
  let txs = 0;
  const one = async (w: number) => {
    const c = await env.source.connect();
    try {
      for (let i = 1; !stopping; i++) {
        const id = w * 1_000_000 + i;
        await c.query(
          `begin;
           insert into a (id, v) values (${id}, 'a${i}'); insert into b (id, v) values (${id}, 'b${i}');
           insert into c (id, n, w) values (${id}, ${i}, 'c'); insert into d (k, x, z) values ('k${id}', ${i}, 'd');
           update a set v = v || '+' where id = ${id - 3}; update c set n = n + 1 where id = ${id - 2};
           delete from b where id = ${id - 5}; update d set z = 'u${i}' where k = 'k${id - 1}';
           commit`,
        );
        txs++;
        if (i % 4 === 0) await sleep(1);
      }
    } finally {
      c.release();
    }
  };
  const running = Array.from({ length: count }, (_, w) => one(w + 1));
  return {
    stop: async () => {
      stopping = true;
      await Promise.all(running);
      return txs;
    },
  };
}

/** batches applied to a, or the sidecar's errors. */
async function flowing(env: Env, sidecar: Sidecar) {
  await until("batches flow", async () => (await value<number>(env.target, "select count(*)::int from a")) > 200, 60_000).catch((err) => {
    const errors = sidecar.output().split("\n").filter((l) => /"level":(40|50)/.test(l));
    throw new Error(`${(err as Error).message}; errors: ${errors.slice(0, 3).join("\n")}`);
  });
}

/** wait_for_sync true, then at once every table equal (true too early would show here). */
async function syncedAndEqual(env: Env, tables: string[], sub = "s") {
  assert.equal(await value(env.source, "select dbsync.wait_for_sync($1, '90 s')", [sub]), true);
  await assertTablesEqual(env.source, env.target, tables, "right after wait_for_sync");
}

test("control calls while a batch commits and the next is planned: pause, resume, resync_table, resync_subscription, execute_ddl, add_table, remove_table", async () => {
  const env = await freshEnv("pipe_attack_control");
  await setup(env, `${DDL}; create table e (id int primary key, v text)`, TABLES);
  const sidecar = startSidecar(env.sourceUrl, [], SPLIT_ENV);
  const w = writers(env);
  try {
    await flowing(env, sidecar);
    const steps = [
      "select dbsync.pause('s')",
      "select dbsync.resume('s')",
      "select dbsync.resync_table('s', 'b')",
      "select dbsync.execute_ddl('g', 'alter table c add column extra int default 7')",
      "insert into e select g, 'e' || g from generate_series(1, 500) g",
      "select dbsync.add_table('e', 'g')",
      "select dbsync.resync_table('s', 'a')",
      "select dbsync.resync_subscription('s')",
      "select dbsync.execute_ddl('g', 'alter table d drop column y')",
      "select dbsync.pause('s')",
      "select dbsync.resume('s')",
      "select dbsync.remove_table('e')",
      "select dbsync.execute_ddl('g', 'alter table a add column w int')",
    ];
    for (const s of steps) {
      await env.source.query(s);
      await sleep(150);
    }
    await sleep(1000);
    const txs = await w.stop();
    assert.ok(txs > 100, `writers wrote ${txs} transactions`);
    await syncedAndEqual(env, TABLES);
    await strictlyConverged(env, TABLES);
    assert.ok(sidecar.output().includes("stream of reader 2"), "two readers read some batch");
  } finally {
    await w.stop();
    await sidecar.stop();
  }
});

test("two processes on one subscription, each SIGKILLed again and again between commits and reports, the queue rotated and truncated all along: nothing lost, nothing applied twice", async () => {
  const env = await freshEnv("pipe_attack_kill");
  await setup(env, DDL, TABLES);
  // Every row version of c the target gets, logged in replica mode too: a batch
  // applied twice (from a position the source recorded behind the target's, or
  // the queue truncated past it) logs its versions twice.
  await env.target.query(`create table c_log (id int, n int);
    create function c_log() returns trigger language plpgsql as $$ begin insert into c_log values (new.id, new.n); return null; end $$;
    create trigger c_log after insert or update on c for each row execute procedure c_log();
    alter table c enable always trigger c_log`);
  const group = await value<number>(env.source, "select group_id from dbsync.groups where name = 'g'");
  const w = writers(env);
  let upkeep = true;
  let behind = "";
  const maintainer = (async () => {
    while (upkeep) {
      await env.source.query("select dbsync.maintain($1, '0 s')", [group]);
      const source = await value<number>(env.source, "select position_tick::int from dbsync.subscriptions where name = 's'");
      const target = await value<number>(env.target, "select tick_id::int from dbsync.applied").catch(() => undefined);
      if (target !== undefined && target < source) behind ||= `source ${source}, target ${target}`;
      await sleep(20);
    }
  })();
  const start = () => startSidecar(env.sourceUrl, [], SPLIT_ENV);
  const procs = [start(), start()];
  try {
    for (let round = 0; round < 8; round++) {
      await sleep(600 + (round % 3) * 150);
      await procs[round % 2].stop("SIGKILL");
      procs[round % 2] = start();
    }
    const txs = await w.stop();
    assert.ok(txs > 100, `writers wrote ${txs} transactions`);
    await syncedAndEqual(env, TABLES);
    upkeep = false;
    await maintainer;
    assert.equal(behind, "", "the source's position read ahead of the target's");
    assert.deepEqual((await env.target.query("select id, n, count(*)::int from c_log group by id, n having count(*) > 1 limit 5")).rows, []);
  } finally {
    upkeep = false;
    await w.stop();
    await maintainer.catch(() => undefined);
    await Promise.all(procs.map((p) => p.stop()));
  }
});

for (const concurrency of [1, 2]) {
test(`TRUNCATE and ALTER of tables in two-reader batches, three subscriptions on --concurrency ${concurrency}: no stall, every table equal`, async () => {
  const env = await freshEnv(`pipe_attack_truncate_${concurrency}`);
  await setup(env, DDL, TABLES);
  // Two more groups, each its subscription to the same target: they and s share the two readers.
  for (const g of ["h", "i"]) {
    const ddl = `create table ${g}1 (id int primary key, v text); create table ${g}2 (id int primary key, n int, w text)`;
    await env.source.query(ddl);
    await env.target.query(ddl);
    await env.source.query(`select dbsync.create_group('${g}')`).catch(() => undefined);
    for (const t of [`${g}1`, `${g}2`]) await env.source.query("select dbsync.add_table($1, $2)", [t, g]);
    await env.source.query(`select dbsync.add_subscription('s${g}', '${g}', $1, copy_data => false)`, [env.targetUrl]);
  }
  let writing = true;
  const otherWriter = (async () => {
    for (let i = 1; writing; i++) {
      await env.source.query(`insert into h1 select g, 'x' from generate_series(${i * 50}, ${i * 50 + 49}) g;
        insert into h2 select g, g, 'y' from generate_series(${i * 50}, ${i * 50 + 49}) g;
        insert into i1 select g, 'x' from generate_series(${i * 50}, ${i * 50 + 49}) g;
        insert into i2 select g, g, 'y' from generate_series(${i * 50}, ${i * 50 + 49}) g`);
      await sleep(5);
    }
  })();
  const sidecar = startSidecar(env.sourceUrl, ["--concurrency", String(concurrency)], SPLIT_ENV);
  const w = writers(env);
  try {
    await flowing(env, sidecar);
    for (let round = 0; round < 4; round++) {
      await env.source.query(round % 2 ? "truncate c" : "truncate a, d");
      await sleep(200);
      await env.source.query(`select dbsync.execute_ddl('g', 'alter table c add column r${round} int')`);
      await sleep(200);
      await env.source.query(round % 2 ? "truncate h2" : "truncate i1");
      await sleep(300);
    }
    await w.stop();
    writing = false;
    await otherWriter;
    await syncedAndEqual(env, TABLES);
    await syncedAndEqual(env, ["h1", "h2"], "sh");
    await syncedAndEqual(env, ["i1", "i2"], "si");
  } finally {
    writing = false;
    await w.stop();
    await otherWriter.catch(() => undefined);
    await sidecar.stop();
  }
});
}

test("one backlog batch read by two readers holding a key that changes shape, a partitioned table, DDL and a new table's copy", async () => {
  const env = await freshEnv("pipe_attack_backlog");
  // No unique key on a partitioned table before PostgreSQL 11: p only from 11 on.
  const partitioned = (await value<number>(env.source, "select current_setting('server_version_num')::int")) >= 110000;
  const parts = `create table p (id int primary key, v text) partition by range (id);
                 create table p1 partition of p for values from (0) to (5000);
                 create table p2 partition of p for values from (5000) to (100000)`;
  const mine = partitioned ? [...TABLES, "p"] : TABLES;
  await setup(env, `${DDL}; ${partitioned ? parts : ""}; create table e (id int primary key, v text)`, mine);
  const all = [...mine, "e"];
  // Started and stopped once: the subscription's position is set, then the backlog comes.
  let sidecar = startSidecar(env.sourceUrl, [], SPLIT_ENV);
  await syncedAndEqual(env, TABLES);
  await sidecar.stop();
  await env.source.query(`insert into a select g, 'a' || g from generate_series(1, 3000) g;
    insert into b select g, 'b' || g from generate_series(1, 2000) g;
    insert into c select g, g, 'c' from generate_series(1, 3000) g;
    insert into d select 'k' || g, g, -g, 'd' from generate_series(1, 3000) g;
    ${partitioned ? "insert into p select g, 'p' || g from generate_series(1, 9000, 3) g;" : ""}
    insert into e select g, 'e' || g from generate_series(1, 2000) g`);
  // (s copies no data of its own accord: copy_data => false.)
  await env.source.query("select dbsync.add_table('e', 'g'); select dbsync.resync_table('s', 'e')");
  // d's key moves from k to x: its batch has keys of both shapes.
  await env.source.query(`select dbsync.execute_ddl('g', 'alter table d drop constraint d_pkey, add primary key (x)')`);
  await env.source.query(`update d set z = 'after' where x % 3 = 0; delete from d where x % 7 = 0;
    ${partitioned ? "update p set v = 'moved', id = id + 4000 where id % 5 = 1 and id < 5000;" : ""}
    update a set v = 'u' where id % 4 = 0; delete from c where id % 6 = 0`);
  await env.source.query("select dbsync.execute_ddl('g', 'alter table c add column extra text default ''x''')");
  await env.source.query("update c set extra = 'y' where id % 5 = 0; insert into e values (5000, 'late')");
  sidecar = startSidecar(env.sourceUrl, [], SPLIT_ENV);
  try {
    await syncedAndEqual(env, all);
    await strictlyConverged(env, all);
    assert.ok(sidecar.output().includes("stream of reader 2"), "two readers read the backlog");
  } finally {
    await sidecar.stop();
  }
});

test("the subscription dropped and added again under its name while batches are committed and the next ones planned", async () => {
  const env = await freshEnv("pipe_attack_readd");
  await setup(env, DDL, TABLES);
  const sidecar = startSidecar(env.sourceUrl, [], SPLIT_ENV);
  const w = writers(env);
  try {
    await flowing(env, sidecar);
    for (let round = 0; round < 3; round++) {
      await env.source.query("select dbsync.drop_subscription('s')");
      await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => true)", [env.targetUrl]);
      await sleep(700);
    }
    await w.stop();
    await syncedAndEqual(env, TABLES);
    await strictlyConverged(env, TABLES);
  } finally {
    await w.stop();
    await sidecar.stop();
  }
});
