// The pg_dump recipe's list of dbsync's triggers (README twice, src/demo-pgdump.ts) must
// name every trigger dbsync creates, and nothing else: a missing name makes pg_restore
// stop on a capture trigger whose function is not on the target (schema-pg-dump and
// demo-upgrade catch that, but only in a whole run with pg_dump on the path), and a
// wider pattern would drop an application's own trigger. Checked here from the files
// alone, so a new capture trigger fails at once, naming the place to edit.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { DBSYNC_TRIGGER_TOC } from "../src/demo-pgdump";

const ROOT = path.join(__dirname, "..");

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(path.join(dir, e.name)) : e.name.endsWith(".sql") ? [path.join(dir, e.name)] : [],
  );
}

/** Every trigger name dbsync's SQL creates: capture triggers by `create trigger`, event triggers from sql/event_trigger.sql's list. */
function dbsyncTriggers(): { capture: string[]; event: string[] } {
  const sql = [...filesUnder(path.join(ROOT, "sql")), ...filesUnder(path.join(ROOT, "migrations"))].map((f) => fs.readFileSync(f, "utf8")).join("\n");
  const capture = [...new Set([...sql.matchAll(/create trigger (dbsync_[a-z_]+)/gi)].map((m) => m[1]))].sort();
  const events = fs.readFileSync(path.join(ROOT, "sql", "event_trigger.sql"), "utf8");
  const event = [...new Set([...events.matchAll(/\('(dbsync_[a-z_]+_watch)'/g)].map((m) => m[1]))].sort();
  return { capture, event };
}

const line = (kind: string, name: string) =>
  kind === "event" ? `1235; 3466 16600 EVENT TRIGGER - ${name} postgres` : `1234; 2620 16500 TRIGGER public orders ${name} postgres`;

test("the pg_dump recipe's trigger list names every trigger dbsync creates, and no other", () => {
  const { capture, event } = dbsyncTriggers();
  assert.ok(capture.length >= 8 && event.length === 3, `found capture ${capture.join(",")} and event ${event.join(",")}: the scan is broken`);
  for (const name of capture) assert.match(line("capture", name), DBSYNC_TRIGGER_TOC, `src/demo-pgdump.ts DBSYNC_TRIGGER_TOC misses ${name}`);
  for (const name of event) assert.match(line("event", name), DBSYNC_TRIGGER_TOC, `src/demo-pgdump.ts DBSYNC_TRIGGER_TOC misses ${name}`);
  // An application's triggers stay, even with names close to dbsync's.
  for (const name of ["dbsync_capture_audit", "dbsync_capture_ins2", "orders_audit", "dbsync_capture"]) {
    assert.doesNotMatch(line("capture", name), DBSYNC_TRIGGER_TOC, `${name} is not dbsync's`);
  }
  assert.doesNotMatch(line("event", "dbsync_other_watch"), DBSYNC_TRIGGER_TOC);
});

test("the README's two pg_dump recipes filter with the same pattern as src/demo-pgdump.ts", () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const patterns = [...readme.matchAll(/grep -v -E '([^']*dbsync_capture_[^']*)'/g)].map((m) => m[1]);
  assert.equal(patterns.length, 2, "README: expected the pg_dump recipe in Operations and in the upgrade walkthrough");
  for (const p of patterns) assert.equal(p, DBSYNC_TRIGGER_TOC.source, "README's grep pattern differs from DBSYNC_TRIGGER_TOC: copy it from src/demo-pgdump.ts");
});
