// Databases on the throwaway clusters: a fresh one per test file (or per benchmark
// figure, soak, torture run), and the migrated template that `npm test` clones them
// from: CREATE DATABASE ... TEMPLATE copies the files of a migrated database in a
// fraction of the time `dbsync migrate` takes to install the schema again.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { serverMajor } from "../../src/compat";
import { migrate } from "../../src/migrate";

/** The template test/run.ts migrates once on the source cluster (DBSYNC_TEST_TEMPLATE). */
export const TEMPLATE = "dbsync_template";

export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = "/" + encodeURIComponent(db);
  return u.toString();
}

export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>, applicationName = "dbsync kit"): Promise<T> {
  const c = new Client({ connectionString: url, application_name: applicationName });
  c.on("error", () => undefined); // a server stopped under it: the next query says so
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** A database name from a label, unique on the cluster (labels repeat across files and runs). */
export function databaseName(label: string): string {
  return `${label.toLowerCase().replace(/[^a-z0-9]+/g, "_").slice(0, 40)}_${crypto.randomBytes(3).toString("hex")}`;
}

/**
 * A new database on a cluster (empty, or a copy of `template`); returns its URL.
 * Copied file by file (STRATEGY FILE_COPY, the only way before PostgreSQL 15), not
 * block by block through shared buffers and the WAL (WAL_LOG, the default from 15):
 * half the servers' CPU for a create and its drop (0.027 CPU-s instead of 0.057 for
 * the 9 MB template), and no thousand dirty buffers per database evicting the pages
 * of the files running beside. Its two checkpoints cost little with fsync off.
 * Listed in DBSYNC_TEST_DATABASES_DIR (a file per process) when `npm test` sets it:
 * test/kit/run-files.mjs drops a test file's databases once its process has ended.
 */
export async function createDatabase(clusterAdminUrl: string, label: string, opts: { template?: string; name?: string } = {}): Promise<string> {
  const name = opts.name ?? databaseName(label);
  const template = opts.template ? ` template "${opts.template}"` : "";
  await withClient(clusterAdminUrl, async (c) => {
    const strategy = (await serverMajor(c)) >= 15 ? " strategy file_copy" : "";
    await c.query(`create database "${name}"${template}${strategy}`);
  });
  const listed = process.env.DBSYNC_TEST_DATABASES_DIR;
  if (listed) fs.appendFileSync(path.join(listed, String(process.pid)), JSON.stringify([clusterAdminUrl, name]) + "\n");
  return withDatabase(clusterAdminUrl, name);
}

/**
 * The template: a database with dbsync migrated, closed to connections so that no
 * test can change it or hold it open (a connected template cannot be copied).
 */
export async function createTemplate(clusterAdminUrl: string): Promise<void> {
  const url = await createDatabase(clusterAdminUrl, TEMPLATE, { name: TEMPLATE });
  await migrate(url);
  await withClient(clusterAdminUrl, (c) => c.query(`alter database "${TEMPLATE}" with allow_connections false`));
}
