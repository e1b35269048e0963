// `npm run build`'s second step: bundles the compiled CLI (dist/cli.js and the
// modules it requires) into one file, dist/dbsync.js, which bin/dbsync.js runs.
// Node then reads, wraps and compiles one file instead of about 150, which is most
// of what `dbsync run` spends before its first batch (README, Performance).
// graphile-worker, pg-listen and prom-client stay outside: the sidecar loads them
// only when it needs them (the job runner and LISTEN after the first batch, metrics
// with --metrics-port), and graphile-worker and pg-listen's pg-format find files of
// their own at run time. pg-native is pg's optional native driver, unused.
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
  external: ["graphile-worker", "pg-listen", "prom-client", "pg-native"],
  logLevel: "warning",
});
