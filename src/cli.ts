#!/usr/bin/env node
// The `dbsync` command line: thin faces of the SQL API plus the sidecar.
// Exit codes: 0 success; 1 error; 2 bad usage; 3 `wait` timed out; 4 `verify` found differences.
import { Command, InvalidArgumentError, Option } from "commander";
import { Client } from "pg";
import { resolveSourceUrl } from "./config";
import { clientConfig } from "./db/connect";
import { parseDuration } from "./duration";
import { embeddedMissing, isMissingModule } from "./dev-only";
import { hintOf, messageOf } from "./errors";
import { LOG_FORMATS, LOG_LEVELS, createLog } from "./log";
import { migrate } from "./migrate";
import { VERIFY_DEFAULTS } from "./sidecar/background-verify";
import { DEFAULT_METRICS_HOST, Sidecar, startSidecar } from "./sidecar/run";
import { GrantSet, explainDenied } from "./privileges";
import { verifyCommand } from "./verify/cli";
import { uninstall } from "./uninstall";
import { VERSION } from "./version";

const program = new Command();
program
  .name("dbsync")
  .description("Logical replication between PostgreSQL databases, driven from SQL on the source.")
  .version(VERSION, "-V, --version", "print dbsync's version (select dbsync.version() says which installed a database)")
  .showHelpAfterError()
  // commander exits 1 on bad usage; dbsync's exit code for it is 2. Inherited by
  // every command defined below.
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .addHelpText(
    "after",
    `
Examples:
  dbsync migrate --source postgres://admin@db1/app
  dbsync run --source postgres://dbsync@db1/app --metrics-port 9187
  dbsync status --json
  dbsync wait orders_replica --timeout 300 && echo "cut over now"

The source is --source, else $DBSYNC_SOURCE_URL, else $DATABASE_URL, else libpq's
defaults ($PGHOST, $PGUSER, $PGPASSFILE ...). Exit codes: 0 ok, 1 error, 2 usage, 3 timeout, 4 differences.`,
  );

const sourceOption = () => new Option("-s, --source <url>", "source database URL or conninfo");

program
  .command("migrate")
  .description("install or upgrade the dbsync schema on the source")
  .addOption(sourceOption())
  .addHelpText("after", "\nExample:\n  dbsync migrate --source postgres://admin@db1/app")
  .action(async (o) => {
    const r = await migrate(resolveSourceUrl(o.source));
    console.log(
      r.applied.length ? `applied ${r.applied.join(", ")}` : "schema up to date",
      r.codeInstalled ? "(functions installed)" : "",
    );
  });

