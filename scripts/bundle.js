// `npm run build`'s second step: bundles the compiled CLI (dist/cli.js and the
// modules it requires) into one file, dist/dbsync.js, which bin/dbsync.js runs.
// Node then reads, wraps and compiles one file instead of about 250, which is most
// of what `dbsync run` spends before its first batch (README, Performance).
// graphile-worker and pg-listen are in it too: a module of the bundle runs only when
// first required, and those two are required only by `dbsync run`, after its first
// batches (the job runner and LISTEN), so other commands do not pay for them. Kept
// outside, each loaded a second pg of its own from node_modules, about a hundred
// files that Node 20 compiled at every start: 0.15-0.2 CPU-s of each sidecar's start
// (bench/HISTORY.md, "Start-up CPU"). prom-client stays outside (loaded only with
// --metrics-port); pg-native is pg's optional native driver, unused; typescript is
// what graphile-worker's config loader (cosmiconfig) would load for a TypeScript
// config file, a dev dependency that dbsync never lets it find (src/graphile-worker.ts).
// The demo stays outside too: it is development code (src/demo*.ts, src/embedded/,
// with the embedded PostgreSQL servers of the dev dependencies). `dbsync demo` loads
// dist/demo.js, which tsc writes in a checkout and the published package leaves out
// (package.json "files"); without it the command says what to install.
// Usage: node scripts/bundle.js [dist folder, default ./dist]
const fs = require("node:fs");
const path = require("node:path");
const esbuild = require("esbuild");

const dist = path.resolve(process.argv[2] ?? path.join(__dirname, "..", "dist"));

/**
 * Source edits of dependencies, each a text that must be found exactly once (a new
 * version that changed it fails the build, to be looked at again).
 * - pg-format finds its word list at `__dirname + '/reserved.js'`, which in the
 *   bundle would be dist/: the same file, named so that esbuild bundles it.
 * - pg asks at load whether it runs in Cloudflare Workers: without a global
 *   `navigator` (Node 20; 21 and later have one, and answer from it) by building a
 *   fetch Response, which loads Node's undici: 0.05-0.08 CPU-s of every command's
 *   start on Node 20, for an answer that is always no under Node.
 */
const EDITS = [
  { file: /[\\/]pg-format[\\/]lib[\\/]index\.js$/, from: "require(__dirname + '/reserved.js')", to: "require('./reserved.js')" },
  { file: /[\\/]pg[\\/]lib[\\/]stream\.js$/, from: "if (typeof Response === 'function') {", to: "if (false) {" },
];

// build, not buildSync: plugins need it.
esbuild.build({
  entryPoints: [path.join(dist, "cli.js")],
  outfile: path.join(dist, "dbsync.js"),
  bundle: true,
  platform: "node",
  target: "node20",
  external: ["prom-client", "pg-native", "typescript"],
  plugins: [
    {
      name: "demo-outside",
      setup(build) {
        build.onResolve({ filter: /^\.\/demo$/ }, (args) =>
          path.basename(args.importer) === "cli.js" ? { path: "./demo.js", external: true } : undefined,
        );
      },
    },
    {
      name: "dependency-edits",
      setup(build) {
        for (const edit of EDITS) {
          build.onLoad({ filter: edit.file }, async (args) => {
            const text = await fs.promises.readFile(args.path, "utf8");
            const parts = text.split(edit.from);
            if (parts.length !== 2) throw new Error(`scripts/bundle.js: ${args.path} no longer has ${JSON.stringify(edit.from)} once: look at this edit again`);
            return { contents: parts.join(edit.to), loader: "js" };
          });
        }
      },
    },
  ],
  logLevel: "warning",
}).catch(() => {
  process.exitCode = 1; // esbuild has printed why
});
