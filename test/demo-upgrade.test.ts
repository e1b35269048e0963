// `npm run demo:upgrade` at a small size, as the README's walkthrough: PostgreSQL 10
// (the oldest major dbsync supports, and it runs here) to 17 under write load, the
// target's schema from pg_dump without dbsync's triggers, copy, stream, cutover.
// The demo starts its own two servers (not the suite's), so it tests the same
// pair whatever DBSYNC_PG_MAJOR says.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { DBSYNC_TRIGGER_TOC } from "../src/demo-pgdump";

const ROOT = path.join(__dirname, "..");

function demoUpgrade(args: string[], signal: AbortSignal): Promise<{ code: number | null; out: string }> {
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src", "demo-upgrade.ts"), ...args], {
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    // At the test's timeout: SIGTERM, and the demo stops its servers.
    signal,
    killSignal: "SIGTERM",
  });
  proc.on("error", () => undefined); // the abort, reported by the test's timeout
  let out = "";
  proc.stdout!.on("data", (b) => (out += b));
  proc.stderr!.on("data", (b) => (out += b));
  return new Promise((resolve) => proc.once("close", (code) => resolve({ code, out })));
}

// 69 s on the development machine at load average 15-20; the timeout is for a machine shared with other runs.
test("demo:upgrade: PostgreSQL 10 to 17 under load, seconds of downtime, every row and sequence on the target", { timeout: 300_000 }, async (t) => {
  const r = await demoUpgrade(["--mb", "2", "--stream-seconds", "2"], t.signal);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /source: PostgreSQL 10 on port \d+; target: PostgreSQL 17/, r.out);
  // The dump carried dbsync's triggers (capture on every table and partition, the
  // DDL event triggers); the restore left them out and the demo checked the target.
  const removed = Number(/without dbsync's schemas and its (\d+) triggers/.exec(r.out)?.[1]);
  assert.ok(removed >= 6 + 2, `dbsync triggers left out of the restore: ${removed}\n${r.out}`);
  assert.equal(r.out.match(/identical on the target/g)?.length, 6, r.out);
  assert.match(r.out, /sequences on the target at least at the source's: yes/, r.out);
  // 5 s is the figure's target; a loaded test machine gets twice that.
  const down = Number(/writes were stopped for ([\d.]+) s/.exec(r.out)?.[1]);
  assert.ok(down < 10, `writes stopped for ${down} s\n${r.out}`);
  assert.match(r.out, /first order on the target got invoice number [\d,]+/, r.out);
  assert.match(r.out, /GREEN/, r.out);
});

test("the pg_restore list filter takes out dbsync's triggers and nothing else", () => {
  const gone = [
    "2880; 2620 16420 TRIGGER public orders dbsync_capture_ins postgres",
    "2881; 2620 16421 TRIGGER public page_views_2026_07 dbsync_capture_row postgres",
    "2882; 2620 16422 TRIGGER app order_items dbsync_capture_part_trunc postgres",
    "2885; 2620 16425 TRIGGER public audit_log dbsync_capture_key postgres",
    "2886; 2620 16426 TRIGGER public audit_log dbsync_capture_replica postgres",
    "2887; 2620 16427 TRIGGER public audit_log dbsync_capture_replica_mark postgres",
    "2888; 2620 16428 TRIGGER public audit_log dbsync_capture_replica_unmark postgres",
    "3001; 3466 16600 EVENT TRIGGER - dbsync_ddl_watch postgres",
    "3002; 3466 16601 EVENT TRIGGER - dbsync_drop_watch postgres",
    "3004; 3466 16603 EVENT TRIGGER - dbsync_rewrite_watch postgres",
  ];
  const kept = [
    "2883; 2620 16423 TRIGGER public orders dbsync_capture_audit postgres", // the application's own
    "2884; 2620 16424 TRIGGER public dbsync_capture_ins set_updated_at postgres", // a table named so
    "3003; 3466 16602 EVENT TRIGGER - dbsync_ddl_watch_mine postgres",
    "215; 1259 16390 TABLE public orders postgres",
    "216; 1259 16391 SEQUENCE public invoice_number postgres",
  ];
  for (const l of gone) assert.match(l, DBSYNC_TRIGGER_TOC);
  for (const l of kept) assert.doesNotMatch(l, DBSYNC_TRIGGER_TOC);
});