program
  .command("run")
  .description("run the sidecar: apply every subscription until SIGTERM/SIGINT")
  .addOption(sourceOption())
  .addOption(new Option("-c, --concurrency <n>", "subscriptions applied in parallel").default(4).argParser(positiveInt))
  .addOption(new Option("--poll-interval <ms>", "look for work at least this often").default(1000).argParser(positiveInt))
  .addOption(new Option("--rotate-after <seconds>", "queue rotation period").default(30).argParser(positiveInt))
  .addOption(
    new Option("--copy-chunk-rows <n>", "rows copied per batch: a bigger table is copied in key-range chunks of this many rows, one per batch")
      .env("DBSYNC_COPY_CHUNK_ROWS")
      .default(1_000_000)
      .argParser(positiveInt),
  )
  .addOption(new Option("--metrics-port <port>", "serve /metrics, /healthz, /readyz on this port").env("DBSYNC_METRICS_PORT").argParser(tcpPort))
  .addOption(
    new Option("--metrics-host <address>", "address the metrics port listens on (0.0.0.0: every interface)")
      .env("DBSYNC_METRICS_HOST")
      .default(DEFAULT_METRICS_HOST),
  )
  .addOption(
    new Option("--verify-interval <duration>", "background verification: each subscription compares one range of one table this often (0: off)")
      .default(VERIFY_DEFAULTS.intervalMs, "10m")
      .env("DBSYNC_VERIFY_INTERVAL")
      .argParser(duration),
  )
  .addOption(
    new Option("--verify-chunk-rows <n>", "source rows per background verification")
      .default(VERIFY_DEFAULTS.chunkRows)
      .env("DBSYNC_VERIFY_CHUNK_ROWS")
      .argParser(positiveInt),
  )
  .addOption(new Option("--log-level <level>", "how much to log").choices(LOG_LEVELS).env("DBSYNC_LOG_LEVEL").default("info"))
  .addOption(
    new Option("--log-format <format>", "json: one object a line (default when stdout is not a terminal); pretty: for people")
      .choices(LOG_FORMATS)
      .env("DBSYNC_LOG_FORMAT"),
  )
  .addHelpText(
    "after",
    `
Background verification compares, every --verify-interval, --verify-chunk-rows rows of
one table per subscription with its target at one point of the stream, table after
table and range after range; rows that differ show in dbsync.status, dbsync.table_status
and /metrics (dbsync_verify_differences). Nothing is repaired: that is the DBA's call.

Example:
  DBSYNC_SOURCE_URL=postgres://dbsync@db1/app dbsync run --concurrency 8 --verify-interval 5m`,
  )
  .action(async (o) => {
    const log = createLog(o.logLevel, o.logFormat);
    // A lost connection inside a library's background work (graphile-worker completes
    // jobs in batches) must not end the process: everything it did is retried.
    process.on("unhandledRejection", (err) => log.error({ err: messageOf(err) }, "background operation failed"));
    // A throw from an event handler (a library's or ours) leaves state nobody can
    // vouch for: exit, with one log line in the format the DBA's tools read (Node's
    // default is a bare stack on stderr). Nothing is lost: the next start resumes
    // from each target's position.
    process.on("uncaughtException", (err) => {
      log.fatal({ err: err.stack ?? messageOf(err) }, "dbsync failed on an unexpected error (please report it): exiting; a restart resumes where each target is");
      process.exit(1);
    });
    // Signals are handled from the first moment: a stop during start-up exits 0 too.
    let sidecar: Sidecar | undefined;
    let stopRequested = false;
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, "stopping");
      stopRequested = true;
      // Whatever is still running after 9 s is rolled back by closing its connection.
      setTimeout(() => process.exit(0), 9000).unref();
      if (sidecar) void sidecar.stop();
      else process.exit(0);
    };
    process.once("SIGTERM", () => onSignal("SIGTERM"));
    process.once("SIGINT", () => onSignal("SIGINT"));
    sidecar = await startSidecar({
      sourceUrl: resolveSourceUrl(o.source),
      concurrency: o.concurrency,
      pollIntervalMs: o.pollInterval,
      rotateAfterSeconds: o.rotateAfter,
      copyChunkRows: o.copyChunkRows,
      metricsPort: o.metricsPort,
      verifyIntervalMs: o.verifyInterval,
      verifyChunkRows: o.verifyChunkRows,
      metricsHost: o.metricsHost,
      log,
    });
    if (stopRequested) void sidecar.stop();
    await sidecar.done;
    process.exit(0);
  });

