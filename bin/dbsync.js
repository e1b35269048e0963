#!/usr/bin/env node
// Entry point of the installed command: the CLI bundled into one file (npm install
// and npm run build make dist/dbsync.js; see scripts/bundle.js). From Node 22 on,
// V8's compiled code is also kept on disk between runs (module.enableCompileCache).
const { enableCompileCache } = require("node:module");
if (enableCompileCache) enableCompileCache();
require("../dist/dbsync.js");
