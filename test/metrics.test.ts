// /metrics, /healthz and /readyz of `dbsync run --metrics-port`.
import assert from "node:assert/strict";
import net from "node:net";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { after, test } from "node:test";
import { freePort, startCluster, stopAll, targetMajorFromEnv } from "../src/embedded/cluster";
import { createDatabase, freshEnv, orAfter, pool, sleep, startSidecar, until } from "./helpers";

after(stopAll);


async function get(port: number, path: string) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

function metric(body: string, name: string, sub: string): number | undefined {
  const line = body.split("\n").find((l) => l.startsWith(name + "{") && l.includes(`subscription="${sub}"`));
  return line ? Number(line.split(" ").pop()) : undefined;
}

test("lag rises while paused and returns to zero after resume; /readyz fails while the target is down", async () => {
  const env = await freshEnv("metrics");
  const targetCluster = await startCluster({ major: targetMajorFromEnv() });
  const targetUrl = await createDatabase(targetCluster.url(), "metrics_target");
  const target = pool(targetUrl);
  await env.source.query("create table m (id int primary key, v text)");
  await target.query("create table m (id int primary key, v text)");
  await env.source.query("select dbsync.add_table('m', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [targetUrl]);
  const port = await freePort();
  const sidecar = startSidecar(env.sourceUrl, ["--metrics-port", String(port)]);
  try {
    await until("healthz", async () => (await get(port, "/healthz").catch(() => ({ status: 0 }))).status === 200);
    assert.equal((await get(port, "/readyz")).status, 200);

    await env.source.query("select dbsync.pause('s')");
    await env.source.query("insert into m select g, 'x' from generate_series(1, 100) g");
    await sleep(1500);
    await env.source.query("insert into m values (1000, 'later')");
    const first = metric((await get(port, "/metrics")).body, "dbsync_lag_seconds", "s")!;
    await sleep(1200);
    const paused = (await get(port, "/metrics")).body;
    assert.ok(metric(paused, "dbsync_lag_seconds", "s")! > first, "lag grows while paused");
    // Queue events: the 100 keys of one INSERT are one.
    assert.equal(metric(paused, "dbsync_backlog_events", "s"), 2);
    assert.equal(metric(paused, "dbsync_paused", "s"), 1);

    await env.source.query("select dbsync.resume('s')");
    await until("lag back to zero", async () => metric((await get(port, "/metrics")).body, "dbsync_lag_seconds", "s") === 0);
    const body = (await get(port, "/metrics")).body;
    assert.ok(metric(body, "dbsync_rows_applied_total", "s")! >= 101);
    assert.match(body, /dbsync_batch_duration_seconds_bucket\{[^}]*subscription="s"/);

    // A subscription in error (a table missing on the target): not ready, and why.
    await env.source.query("create table missing_on_target (id int primary key)");
    await env.source.query("select dbsync.add_table('missing_on_target', 'g')");
    await env.source.query("insert into missing_on_target values (1)");
    await until("/readyz fails while a table is missing on the target", async () => (await get(port, "/readyz")).status === 503, 30_000);
    assert.match((await get(port, "/readyz")).body, /subscription s: .*missing_on_target/);
    await target.query("create table missing_on_target (id int primary key)");
    await until("/readyz ready once the table exists", async () => (await get(port, "/readyz")).status === 200, 60_000);

    await targetCluster.stop("fast");
    const down = await get(port, "/readyz");
    assert.equal(down.status, 503);
    assert.match(down.body, /target of s/);
    await targetCluster.start();
  } finally {
    await sidecar.stop();
  }
});

test("--metrics-port already in use: a clear error, exit 1, no stack; --metrics-host picks the address", async () => {
  const env = await freshEnv("metrics_port");
  const busy = net.createServer();
  const port = await freePort();
  await new Promise<void>((r) => busy.listen(port, "127.0.0.1", r));
  try {
    const sidecar = startSidecar(env.sourceUrl, ["--metrics-port", String(port)]);
    const code = await orAfter(sidecar.exited, 20000, "still running");
    await sidecar.stop("SIGKILL");
    assert.equal(code, 1, sidecar.output());
    assert.match(sidecar.output(), /--metrics-port \d+: 127\.0\.0\.1:\d+ is already in use/);
    assert.match(sidecar.output(), /hint: .*pick a free port/);
    assert.doesNotMatch(sidecar.output(), /^\s+at /m, "no stack trace");
  } finally {
    busy.close();
  }
  // An address this host does not have.
  const bad = startSidecar(env.sourceUrl, ["--metrics-port", String(port), "--metrics-host", "192.0.2.1"]);
  assert.equal(await orAfter(bad.exited, 20000, "still running"), 1, bad.output());
  await bad.stop("SIGKILL");
  assert.match(bad.output(), /--metrics-host 192\.0\.2\.1: not an address of this host/);
  // The port now free, on the address asked for (loopback by default).
  const ok = startSidecar(env.sourceUrl, ["--metrics-port", String(port), "--metrics-host", "127.0.0.1"]);
  try {
    await until("healthz", async () => (await get(port, "/healthz").catch(() => ({ status: 0 }))).status === 200);
  } finally {
    assert.equal(await ok.stop(), 0, ok.output());
  }
});

test("without --metrics-port the sidecar does not load prom-client (it only adds to the start-up time)", () => {
  const loads = (module: string) => {
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", "-e", `require(${JSON.stringify(module)}); console.log(Object.keys(require.cache).some((k) => k.includes("/prom-client/")))`],
      { cwd: path.join(__dirname, ".."), encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim() === "true";
  };
  assert.equal(loads("./src/sidecar/run"), false, "src/sidecar/run.ts must load ./metrics only for --metrics-port");
  assert.equal(loads("./src/sidecar/metrics"), true, "the check itself sees prom-client when it is loaded");
});