program
  .command("status")
  .description("show dbsync.status (and copies in progress)")
  .addOption(sourceOption())
  .option("--json", "print JSON")
  .addHelpText("after", "\nExamples:\n  dbsync status --source postgres://monitor@db1/app\n  dbsync status --json | jq '.subscriptions[] | {name, lag_seconds}'")
  .action(async (o) => {
    await withSource(o.source, "monitor", async (c) => {
      const { rows } = await c.query("select * from dbsync.status order by name");
      const { rows: tables } = await c.query("select * from dbsync.table_status order by subscription, table_name");
      if (o.json) {
        console.log(JSON.stringify({ subscriptions: rows, tables }, null, 2));
        return;
      }
      if (!rows.length) console.log("no subscriptions");
      for (const r of rows) {
        console.log(
          `${r.name} (group ${r.group_name}): ${r.state}, backlog ${r.backlog_events} events, lag ${Number(r.lag_seconds).toFixed(1)} s, ` +
            `tick ${r.last_applied_tick}, ${r.rows_per_second ? Math.round(r.rows_per_second) + " rows/s" : "-"}` +
            (r.last_error ? `\n  last error (${r.last_error_at?.toISOString?.() ?? r.last_error_at}): ${r.last_error}` : ""),
        );
        for (const t of tables.filter((t) => t.subscription === r.name && t.state !== "streaming")) {
          const differing = Number(t.verify_differences) > 0 ? `, ${t.verify_differences} rows differ on the target` : "";
          console.log(`  ${t.table_name}: ${t.state}${t.state === "copying" ? " " + progressBar(t.rows_copied, t.rows_estimated) : ""}${differing}`);
        }
      }
    });
  });

program
  .command("wait")
  .description("wait until everything committed on the source so far is applied (dbsync.wait_for_sync)")
  .argument("<subscription>")
  .addOption(sourceOption())
  .addOption(new Option("-t, --timeout <seconds>", "give up after").default(60).argParser(positiveNumber))
  .addHelpText(
    "after",
    "\nExit code 3 when not in sync after --timeout. A monitoring role may run it: select dbsync.grant_monitor('role').\n\nExample:\n  dbsync wait orders_replica --source postgres://monitor@db1/app --timeout 300",
  )
  .action(async (subscription, o) => {
    await withSource(o.source, "monitor", async (c) => {
      // At its timeout wait_for_sync says why in a NOTICE (paused, failing, copying ...).
      let why = "";
      c.on("notice", (n) => {
        const m = /not in sync after \S+ s: (.*)$/s.exec(n.message ?? "");
        if (m) why = m[1];
      });
      const { rows } = await c.query("select dbsync.wait_for_sync($1, make_interval(secs => $2)) as ok", [
        subscription,
        o.timeout,
      ]);
      if (!rows[0].ok) {
        console.error(`not in sync after ${o.timeout} s${why ? `: ${why}` : ""}`);
        process.exitCode = 3;
      } else console.log("in sync");
    });
  });

program
  .command("schema")
  .description("print the SQL that creates the replicated tables on an empty target, without dbsync's triggers (dbsync.schema_ddl)")
  .addOption(sourceOption())
  .option("-g, --group <name>", "only the tables of this group")
  .addHelpText(
    "after",
    `
Prints schemas, enum types and domains, sequences, tables (columns, keys, checks,
partitions), foreign keys between them and indexes; nothing of dbsync (pg_dump -s
carries the capture triggers and event triggers, which fail on a target).

Examples:
  dbsync schema --source postgres://admin@db1/app | psql postgres://admin@replica/app
  dbsync schema --group shop > shop-tables.sql`,
  )
  .action(async (o) => {
    await withSource(o.source, "admin", async (c) => {
      const { rows } = await c.query<{ s: string }>("select dbsync.schema_ddl($1) as s", [o.group ?? null]);
      // A line break in the database's name would end the comment (see _comment_line).
      const { rows: [head] } = await c.query<{ s: string }>(
        "select dbsync._comment_line(format('dbsync schema: the replicated tables of database %s%s', current_database(), ', group ' || $1)) as s",
        [o.group ?? null],
      );
      console.log(head.s);
      for (const r of rows) console.log(r.s.startsWith("--") ? r.s : `${r.s};`);
    });
  });

program
  .command("demo")
  .description("see dbsync work: two throwaway PostgreSQL servers, a shop, a write load, live status (needs the dev dependencies)")
  .option("--keep", "leave the servers and the sidecar running until Ctrl-C")
  .option("--seconds <n>", "how long the write load runs", positiveInt, 20)
  .addHelpText(
    "after",
    "\nDBSYNC_PG_MAJOR=10..18 picks the PostgreSQL major. Exit code 0 when the target equals the source.\n\nExamples:\n  npm run demo\n  dbsync demo --keep",
  )
  .action(async (o) => {
    // Not in the published package (scripts/bundle.js leaves it out of the bundle).
    const { runDemo } = await import("./demo").catch((err) => {
      throw isMissingModule(err, "./demo") ? new Error(embeddedMissing("demo")) : err;
    });
    process.exit(await runDemo({ keep: !!o.keep, seconds: o.seconds }));
  });

