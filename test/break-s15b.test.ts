// Attacks on the s15 changes (the tick's commit beside the stream, fewer
// begin_batch calls, the wake-ups, the TLS socket's writes): those that broke
// something failed before their fix; those that held are marked so, kept as guards.
import assert from "node:assert/strict";
import fs from "node:fs";
import { test } from "node:test";
import { Pool } from "pg";
import { SOURCE_MAJOR, Sidecar, compat, createDatabase, freshEnv, sleep, startSidecar, subscribeTables, tableText, until, value } from "./helpers";
import { databaseName, withClient } from "./kit/databases";
import { WORKER_MIN_MAJOR, migrate } from "../src/migrate";
import { privateClusters } from "./kit/private-clusters";
import { ROW_LOG, atTickCommit } from "./kit/workload";

const clusters = privateClusters();

/** A subscription 's' of table t on private databases whose source runs with synchronous_commit = off and a slow WAL writer. */
async function asyncSource(label: string) {
  const name = databaseName(label);
  const [sourceUrl, targetUrl] = await Promise.all([createDatabase(clusters.source().url(), label, { name }), createDatabase(clusters.target().url(), label)]);
  await migrate(sourceUrl);
  await withClient(clusters.source().url(), async (c) => {
    await c.query(`alter database "${name}" set synchronous_commit = off`);
    await c.query("alter system set wal_writer_delay = '10s'");
    await c.query("select pg_reload_conf()");
  });
  // The test's own writes are synchronous: only what dbsync commits is at stake.
  const source = new Pool({ connectionString: sourceUrl, options: "-c synchronous_commit=on" });
  const target = new Pool({ connectionString: targetUrl });
  for (const p of [source, target]) p.on("error", () => undefined);
  await source.query("create table t (id bigint primary key, v text)");
  await target.query("create table t (id bigint primary key, v text)");
  await source.query("select dbsync.add_table('t', 'g')");
  await source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [targetUrl]);
  const position = () => value<string>(target, "select tick_id::text from dbsync.applied");
  /** Stops the source (immediate) and the sidecar, starts the source again: whether it has the tick the target stands at. */
  const crash = async (sidecar: Sidecar) => {
    await clusters.source().stop("immediate");
    await sidecar.stop("SIGKILL");
    const at = await position();
    await clusters.source().start();
    return { at, kept: await value<number>(source, "select count(*)::int from dbsync.ticks where tick_id = $1::bigint", [at]) };
  };
  const end = async () => {
    await withClient(clusters.source().url(), (c) => c.query("alter system reset wal_writer_delay; select pg_reload_conf()")).catch(() => undefined);
    await source.end();
    await target.end();
  };
  return { sourceUrl, source, target, position, crash, end };
}

// The tick's commit is awaited before the target commits the batch, so that a tick
// lost with the source's last WAL has no batch on the target (its id would be taken
// again by another snapshot). A source run with synchronous_commit = off (a DBA's
// choice for its own writes, set for the database here) acknowledged that commit
// before its WAL left the server's memory: an immediate stop then lost the tick the
// target stood at. The WAL writer is slowed (wal_writer_delay = 10 s) so that the
// commit is still in the WAL buffers when the source stops.
test("a source with synchronous_commit = off, stopped immediately once the target has a batch: the tick the target stands at survives", async () => {
  const env = await asyncSource("brk15b_async_tick");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query("insert into t values (1, 'x')");
    await until("the first row applied", async () => (await value<number>(env.target, "select count(*)::int from t")) === 1, 60_000, 100);
    // Past the WAL writer's next round: what came before is written out.
    await sleep(11_000);
    await env.source.query("insert into t values (2, 'y')");
    await until("the second row applied", async () => (await value<number>(env.target, "select count(*)::int from t")) === 2, 60_000, 2);
    const { at, kept } = await env.crash(sidecar);
    assert.equal(kept, 1, `the target stands at tick ${at}, which the source lost`);
  } finally {
    await sidecar.stop();
    await env.end();
  }
});

// The same for a batch with nothing to read: an idle group's upkeep takes a tick
// when its queue rotates (here every second), and the subscription's target moves
// to it (begin_batch's third case). That transaction took no tick of its own, and
// the tick it moved to was committed by the upkeep's, both acknowledged from memory.
// An idle group's slot is not switched again (migration 0026), so once the WAL writer
// has gone round, the upkeep's forced tick (dbsync.tick(group, true), what the
// sidecar calls when maintain says a slot waits) is taken here, in a transaction of
// its own under the server's synchronous_commit = off.
test("a source with synchronous_commit = off, stopped immediately once the target moved to an upkeep tick: that tick survives", async () => {
  const env = await asyncSource("brk15b_async_moved");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100", "--rotate-after", "1"]);
  try {
    await env.source.query("insert into t values (1, 'x')");
    await until("the row applied", async () => (await value<number>(env.target, "select count(*)::int from t")) === 1, 60_000, 100);
    await sleep(11_000);
    const before = await env.position();
    await env.source.query("select dbsync.tick(group_id, true) from dbsync.groups");
    await until("the target moved", async () => (await env.position()) !== before, 60_000, 2);
    const { at, kept } = await env.crash(sidecar);
    assert.equal(kept, 1, `the target stands at tick ${at}, which the source lost`);
  } finally {
    await sidecar.stop();
    await env.end();
  }
});

