// bin/dbsync.js on Node 20 keeps V8's compiled code of the bundle in the user's
// cache folder, one file per command. Two installations on one host (a second
// version during an upgrade, another checkout) must each keep their own: with one
// file per command, each start of one threw the other's away, and one whose bundle
// was the same text ran code compiled from the other's file (its stack traces
// named the other installation's path).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

const ROOT = path.join(__dirname, "..");
const NODE_COMPILE_CACHE = Number(process.versions.node.split(".")[0]) >= 22;

/** A copy of the installed command (bin, the bundle, package.json) in `dir`. */
function install(dir: string) {
  for (const f of ["bin/dbsync.js", "dist/dbsync.js", "package.json"]) {
    fs.mkdirSync(path.join(dir, path.dirname(f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
  }
}

test("two installations of the same bundle keep a code cache each, and an older-named cache is removed", { skip: NODE_COMPILE_CACHE && "Node 22+ keeps its own compile cache (module.enableCompileCache)" }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-code-cache-"));
  try {
    const cache = path.join(tmp, "cache");
    fs.mkdirSync(path.join(cache, "dbsync"), { recursive: true, mode: 0o700 });
    fs.chmodSync(cache, 0o700);
    // As the cache was named before it was kept per installation.
    const old = path.join(cache, "dbsync", `v8-other-${"0".repeat(32)}.bin`);
    fs.writeFileSync(old, "");
    const files = () => fs.readdirSync(path.join(cache, "dbsync")).sort();
    const run = (dir: string) =>
      execFileSync(process.execPath, [path.join(dir, "bin/dbsync.js"), "--version"], { env: { ...process.env, XDG_CACHE_HOME: cache } }).toString();
    install(path.join(tmp, "a"));
    install(path.join(tmp, "b"));
    run(path.join(tmp, "a"));
    const afterA = files();
    assert.equal(afterA.length, 1, `after a: ${afterA}`);
    run(path.join(tmp, "b"));
    const afterB = files();
    assert.equal(afterB.length, 2, `a's cache kept, b's added: ${afterB}`);
    assert.ok(!fs.existsSync(old), "the older-named cache was removed");
    // A start with its cache rewrites nothing.
    const stamp = afterB.map((f) => fs.statSync(path.join(cache, "dbsync", f)).mtimeMs);
    run(path.join(tmp, "a"));
    assert.deepEqual(files(), afterB);
    assert.deepEqual(afterB.map((f) => fs.statSync(path.join(cache, "dbsync", f)).mtimeMs), stamp);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
