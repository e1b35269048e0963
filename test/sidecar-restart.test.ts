// Server restarts under a running sidecar: the target, then the source, is stopped
// ('fast', then 'immediate') and started again while clients write. Replication
// resumes by itself (the sidecar is not restarted) and nothing is lost.
// These tests restart servers, so they run on private clusters, not the shared ones.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Pool, PoolClient } from "pg";
import { Cluster } from "../src/embedded/cluster";
import { migrate } from "../src/migrate";
import { createDatabase, orAfter, pool, seeded, Sidecar, sleep, startSidecar, tableText, until } from "./helpers";
import { privateClusters } from "./kit/private-clusters";

// The source commits synchronously: the writers count acknowledged commits across an
// immediate stop. The target keeps the suite's asynchronous commit: an immediate stop
// may then lose its last applied batches, which the sidecar must notice.
const clusters = privateClusters();

const DDL = `
  create table entries (id bigint primary key, writer int not null, payload text);
  create table counters (k int primary key, v bigint not null);
  insert into counters select g, 0 from generate_series(1, 50) g;`;

function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: string };
  if (typeof e.code === "string" && (/^(08|57)/.test(e.code) || /^E[A-Z]+$/.test(e.code))) return true;
  return /terminat|connection|ECONN|not queryable|shut ?down|starting up|recovery/i.test(e.message ?? "");
}

/** Runs fn until it succeeds; connection errors (a server restarting) are waited out. */
async function retrying<T>(fn: () => Promise<T>, timeoutMs = 60000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!isConnectionError(err) || Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}

interface WriterStats {
  committed: Set<string>; // ids of rows whose commit was acknowledged
  transactions: number; // acknowledged commits
  unsure: number; // transactions whose COMMIT got no answer
  retries: number;
}

const quiet = new WeakSet<PoolClient>();

/** Inserts a few rows and bumps a counter per transaction; retries a transaction that met a connection error. */
function writer(p: Pool, id: number, stop: { done: boolean }, stats: WriterStats) {
  let next = id * 1_000_000_000;
  const rng = seeded(`sidecar-restart/writer${id}`);
  return (async () => {
    while (!stop.done) {
      const n = rng.int(1, 5);
      const first = next;
      next += n;
      let client: PoolClient | undefined;
      let committing = false;
      try {
        client = await p.connect();
        if (!quiet.has(client)) {
          // A checked-out client whose server goes away emits "error": not a crash here.
          client.on("error", () => undefined);
          quiet.add(client);
        }
        await client.query("begin");
        await client.query("insert into entries select $1::int8 + g, $2, md5(g::text) from generate_series(1, $3::int) g", [first, id, n]);
        await client.query("update counters set v = v + 1 where k = $1", [rng.int(1, 50)]);
        committing = true;
        await client.query("commit");
        client.release();
        for (let i = 1; i <= n; i++) stats.committed.add(String(first + i));
        stats.transactions++;
      } catch (err) {
        client?.release(true);
        if (!isConnectionError(err)) throw err;
        stats.retries++;
        if (committing) stats.unsure++;
        await sleep(100);
        continue;
      }
      await sleep(rng.int(10, 30));
    }
  })();
}

async function setup(label: string) {
  const [sourceUrl, targetUrl] = await Promise.all([createDatabase(clusters.source().url(), label), createDatabase(clusters.target().url(), label)]);
  await migrate(sourceUrl);
  const src = pool(sourceUrl);
  const dst = pool(targetUrl);
  await src.query(DDL);
  await dst.query(DDL);
  await src.query("select dbsync.add_table('entries', 'g'), dbsync.add_table('counters', 'g')");
  await src.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [targetUrl]);
  return { sourceUrl, targetUrl, src, dst };
}

async function waitForSync(src: Pool, sidecar: Sidecar) {
  const ok = await retrying(async () => (await src.query("select dbsync.wait_for_sync('s', '90 s') as ok")).rows[0].ok);
  assert.equal(ok, true, `not in sync after 90 s\n${sidecar.output()}`);
}