program
  .command("uninstall")
  .description("remove dbsync from the source: capture triggers, the dbsync schema, the job queue")
  .addOption(sourceOption())
  .option("-y, --yes", "do not ask (required when stdin is not a terminal)")
  .addHelpText(
    "after",
    `
Application tables and data stay; targets keep their data (drop their dbsync schema,
which holds dbsync.applied and dbsync.copied, by hand). Stop every \`dbsync run\` first.
SQL equivalent, on the source: select dbsync.uninstall();

Examples:
  dbsync uninstall --source postgres://admin@db1/app
  dbsync uninstall --source postgres://admin@db1/app --yes`,
  )
  .action(async (o) => {
    process.exitCode = await uninstall({ sourceUrl: resolveSourceUrl(o.source), yes: !!o.yes });
  });

program
  .command("verify")
  .description(
    "compare a table (or every table) of a subscription on the source with its target at one point of the stream (dbsync.verify_table, dbsync.verify_subscription)",
  )
  .argument("<subscription>")
  .argument("[table]", "only this table (default: every table of the subscription)")
  .addOption(sourceOption())
  .option("--repair", "fix the rows that differ on the target")
  .option("--json", "print the result as JSON")
  .addOption(new Option("-t, --timeout <seconds>", "stop waiting after (the verification goes on)").argParser(positiveNumber))
  .addHelpText(
    "after",
    `
Without a table, every table of the subscription is verified (each at its own point
of the stream) and the outcome is printed table by table.
Exit codes: 0 no differences (or all repaired), 4 differences remain in some table,
1 a verification failed or a table could not be verified yet, 3 --timeout reached.

Examples:
  dbsync verify dr
  dbsync verify dr public.orders --repair`,
  )
  .action(async (subscription, table, o) => {
    process.exitCode = await verifyCommand(resolveSourceUrl(o.source), subscription, table, {
      repair: !!o.repair,
      json: !!o.json,
      timeoutSeconds: o.timeout,
    });
  });

function progressBar(done: number, total: number | null): string {
  if (!total) return `${done} rows`;
  const frac = Math.min(1, Number(done) / Number(total));
  const width = 30;
  const full = Math.round(frac * width);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${(frac * 100).toFixed(0)}% ${done}/${total} rows`;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got "${v}"`);
  return n;
}

function duration(v: string): number {
  try {
    return parseDuration(v);
  } catch (err) {
    throw new InvalidArgumentError(messageOf(err));
  }
}

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a number of seconds > 0, got "${v}"`);
  return n;
}

function tcpPort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new InvalidArgumentError(`expected a TCP port (1-65535), got "${v}"`);
  return n;
}

/** Runs a command on the source; a permission error names the grants `needs` (src/privileges.ts). */
async function withSource(url: string | undefined, needs: GrantSet, fn: (c: Client) => Promise<void>) {
  const c = new Client(clientConfig(resolveSourceUrl(url), { applicationName: "dbsync cli", pinned: true }));
  await c.connect();
  try {
    await fn(c).catch(async (err) => {
      throw await explainDenied(c, err, needs);
    });
  } finally {
    await c.end();
  }
}

program.parseAsync(process.argv).catch((err) => {
  const hint = hintOf(err);
  // dbsync's SQL errors already start with "dbsync: ". On a terminal the hint gets a line of its own.
  console.error(`dbsync: ${messageOf(err).replace(/^dbsync: /, "")}${hint ? `\nhint: ${hint}` : ""}`);
  process.exit(1);
});
