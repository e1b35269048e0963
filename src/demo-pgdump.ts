// The target's schema for `demo:upgrade`, as a DBA makes it: pg_dump --schema-only
// of the source, restored on the target without anything of dbsync. Excluding
// dbsync's schemas at dump time (`--exclude-schema 'dbsync*'`) is not enough: the
// capture triggers live on the application's tables and the DDL event triggers in
// no schema, and both would fail on the target (their functions are in the
// excluded schema). pg_dump has no option to leave triggers out, so the dump is in
// custom format and its table of contents is filtered before pg_restore, as
// `grep -v` would do it (the README shows that pipeline).
//
// The embedded PostgreSQL packages ship no pg_dump. So this uses the pg_dump on
// PATH (DBSYNC_PG_DUMP names another; pg_restore is taken from the same folder).
// pg_dump reads servers from 9.2 up to its own major, and its output loads into
// later majors: it must be at least the source's major; the target's is best.
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * A pg_restore --list line of one of dbsync's triggers: `1234; 2620 16500 TRIGGER
 * public orders dbsync_capture_ins postgres` (every name sql/ gives a capture trigger)
 * or `1235; 3466 16600 EVENT TRIGGER - dbsync_ddl_watch postgres` (and
 * dbsync_drop_watch, dbsync_rewrite_watch). Exact names, so that an application's own trigger stays;
 * the README's two recipes repeat this pattern, and test/pgdump-recipe checks all three against sql/. A
 * name with a space in it does not match: its trigger stays in the list and
 * pg_restore stops on it, loudly. Written so that `grep -E` reads it the same.
 */
export const DBSYNC_TRIGGER_TOC =
  /^[0-9]+; [0-9]+ [0-9]+ (EVENT TRIGGER - dbsync_(ddl|drop|rewrite)_watch|TRIGGER [^ ]+ [^ ]+ dbsync_capture_(ins|upd|del|key|trunc|row|part_trunc|replica|replica_mark|replica_unmark)) /;

export interface PgDump {
  dump: string;
  restore: string;
  major: number;
}

/** pg_dump and pg_restore to use, and pg_dump's major; an error saying what to install when missing. */
export async function findPgDump(): Promise<PgDump> {
  const dump = process.env.DBSYNC_PG_DUMP || "pg_dump";
  const restore = dump.includes("/") ? path.join(path.dirname(dump), "pg_restore") : "pg_restore";
  let version: string;
  try {
    version = (await run(dump, ["--version"])).stdout;
    await run(restore, ["--version"]);
  } catch (err) {
    throw new Error(
      `demo:upgrade makes the target's schema with pg_dump and pg_restore, and ${dump} or ${restore} cannot run ` +
        `(${(err as Error).message.split("\n")[0]}). The embedded PostgreSQL packages ship neither: install the ` +
        "PostgreSQL client programs (Debian: apt-get install postgresql-client), or set DBSYNC_PG_DUMP to a pg_dump.",
    );
  }
  const m = /\(PostgreSQL\) (\d+)/.exec(version);
  if (!m) throw new Error(`${dump} --version printed "${version.trim()}", not pg_dump's version line`);
  return { dump, restore, major: Number(m[1]) };
}

export interface SchemaCopy {
  /** What was run, as a DBA would type it. */
  commands: string[];
  /** The TOC entries left out: dbsync's triggers. */
  removed: string[];
}

/** Creates on `targetUrl` the schema of `sourceUrl`, without dbsync's schemas and triggers. */
export async function copySchema(pg: PgDump, sourceUrl: string, targetUrl: string): Promise<SchemaCopy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-demo-dump-"));
  try {
    const file = path.join(dir, "app.dump");
    const toc = path.join(dir, "app.toc");
    const dumpArgs = ["--schema-only", "--format=custom", "--exclude-schema=dbsync*", `--file=${file}`, `--dbname=${sourceUrl}`];
    await run(pg.dump, dumpArgs);
    const list = (await run(pg.restore, ["--list", file], { maxBuffer: 64 << 20 })).stdout.split("\n");
    const removed = list.filter((l) => DBSYNC_TRIGGER_TOC.test(l));
    fs.writeFileSync(toc, list.filter((l) => !DBSYNC_TRIGGER_TOC.test(l)).join("\n"));
    const restoreArgs = ["--single-transaction", "--exit-on-error", `--use-list=${toc}`, `--dbname=${targetUrl}`, file];
    await run(pg.restore, restoreArgs);
    const shown = (args: string[]) => args.map((a) => (a.includes("*") ? `'${a}'` : a)).join(" ").replaceAll(dir + "/", "");
    return {
      commands: [
        `${path.basename(pg.dump)} ${shown(dumpArgs)}`,
        `${path.basename(pg.restore)} --list app.dump | grep -v -E '${DBSYNC_TRIGGER_TOC.source}' > app.toc`,
        `${path.basename(pg.restore)} ${shown(restoreArgs)}`,
      ],
      removed,
    };
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`making the target's schema failed: ${(e.stderr || e.message).trim()}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