async function assertSame(src: Pool, dst: Pool, stats: WriterStats) {
  const [entries, srcEntries] = await Promise.all([tableText(dst, "entries"), tableText(src, "entries")]);
  assert.equal(entries.length, srcEntries.length, "entries: row count");
  assert.deepEqual(entries, srcEntries, "entries differ");
  assert.deepEqual(await tableText(dst, "counters"), await tableText(src, "counters"), "counters differ");
  // Every acknowledged commit is there (unanswered COMMITs may or may not be).
  const ids = new Set((await dst.query("select id::text as id from entries")).rows.map((r) => r.id as string));
  const missing = [...stats.committed].filter((id) => !ids.has(id));
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} acknowledged rows are missing on the target`);
  assert.ok(ids.size >= stats.committed.size);
  // Each transaction bumped one counter once.
  const bumps = Number((await dst.query("select sum(v) as s from counters")).rows[0].s);
  assert.ok(bumps >= stats.transactions && bumps <= stats.transactions + stats.unsure,
    `${bumps} counter bumps on the target for ${stats.transactions} acknowledged transactions (+${stats.unsure} unanswered)`);
}

async function terminate(s: Sidecar) {
  const t0 = Date.now();
  const code = await orAfter(s.stop("SIGTERM"), 12000, "still running after 12 s");
  assert.equal(code, 0, s.output());
  assert.ok(Date.now() - t0 < 10000, `SIGTERM took ${Date.now() - t0} ms`);
}

async function restartScenario(t: { diagnostic(msg: string): void }, label: string, server: () => Cluster) {
  const env = await setup(label);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"], { DBSYNC_LOG_LEVEL: "info" });
  const stop = { done: false };
  const stats: WriterStats = { committed: new Set(), transactions: 0, unsure: 0, retries: 0 };
  const writers = [1, 2, 3].map((i) => writer(env.src, i, stop, stats));
  try {
    await sleep(1500);
    await waitForSync(env.src, sidecar);
    for (const mode of ["fast", "immediate"] as const) {
      const before = stats.committed.size;
      const t0 = Date.now();
      await server().stop(mode);
      await sleep(1000);
      await server().start();
      t.diagnostic(`${label}: ${mode} restart took ${Date.now() - t0} ms`);
      await until(`writers commit again after the ${mode} restart`, async () => stats.committed.size > before + 20, 30000);
      await sleep(1500);
      assert.equal(sidecar.proc.exitCode, null, `the sidecar exited after the ${mode} restart\n${sidecar.output()}`);
      const t1 = Date.now();
      await waitForSync(env.src, sidecar);
      t.diagnostic(`${label}: in sync ${Date.now() - t1} ms after the ${mode} restart (+1.5 s of writes)`);
    }
    stop.done = true;
    await Promise.all(writers);
    await waitForSync(env.src, sidecar);
    const srcCount = Number((await retrying(() => env.src.query("select count(*) from entries"))).rows[0].count);
    t.diagnostic(`${label}: ${stats.committed.size} rows acknowledged, ${srcCount} on the source, ${stats.retries} retried transactions (${stats.unsure} unanswered COMMITs)`);
    assert.ok(srcCount >= stats.committed.size, "acknowledged rows missing on the source");
    if (stats.unsure === 0) assert.equal(srcCount, stats.committed.size);
    await assertSame(env.src, env.dst, stats);
  } finally {
    stop.done = true;
    await Promise.allSettled(writers);
  }
  await terminate(sidecar);
}

test("the target server restarted mid-run: replication resumes by itself, nothing lost", async (t) => {
  await restartScenario(t, "restart_target", () => clusters.target());
});

test("the source server restarted mid-run: replication resumes by itself, nothing lost", async (t) => {
  await restartScenario(t, "restart_source", () => clusters.source());
});
