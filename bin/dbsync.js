#!/usr/bin/env node
// Entry point of the installed command: the CLI bundled into one file,
// dist/dbsync.js (npm install and npm run build make it: scripts/bundle.js).
// V8's compiled code for it is kept between runs in the user's cache folder
// ($XDG_CACHE_HOME or ~/.cache, then dbsync/, private to the user: a cache that
// another user could write would be code run as this one). Node 22+ does it itself
// (module.enableCompileCache); on Node 20 this file does it with vm.Script. Either
// way it is what `dbsync run` saves most before its first batch after the bundle.
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const Module = require("node:module");

const bundle = path.join(__dirname, "..", "dist", "dbsync.js");
const cacheDir = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "dbsync");

if (!privateDir(cacheDir)) require(bundle);
else if (Module.enableCompileCache) {
  Module.enableCompileCache(cacheDir);
  require(bundle);
} else runWithCodeCache();

/** Node 20: compiles the bundle with V8's cached data, when there is some for this exact text and Node. */
function runWithCodeCache() {
  const crypto = require("node:crypto");
  const vm = require("node:vm");
  const source = fs.readFileSync(bundle, "utf8").replace(/^#!.*/, "");
  const key = crypto.createHash("sha256").update(`${process.version} ${process.arch}\n`).update(source).digest("hex").slice(0, 32);
  // One per command: what `dbsync run` compiles is not what `dbsync status` does.
  const command = /^[a-z]+$/.test(process.argv[2] ?? "") ? process.argv[2] : "other";
  // And one per installation: two of them (another checkout, a second version during
  // an upgrade) each threw the other's away at every start, and code compiled from
  // another one's file named that file in its stack traces.
  const place = crypto.createHash("sha256").update(bundle).digest("hex").slice(0, 12);
  const mine = `v8-${command}-${place}-`;
  const cacheFile = path.join(cacheDir, `${mine}${key}.bin`);
  let cachedData;
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    // none yet
  }
  const script = new vm.Script(Module.wrap(source), { filename: bundle, cachedData });
  if (!cachedData || script.cachedDataRejected) {
    // At exit: by then the start-up's functions are compiled, and go into the cache too.
    process.once("exit", () => {
      try {
        const tmp = `${cacheFile}.${process.pid}`;
        fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
        fs.renameSync(tmp, cacheFile);
        // Those of this installation's older bundle or Node are of no use any more,
        // nor those named before caches were kept per installation (v8-<command>-<key>.bin).
        const unplaced = new RegExp(`^v8-${command}-[0-9a-f]{32}\\.bin$`);
        for (const f of fs.readdirSync(cacheDir)) {
          if ((f.startsWith(mine) || unplaced.test(f)) && f !== path.basename(cacheFile)) fs.rmSync(path.join(cacheDir, f), { force: true });
        }
      } catch {
        // no cache this time
      }
    });
  }
  const m = new Module(bundle, module);
  m.filename = bundle;
  script.runInThisContext().call(m.exports, m.exports, Module.createRequire(bundle), m, bundle, path.dirname(bundle));
}

/** The cache folder, created private to this user; false when it cannot be, or another user owns it. */
function privateDir(dir) {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.statSync(dir);
    return (process.getuid === undefined || st.uid === process.getuid()) && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}
