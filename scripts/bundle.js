// `npm run build`'s second step: bundles the compiled CLI (dist/cli.js and the
// modules it requires) into one file, dist/dbsync.js, which bin/dbsync.js runs.
// Node then reads, wraps and compiles one file instead of about 150, which is most
// of what `dbsync run` spends before its first batch (README, Performance).
// graphile-worker is bundled too (its modules are initialised only when the job
// runner starts, and then come compiled from bin/dbsync.js's code cache), without
// cosmiconfig: see no-cosmiconfig.js. pg-listen and prom-client stay outside: the
// sidecar loads them only when it needs them (LISTEN after the first batch, metrics
// with --metrics-port), and pg-listen's pg-format finds a file of its own at run time.
// pg-native is pg's optional native driver, unused.
// Usage: node scripts/bundle.js [dist folder, default ./dist]
const path = require("node:path");
const esbuild = require("esbuild");

const dist = path.resolve(process.argv[2] ?? path.join(__dirname, "..", "dist"));
esbuild.buildSync({
  entryPoints: [path.join(dist, "cli.js")],
  outfile: path.join(dist, "dbsync.js"),
  bundle: true,
  platform: "node",
  target: "node20",
  external: ["pg-listen", "prom-client", "pg-native"],
  alias: { cosmiconfig: path.join(__dirname, "no-cosmiconfig.js") },
  logLevel: "warning",
});
