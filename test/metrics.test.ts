// /metrics, /healthz and /readyz of `dbsync run --metrics-port`.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { freePort, startCluster, stopAll, targetMajorFromEnv } from "../src/embedded/cluster";
import { createDatabase, freshEnv, pool, sleep, startSidecar, until } from "./helpers";

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
    assert.equal(metric(paused, "dbsync_backlog_events", "s"), 101);
    assert.equal(metric(paused, "dbsync_paused", "s"), 1);

    await env.source.query("select dbsync.resume('s')");
    await until("lag back to zero", async () => metric((await get(port, "/metrics")).body, "dbsync_lag_seconds", "s") === 0);
    const body = (await get(port, "/metrics")).body;
    assert.ok(metric(body, "dbsync_rows_applied_total", "s")! >= 101);
    assert.match(body, /dbsync_batch_duration_seconds_bucket\{[^}]*subscription="s"/);

    await targetCluster.stop("fast");
    const down = await get(port, "/readyz");
    assert.equal(down.status, 503);
    assert.match(down.body, /target of s/);
    await targetCluster.start();
  } finally {
    await sidecar.stop();
  }
});
