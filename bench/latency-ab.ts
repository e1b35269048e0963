// Commit-to-visible latency of two builds of the sidecar, side by side:
// `npm run bench:latency-ab -- <checkout A> <checkout B> [--rounds N] [--rate R] [--seconds S]`.
//
// The latency figure of `npm run bench` (bench/README.md, c.) at one rate, its dbsync
// side only, the builds taking turns on the same clusters (initdb's durability): A
// then B, then B then A, so a drift of the machine's load favours neither. Each
// measurement prints p50 / p99, the load average at its start and end, where a
// change's time went (latency-breakdown.ts) and CPU ms per batch; medians per build
// at the end. On the shared machine only such pairs, measured in one run, compare.
//
// Both checkouts must be built (npm run build) and read the same dbsync schema:
// the source is installed by this checkout's migrations.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startClusters, stopClusters } from "./clusters";
import { Ctx, dbsyncLatency, FULL, LatencySide } from "./figures";
import { breakdownText } from "./latency-breakdown";
import { median } from "./measure";

function option(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(args[i + 1]);
  if (!(v > 0)) throw new Error(`--${name} takes a positive number`);
  args.splice(i, 2);
  return v;
}

interface Measured {
  build: string;
  loads: [number, number];
  side: LatencySide;
}

async function main() {
  const args = process.argv.slice(2);
  const rounds = option(args, "rounds", 3);
  const rate = option(args, "rate", 1000);
  const seconds = option(args, "seconds", FULL.latencySeconds);
  const builds = args.map((d) => path.resolve(d));
  if (builds.length !== 2) throw new Error("usage: npm run bench:latency-ab -- <checkout A> <checkout B> [--rounds N] [--rate R] [--seconds S]");
  for (const d of builds) if (!fs.existsSync(path.join(d, "dist"))) throw new Error(`${d}: not built (npm run build there)`);
  const env = await startClusters("default");
  const all: Measured[] = [];
  try {
    for (let run = 1; run <= rounds; run++) {
      for (const build of run % 2 ? builds : [...builds].reverse()) {
        const ctx: Ctx = {
          env, run, sizes: { ...FULL, latencySeconds: seconds },
          step: (text) => process.stderr.write(`[round ${run}] ${path.basename(build)}: ${text}\n`),
          note: (text) => console.log(`  note: ${text}`),
        };
        const load0 = os.loadavg()[0];
        const side = await dbsyncLatency(ctx, rate, path.join(build, "bin", "dbsync.js"));
        const m: Measured = { build, loads: [load0, os.loadavg()[0]], side };
        all.push(m);
        print(m);
      }
    }
  } finally {
    await stopClusters(env);
  }
  console.log(`\nmedians of ${rounds} rounds at ${rate} tx/s (${os.cpus().length} cores):`);
  for (const build of builds) {
    const mine = all.filter((m) => m.build === build).map((m) => m.side);
    const m = (f: (s: LatencySide) => number | null | undefined) => median(mine.map(f))?.toFixed(1);
    console.log(
      `${build}: p50 ${m((s) => s.p50Ms)} ms, p99 ${m((s) => s.p99Ms)} ms, achieved ${m((s) => s.achievedTps)} tx/s, ` +
        `CPU ms a batch sidecar ${m((s) => s.cpuPerBatch?.sidecarMs)} / source ${m((s) => s.cpuPerBatch?.sourceMs)} / target ${m((s) => s.cpuPerBatch?.targetMs)}, ` +
        `batches ${m((s) => s.batches?.batches)} of median ${m((s) => s.batches?.medianBatchEvents)} events`,
    );
  }
}

function print({ build, loads, side }: Measured) {
  const c = side.cpuPerBatch;
  console.log(
    `${build} (load ${loads[0].toFixed(1)} -> ${loads[1].toFixed(1)}): p50 ${side.p50Ms?.toFixed(1)} ms, p99 ${side.p99Ms?.toFixed(1)} ms, ` +
      `achieved ${side.achievedTps.toFixed(0)} tx/s, ${side.batches?.batches} batches of median ${side.batches?.medianBatchEvents} events` +
      (c ? `; CPU ms a batch: sidecar ${c.sidecarMs.toFixed(2)}, source ${c.sourceMs.toFixed(2)}, target ${c.targetMs.toFixed(2)}` : ""),
  );
  if (side.breakdown) console.log(`  mean: ${breakdownText(side.breakdown.mean)}\n  slowest 1%: ${breakdownText(side.breakdown.slowest)}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
