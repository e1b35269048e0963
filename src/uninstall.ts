// `dbsync uninstall`: removes dbsync from a source database, in one transaction:
// every capture trigger and capture function (dbsync.remove_table for each table
// still captured), the DDL event trigger, graphile-worker's schema with its queued
// jobs, and last the dbsync schema. The SQL face of the same steps is `select dbsync.uninstall()`
// (sql/functions/uninstall.sql); this one does not depend on the installed code's
// version, and also cleans up a half-removed install. Application tables and data,
// and the targets, are left alone.
import readline from "node:readline/promises";
import { Client } from "pg";
import { redact } from "./config";
import { clientConfig } from "./db/connect";
import { DbsyncError, sqlstateOf } from "./errors";
import { WORKER_SCHEMA } from "./migrate";
import { inventory } from "./source/protocol";

/** Installed by migrate (sql/event_trigger.sql) when the migrating role is a superuser. */
const DDL_TRIGGERS = ["dbsync_ddl_watch", "dbsync_drop_watch", "dbsync_rewrite_watch"];

export interface UninstallOptions {
  sourceUrl: string | undefined;
  /** Do not ask. Without it, stdin must be a terminal. */
  yes: boolean;
  /** How long each DROP may wait for a lock (a running sidecar holds some). */
  lockTimeoutSeconds?: number;
}

/** Exit codes: 0 removed (or nothing to remove), 1 error or declined, 2 no confirmation possible. */
export async function uninstall(opts: UninstallOptions): Promise<number> {
  // (pg_catalog first: uninstall runs as a superuser, and a database owner can set
  // the database's search_path; see migrate.)
  const c = new Client(clientConfig(opts.sourceUrl, { applicationName: "dbsync cli", pinned: true, catalogPath: true }));
  c.on("error", () => undefined);
  await c.connect();
  try {
    const found = await inventory(c, WORKER_SCHEMA, DDL_TRIGGERS[0]);
    const where = `database "${found.db}"`;
    if (!found.has_dbsync && !found.has_worker && !found.has_ddl_trigger) {
      console.log(`nothing to uninstall: ${where} has no dbsync schema`);
      return 0;
    }
    const { tables, subs } = found;
    const { rows: [act] } = await c.query(
      `select pg_catalog.count(*)::int as n from pg_catalog.pg_stat_activity
        where datname = pg_catalog.current_database() and pid <> pg_catalog.pg_backend_pid()
          and application_name like 'dbsync%' and application_name <> 'dbsync cli'`,
    );

    console.log(`dbsync uninstall on ${where}:`);
    console.log(`  stop capturing ${tables.length} table(s)${tables.length ? ": " + list(tables.map((t) => t.name)) : ""}`);
    console.log(`  drop ${subs.length} subscription(s)${subs.length ? ": " + list(subs.map((s) => s.name)) : ""}`);
    if (found.has_ddl_trigger) console.log(`  drop the DDL event triggers ${DDL_TRIGGERS.slice(0, -1).join(", ")} and ${DDL_TRIGGERS.at(-1)}`);
    console.log(`  drop schema ${[found.has_worker && WORKER_SCHEMA, found.has_dbsync && "dbsync"].filter(Boolean).join(" and ")} (queues, jobs, positions)`);
    console.log(`  the application's tables and data, and every target, stay as they are`);
    if (act.n > 0) {
      console.log(`  warning: ${act.n} dbsync session(s) are connected (a running \`dbsync run\`?); stop them first`);
    }

    if (!opts.yes) {
      if (!process.stdin.isTTY) {
        console.error("dbsync: refusing to uninstall without confirmation: stdin is not a terminal; pass --yes");
        return 2;
      }
      const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
      const answer = await rl.question(`Type "yes" to remove dbsync from ${where}: `);
      rl.close();
      if (answer.trim().toLowerCase() !== "yes") {
        console.log("aborted: nothing was changed");
        return 1;
      }
    }

    await c.query("begin");
    try {
      await c.query(`set local lock_timeout = '${Math.max(1, Math.round(opts.lockTimeoutSeconds ?? 10))}s'`);
      if (found.has_remove) {
        for (const t of tables) await c.query("select dbsync.remove_table($1::oid::regclass)", [t.relid]);
      }
      // Whatever remove_table could not reach goes with the schema: a capture
      // trigger depends on its function, which lives in dbsync.
      for (const t of DDL_TRIGGERS) await c.query(`drop event trigger if exists ${t}`);
      await c.query(`drop schema if exists ${WORKER_SCHEMA} cascade`);
      await c.query("drop schema if exists dbsync cascade");
      await c.query("commit");
    } catch (err) {
      await c.query("rollback").catch(() => undefined);
      if (sqlstateOf(err) === "55P03") {
        throw new DbsyncError("uninstall: timed out waiting for a lock; nothing was changed", {
          hint: "Stop every `dbsync run` process that uses this database, then try again.",
        });
      }
      throw err;
    }

    console.log(`removed dbsync from ${where}: ${tables.length} table(s) no longer captured, schemas dropped`);
    if (subs.length) {
      console.log("Targets keep their data. On each of them, dbsync's bookkeeping (dbsync.applied, dbsync.copied)");
      console.log("can be removed by hand with: drop schema dbsync cascade;");
      for (const s of subs) console.log(`  ${s.name}: ${redact(s.target_conninfo)}`);
    }
    return 0;
  } finally {
    await c.end().catch(() => undefined);
  }
}

function list(names: string[], max = 8): string {
  return names.length <= max ? names.join(", ") : `${names.slice(0, max).join(", ")} and ${names.length - max} more`;
}
