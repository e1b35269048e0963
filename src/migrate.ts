// `dbsync migrate`: installs or upgrades the dbsync schema on the source.
// Numbered files in migrations/ are applied once each, in order; the functions and
// views in sql/ are code and are re-installed whenever their text changed. All of it
// runs in one transaction under an advisory lock, so two processes migrating at
// once apply everything exactly once, and a failed migration changes nothing.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { Logger, runMigrations } from "graphile-worker";
import { compatSql, PRELUDES, ServerTraits, serverTraits } from "./compat";
import { toConnectionString } from "./config";
import { DbsyncError } from "./errors";

export const WORKER_SCHEMA = "dbsync_worker";
/**
 * graphile-worker's schema needs PostgreSQL 12 (generated columns); an older source
 * gets no dbsync_worker schema, and the sidecar's wake-ups run in-process there
 * (src/sidecar/jobs.ts, LocalJobs). A version switch, like those in src/compat.ts.
 */
export const WORKER_MIN_MAJOR = 12;
const ROOT = path.join(__dirname, "..");
// pg_advisory_xact_lock key: "dbsync" in ASCII, fixed forever.
const MIGRATE_LOCK = 0x646273796e63;

interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function knownMigrations(): Migration[] {
  const dir = path.join(ROOT, "migrations");
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((f) => ({ version: Number(f.slice(0, 4)), name: f, sql: fs.readFileSync(path.join(dir, f), "utf8") }));
}

/**
 * Functions (one per file), views, the DDL event trigger, grants: the code re-installed
 * on upgrade, as the server of `traits` understands it (src/compat.ts). Unchanged, and
 * so with the same checksum, on PostgreSQL 14+.
 */
export function codeBundle(traits?: ServerTraits): { sql: string; sha: string } {
  const parts: string[] = [];
  for (const sub of ["functions", "views"]) {
    const dir = path.join(ROOT, "sql", sub);
    for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".sql")).sort()) {
      parts.push(fs.readFileSync(path.join(dir, f), "utf8"));
    }
  }
  for (const f of ["event_trigger.sql", "grants.sql"]) parts.push(fs.readFileSync(path.join(ROOT, "sql", f), "utf8"));
  const joined = parts.join("\n");
  const sql = traits ? compatSql(joined, traits) : joined;
  return { sql, sha: crypto.createHash("sha256").update(sql).digest("hex") };
}

export interface MigrateResult {
  applied: string[];
  codeInstalled: boolean;
  version: number;
}

export async function migrate(conninfo: string | undefined): Promise<MigrateResult> {
  const connectionString = conninfo ? toConnectionString(conninfo) : undefined;
  const client = new Client(connectionString ? { connectionString } : {});
  await client.connect();
  const applied: string[] = [];
  let codeInstalled = false;
  const known = knownMigrations();
  const latest = known[known.length - 1].version;
  let traits: ServerTraits;
  try {
    await client.query("begin");
    await client.query("select pg_advisory_xact_lock($1)", [MIGRATE_LOCK]);
    await client.query(`create schema if not exists dbsync`);
    await client.query(`create table if not exists dbsync.migrations (
        version int primary key, name text not null, applied_at timestamptz not null default now())`);
    await client.query(`create table if not exists dbsync.installed_code (
        only_row boolean primary key default true check (only_row), sha text not null,
        installed_at timestamptz not null default now())`);
    const { rows } = await client.query<{ version: number }>("select version from dbsync.migrations");
    const done = new Set(rows.map((r) => r.version));
    const newest = Math.max(0, ...done);
    if (newest > latest) {
      throw new DbsyncError(
        `this database was migrated by a newer dbsync (schema version ${newest}; this dbsync knows up to ${latest})`,
        { hint: "Upgrade dbsync on this host to the version that migrated the database." },
      );
    }
    // Migrations and code are written for current PostgreSQL; an older server gets
    // them with its own names for a few things (src/compat.ts), and first the
    // functions it lacks that they call. The files themselves never change.
    traits = await serverTraits(client);
    for (const p of PRELUDES) {
      if (p.applies(traits)) await client.query(fs.readFileSync(path.join(ROOT, "sql", p.file), "utf8"));
    }
    for (const m of known) {
      if (done.has(m.version)) continue;
      await client.query("insert into dbsync.migrations (version, name) values ($1, $2)", [m.version, m.name]);
      await client.query(compatSql(m.sql, traits));
      applied.push(m.name);
    }
    const code = codeBundle(traits);
    const { rows: cur } = await client.query<{ sha: string }>("select sha from dbsync.installed_code");
    if (cur[0]?.sha !== code.sha) {
      await client.query(code.sql);
      await client.query(
        `insert into dbsync.installed_code (sha) values ($1)
         on conflict (only_row) do update set sha = excluded.sha, installed_at = now()`,
        [code.sha],
      );
      codeInstalled = true;
    }
    await client.query("commit");
  } catch (err) {
    await client.query("rollback").catch(() => undefined);
    throw err;
  } finally {
    await client.end();
  }
  if (traits.major >= WORKER_MIN_MAJOR) {
    await runMigrations({ connectionString, schema: WORKER_SCHEMA, logger: quietLogger() });
  }
  await regrantSidecars(connectionString);
  return { applied, codeInstalled, version: latest };
}

/**
 * The sidecar roles (dbsync.grant_sidecar) get their rights again once graphile-worker's
 * schema is there: on a first install it did not exist when sql/grants.sql ran, and
 * its migrations may have added tables or functions since.
 */
async function regrantSidecars(connectionString: string | undefined): Promise<void> {
  const client = new Client(connectionString ? { connectionString } : {});
  await client.connect();
  try {
    await client.query("select dbsync._regrant_sidecars()");
  } finally {
    await client.end();
  }
}


function quietLogger() {
  return new Logger(() => () => undefined);
}
