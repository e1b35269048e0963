// Private PostgreSQL clusters for the security tests: password authentication
// (scram-sha-256) and TLS, which the shared test clusters (trust) do not have.
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { after } from "node:test";
import { Client } from "pg";
import { Cluster, ClusterOptions, startCluster, stopAll } from "../src/embedded/cluster";

after(async () => {
  await stopAll();
});

/** The uid/gid the cluster's server runs as (see serverUser() in src/embedded/cluster.ts). */
export function serverOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(spawnSync("id", [flag, "nobody"]).stdout.toString().trim());
  return { uid: id("-u"), gid: id("-g") };
}

/** Make a file readable by the server (and, for keys, by it alone). */
export function giveToServer(file: string, mode: number) {
  const owner = serverOwner();
  if (owner) fs.chownSync(file, owner.uid, owner.gid);
  fs.chmodSync(file, mode);
}

export async function privateCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  // Passwords stored as the scram-sha-256 that pg_hba.conf asks for: the default from
  // PostgreSQL 14, md5 before (a role's md5 password cannot answer scram).
  return startCluster({ ...opts, settings: { password_encryption: "scram-sha-256", ...opts.settings } });
}

/** The cluster's Unix socket folder: the harness's way in, whatever pg_hba says about TCP. */
export function socketDir(cluster: Cluster): string {
  return path.join(path.dirname(cluster.dataDir), "sock");
}

/** Run SQL as the bootstrap superuser over the Unix socket (always trusted). */
export async function admin(cluster: Cluster, database: string, sql: string, params: unknown[] = []) {
  const c = new Client({ host: socketDir(cluster), port: cluster.port, user: "postgres", database });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** Replace pg_hba.conf (TCP lines; the Unix socket stays trusted) and reload. */
export async function setHba(cluster: Cluster, lines: string[]) {
  const file = path.join(cluster.dataDir, "pg_hba.conf");
  fs.writeFileSync(file, ["local all all trust", ...lines, ""].join("\n"));
  await admin(cluster, "postgres", "select pg_reload_conf()");
  const bad = await admin(cluster, "postgres", "select line_number, error from pg_hba_file_rules where error is not null");
  if (bad.length) throw new Error(`pg_hba.conf has errors: ${JSON.stringify(bad)}`);
  // The postmaster re-reads pg_hba.conf on SIGHUP, asynchronously.
  await new Promise((r) => setTimeout(r, 300));
}

export { freePort } from "../src/embedded/cluster";
