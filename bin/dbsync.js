#!/usr/bin/env node
// Entry point of the installed command: the compiled CLI (npm install builds dist/).
require("../dist/cli.js");
