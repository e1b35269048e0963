// A connection that breaks without a word from the server (reset, closed, timed
// out) has no SQLSTATE of its own. dbsync calls it connection_failure (08006): that
// is what dbsync.status shows for it, and what makes it a retried outage rather
// than an error of unknown kind. Each case is a real broken link, through a proxy.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Client } from "pg";
import { isSqlstate, sqlstateOf } from "../src/errors";
import { FaultProxy, startFaultProxy } from "./harness/fault-proxy";
import { freshEnv, until } from "./helpers";

const proxies: FaultProxy[] = [];
after(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

async function brokenQuery(url: string, proxy: FaultProxy, how: "rst" | "fin"): Promise<unknown> {
  const c = new Client({ connectionString: proxy.url(url) });
  c.on("error", () => undefined);
  await c.connect();
  const q = c.query("select pg_catalog.pg_sleep(10)").then(() => undefined, (err: unknown) => err);
  await until("the query reached the server", async () => proxy.connections().length > 0 && proxy.connections()[0].bytesUp > 0, 5000);
  proxy.drop(how);
  const err = await q;
  await c.end().catch(() => undefined);
  return err;
}

test("a link reset, closed or timed out without a SQLSTATE is connection_failure (08006)", async () => {
  const env = await freshEnv("link_errors", { migrate: false });
  const proxy = await startFaultProxy({ port: Number(new URL(env.targetUrl).port) });
  proxies.push(proxy);

  const reset = await brokenQuery(env.targetUrl, proxy, "rst");
  assert.ok(reset instanceof Error, "the query failed");
  assert.equal(sqlstateOf(reset), "08006", `reset: ${String(reset)} (code ${(reset as { code?: string }).code})`);

  const closed = await brokenQuery(env.targetUrl, proxy, "fin");
  assert.ok(closed instanceof Error, "the query failed");
  assert.equal(sqlstateOf(closed), "08006", `closed: ${String(closed)}`);

  proxy.blackhole();
  const c = new Client({ connectionString: proxy.url(env.targetUrl), connectionTimeoutMillis: 500 });
  c.on("error", () => undefined);
  const timedOut = await c.connect().then(() => undefined, (err: unknown) => err);
  proxy.pass();
  assert.ok(timedOut instanceof Error, "the connect failed");
  assert.equal(sqlstateOf(timedOut), "08006", `timed out: ${String(timedOut)}`);

  // What the server says keeps its own SQLSTATE, and a bug is not a broken link.
  const direct = new Client({ connectionString: env.targetUrl });
  await direct.connect();
  const serverErr = await direct.query("select 1/0").then(() => undefined, (err: unknown) => err);
  await direct.end();
  assert.equal(sqlstateOf(serverErr), "22012");
  assert.equal(sqlstateOf(new TypeError("x is undefined")), undefined);
});

test("an errno of five capitals (EPIPE: a write to a link the server closed, as a source restart does) is a broken link, not a SQLSTATE", () => {
  // Node's own shape for it (a real one depends on the kernel's timing: a reset
  // usually comes first and gives ECONNRESET, tested above).
  const epipe = Object.assign(new Error("write EPIPE"), { errno: -32, code: "EPIPE", syscall: "write" });
  assert.equal(sqlstateOf(epipe), "08006");
  // An errno that is no link is no SQLSTATE either.
  assert.equal(sqlstateOf(Object.assign(new Error("EPERM"), { code: "EPERM" })), undefined);
  // The same test where a connect failure or a liveness check asks "did the server answer?".
  assert.deepEqual(["EPIPE", "57P01", "XX000", "HV00B", "42501", "ECONNRESET"].map(isSqlstate), [false, true, true, true, true, false]);
});