// Held, kept as a guard. The tick's commit goes on beside the batch's stream, its
// connection given back to the control pool once it has settled. Here the control
// backend dies at that commit (terminated at a deferred trigger on dbsync.ticks),
// over and over while rows come: each batch read and merged must not reach the
// target, the connection must not go back to the pool as if alive, and the process
// must not fall over on a rejection nobody waits for.
test("the control backend terminated at its tick's commit, batch after batch: no batch on the target before its tick, nothing lost or applied twice, the sidecar carries on", async () => {
  const env = await freshEnv("brk15b_tick_commit_dies");
  await subscribeTables(env, "create table a (id int primary key, n int not null, v text)", ["a"]);
  await env.target.query(compat(ROW_LOG, "target"));
  await env.source.query(
    compat(`create table tick_fault (on_ boolean);
       create sequence tick_deaths;
       ${atTickCommit(`if exists (select from public.tick_fault) then
           perform pg_catalog.nextval('public.tick_deaths');
           perform pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid());
         end if;`)}`),
  );
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    let i = 0;
    const write = () => env.source.query("with u as (update a set n = n + 1 where id = $1 - 1) insert into a values ($1, 0, 'x')", [++i]);
    for (let k = 0; k < 20; k++) await write();
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output().slice(-3000));
    const before = await value<number>(env.target, "select tick_id::int from dbsync.applied");
    await env.source.query("insert into tick_fault values (true)");
    for (let k = 0; k < 5; k++) await write();
    await until("tick commits died", async () => Number(await value(env.source, "select last_value from tick_deaths")) >= 4, 60_000, 100);
    // No tick committed meanwhile: the target stayed where it was.
    assert.equal(await value<number>(env.target, "select tick_id::int from dbsync.applied"), before);
    await env.source.query("delete from tick_fault");
    for (let k = 0; k < 20; k++) await write();
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output().slice(-3000));
    assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));
    assert.deepEqual((await env.target.query("select id, n, count(*)::int from a_log group by id, n having count(*) > 1 limit 5")).rows, []);
    assert.equal(sidecar.proc.exitCode, null, sidecar.output().slice(-3000));
    assert.doesNotMatch(sidecar.output(), /unhandled|Release called on client which has already been released/i);
  } finally {
    await sidecar.stop();
  }
});

/** Whether process `pid` has the TCP connection whose local port is `port` (its sockets in /proc). */
function ownsPort(pid: number, port: number): boolean {
  const fds = `/proc/${pid}/fd`;
  const sockets = new Set<string>();
  for (const f of fs.readdirSync(fds)) {
    const link = (() => {
      try {
        return fs.readlinkSync(`${fds}/${f}`);
      } catch {
        return "";
      }
    })();
    if (link.startsWith("socket:[")) sockets.add(link.slice(8, -1));
  }
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of fs.readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && parseInt(f[1].split(":")[1], 16) === port && sockets.has(f[9])) return true;
    }
  }
  return false;
}

// Held, kept as a guard. The process that applies a subscription is SIGKILLed
// in the middle of a batch (held at the target's lock): its job stays locked in
// the queue, its backends go with their connections, and the other process must
// take the subscription on its own (no write comes to notify it).
test("two processes: the one applying a subscription SIGKILLed mid-batch, the other takes the subscription over", { skip: SOURCE_MAJOR < WORKER_MIN_MAJOR && "in-process wake-ups before PostgreSQL 12" }, async () => {
  const env = await freshEnv("brk15b_survivor");
  await subscribeTables(env, "create table a (id int primary key, v text)", ["a"]);
  const args = ["--poll-interval", "100", "--concurrency", "1"];
  const sidecars = [startSidecar(env.sourceUrl, args), startSidecar(env.sourceUrl, args)];
  const blocker = await env.target.connect();
  try {
    await env.source.query("insert into a values (1, 'x')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true);
    await blocker.query("begin; lock table a in access exclusive mode");
    await env.source.query("insert into a values (2, 'y')");
    const waiting = "select a.client_port from pg_stat_activity a join pg_locks l using (pid) where l.relation = 'a'::regclass and not l.granted";
    await until("the batch waiting for the target's lock", async () => (await env.target.query(waiting)).rows.length > 0, 30_000, 50);
    const port = await value<number>(env.target, waiting);
    const applying = sidecars.find((s) => ownsPort(s.proc.pid!, port));
    assert.ok(applying, `no sidecar owns port ${port}`);
    applying.proc.kill("SIGKILL");
    await blocker.query("commit");
    const survivor = sidecars.find((s) => s !== applying)!;
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, survivor.output().slice(-3000));
    assert.deepEqual(await tableText(env.target, "a"), await tableText(env.source, "a"));
    assert.equal(survivor.proc.exitCode, null);
  } finally {
    blocker.release();
    await Promise.all(sidecars.map((s) => s.stop()));
  }
});

// Held, kept as a guard. After a batch of a group without sequences, the loop ends
// with the early begin_batch that found nothing (that call does not look at
// sequences; Appliers keeps "carries none" per subscription). A sequence added to
// the group while the sidecar runs, then moved with no row written (nothing to
// notify): has_work before the loop lingers or sleeps, and the poll, must carry it.
test("a sequence added to a group that carried none, moved with no row written, while the sidecar runs: carried by the poll", async () => {
  const env = await freshEnv("brk15b_seq_added");
  await subscribeTables(env, "create table a (id int primary key, v text); create sequence sq;", ["a"]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "1000"]);
  const carried = (n: number) => until(`the sequence at ${n}`, async () => Number(await value(env.target, "select last_value from sq")) === n, 30_000, 50);
  try {
    await env.source.query("insert into a values (1, 'x')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    await sleep(300);
    await env.source.query("select dbsync.add_sequence('sq', 'g')");
    await env.source.query("select setval('sq', 777)");
    await carried(777);
    await env.source.query("begin; insert into a values (2, 'y'); select setval('sq', 888); commit");
    await carried(888);
    await env.source.query("select setval('sq', 999)");
    await carried(999);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
  } finally {
    await sidecar.stop();
  }
});
