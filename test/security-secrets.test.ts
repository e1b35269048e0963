// Passwords: the target's password works from the conninfo, from PGPASSFILE and
// from PGPASSWORD, and never shows up in the sidecar's logs (debug level), in
// dbsync.status / table_status errors, in `dbsync status`, or on the metrics and
// health endpoints, whether the target works, rejects the password, lacks a
// table, or the conninfo does not even parse.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { before, test } from "node:test";
import { Client } from "pg";
import { Cluster } from "../src/embedded/cluster";
import { migrate } from "../src/migrate";
import { Env, freshEnv, orAfter, rows, sqlError, startSidecar, tableText, until, value } from "./helpers";
import { runDbsync } from "./kit/dbsync";
import { admin, freePort, privateCluster, setHba, socketDir } from "./security-cluster";

const ROOT = path.join(__dirname, "..");
const USER = "secret_user";
const SECRET = "SECRETxyz";
const DDL = "create table items (id int primary key, name text)";

let target: Cluster;

/** A database on the private target owned by USER, with (or without) the table. */
async function targetDb(name: string, withTable = true) {
  await admin(target, "postgres", `create database ${name} owner ${USER}`);
  if (withTable) await admin(target, name, `${DDL}; alter table items owner to ${USER}`);
}

function url(db: string, password?: string) {
  const auth = password === undefined ? USER : `${USER}:${password}`;
  return `postgres://${auth}@127.0.0.1:${target.port}/${db}`;
}

before(async () => {
  target = await privateCluster();
  await admin(target, "postgres", `create role ${USER} login password '${SECRET}'`);
  // Apply sets session_replication_role: superuser, or (PostgreSQL 15+) a grant.
  if (target.major >= 15) await admin(target, "postgres", `grant set on parameter session_replication_role to ${USER}`);
  else await admin(target, "postgres", `alter role ${USER} superuser`);
  await setHba(target, [`host all postgres 127.0.0.1/32 trust`, `host all all 127.0.0.1/32 scram-sha-256`]);
});

async function sourceWithItems(label: string): Promise<Env> {
  const env = await freshEnv(label);
  await env.source.query(DDL);
  await env.source.query("insert into items select g, 'n' || g from generate_series(1, 10) g");
  await env.source.query("select dbsync.add_table('items', 'g')");
  return env;
}

function metricsPortSupported(): boolean {
  return fs.readFileSync(path.join(ROOT, "src", "cli.ts"), "utf8").includes("--metrics-port");
}

async function cliStatus(sourceUrl: string): Promise<string> {
  const r = await runDbsync(["status", "--json", "--source", sourceUrl]);
  return r.stdout + r.stderr;
}

/** GET an endpoint on a fresh connection (a kept-alive one may be closed by the server meanwhile). */
function scrape(port: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: `/${what}`, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve(`${res.statusCode} ${body}`));
      res.on("error", reject);
    });
    req.on("error", (err) => reject(new Error(`GET /${what}: ${err.message}`)));
    req.setTimeout(10_000, () => req.destroy(new Error("timed out")));
  });
}

function assertNoSecret(where: string, text: string) {
  const m = /SECRET\w*/.exec(text);
  assert.equal(m, null, `a password (${m?.[0]}) appears in ${where}:\n${text.slice(Math.max(0, (m?.index ?? 0) - 300), (m?.index ?? 0) + 300)}`);
}

test("passwords never appear in logs, errors, dbsync.status, table_status, `dbsync status` or metrics", async () => {
  await targetDb("sec_ok");
  await targetDb("sec_missing", false);
  const env = await sourceWithItems("security_secrets");
  await env.source.query("select dbsync.add_subscription('ok', 'g', $1)", [url("sec_ok", SECRET)]);
  await env.source.query("select dbsync.add_subscription('badpw', 'g', $1)", [url("sec_ok", "SECRETwrong1")]);
  await env.source.query("select dbsync.add_subscription('missing', 'g', $1)", [url("sec_missing", SECRET)]);
  // Not a valid URL: the password holds a '/'. add_subscription refuses it without
  // showing it; one stored before add_subscription checked conninfos reaches the sidecar.
  const badUrl = `postgres://${USER}:SECRET/slash3@127.0.0.1:${target.port}/sec_ok`;
  const refused = await sqlError(env.source, "select dbsync.add_subscription('badurl', 'g', $1)", [badUrl]);
  assert.match(refused.message, /invalid target_conninfo/);
  assertNoSecret("add_subscription's error", `${refused.message} ${refused.hint} ${refused.detail}`);
  await env.source.query("select dbsync.add_subscription('badurl', 'g', $1)", [url("sec_ok", SECRET)]);
  await env.source.query("update dbsync.subscriptions set target_conninfo = $1 where name = 'badurl'", [badUrl]);

  const metricsPort = metricsPortSupported() ? await freePort() : undefined;
  if (!metricsPort) console.log("# dbsync run has no --metrics-port: metrics not checked");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200", ...(metricsPort ? ["--metrics-port", String(metricsPort)] : [])], {
    DBSYNC_LOG_LEVEL: "trace",
  });
  const surfaces: [string, () => Promise<string>][] = [
    ["dbsync.status", async () => JSON.stringify(await rows(env.source, "select * from dbsync.status"))],
    ["dbsync.table_status", async () => JSON.stringify(await rows(env.source, "select * from dbsync.table_status"))],
    ...(metricsPort
      ? ([
          ["/metrics", () => scrape(metricsPort, "metrics")],
          ["/readyz", () => scrape(metricsPort, "readyz")],
          ["/healthz", () => scrape(metricsPort, "healthz")],
        ] as [string, () => Promise<string>][])
      : []),
  ];
  const checkAll = async (when: string) => {
    for (const [where, read] of surfaces) {
      let text: string;
      try {
        text = await read();
      } catch (err) {
        throw new Error(`${where} (${when}): ${(err as Error).message}\n--- sidecar output (tail) ---\n${sidecar.output().slice(-3000)}`);
      }
      assertNoSecret(`${where} (${when})`, text);
    }
  };
  try {
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('ok', '30 s')"), true, sidecar.output());
    await env.source.query("insert into items values (11, 'eleven')");
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('ok', '30 s')"), true, sidecar.output());
    const t = await targetClient("sec_ok");
    assert.deepEqual(await tableText(t, "items"), await tableText(env.source, "items"));
    await t.end();

    // Every failing subscription has recorded its error.
    await until("errors recorded", async () => {
      const st = await rows<{ name: string; last_error: string | null }>(env.source, "select name, last_error from dbsync.status");
      const ts = await rows<{ subscription: string; last_error: string | null }>(
        env.source,
        "select subscription, last_error from dbsync.table_status",
      );
      const failed = new Set([...st, ...ts.map((t) => ({ name: t.subscription, last_error: t.last_error }))].filter((r) => r.last_error).map((r) => r.name));
      return ["badpw", "missing", "badurl"].every((n) => failed.has(n));
    });
    const errors = await rows<{ name: string; e: string }>(
      env.source,
      `select name, last_error as e from dbsync.status where last_error is not null
       union all select subscription, last_error from dbsync.table_status where last_error is not null`,
    );
    console.log(`# errors recorded:\n# ${errors.map((e) => `${e.name}: ${e.e}`).join("\n# ")}`);
    assert.match(errors.filter((e) => e.name === "badpw").map((e) => e.e).join(" "), /password authentication failed/);
    assert.match(errors.filter((e) => e.name === "missing").map((e) => e.e).join(" "), /items.*does not exist/);
    await checkAll("with failing targets");
    const cli = await cliStatus(env.sourceUrl);
    assert.match(cli, /password authentication failed/, cli);
    assertNoSecret("`dbsync status --json`", cli);

    // The password of the working target changes: its sessions drop, reconnects fail.
    await admin(target, "postgres", `alter role ${USER} password 'SECRETrotated4'`);
    try {
      await admin(target, "postgres", `select pg_terminate_backend(pid) from pg_stat_activity where usename = '${USER}'`);
      await env.source.query("insert into items values (12, 'twelve')");
      await until("the rotated password is noticed", async () =>
        ((await value<string | null>(env.source, "select last_error from dbsync.status where name = 'ok'")) ?? "").includes("password"),
      );
      await checkAll("after a password change");
    } finally {
      // And back: it resumes by itself.
      await admin(target, "postgres", `alter role ${USER} password '${SECRET}'`);
    }
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('ok', '60 s')"), true, sidecar.output());
    await checkAll("after recovery");
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
  const out = sidecar.output();
  assert.match(out, /"level":(10|20)/, "the sidecar logged nothing at debug/trace level");
  assertNoSecret("the sidecar's log", out);
});

test("source and target passwords can come from PGPASSFILE or PGPASSWORD instead of the URLs", async () => {
  // Here the source is on the password-protected cluster too, as a role of its own
  // (superuser: it runs migrate and gets the DDL event trigger).
  const SRC_USER = "dbsync_src";
  await admin(target, "postgres", `create role ${SRC_USER} login superuser password '${SECRET}'`);
  await admin(target, "postgres", `create database sec_src owner ${SRC_USER}`);
  const srcAuthUrl = `postgres://${SRC_USER}:${SECRET}@127.0.0.1:${target.port}/sec_src`;
  const sourceUrl = `postgres://${SRC_USER}@127.0.0.1:${target.port}/sec_src`; // no password
  await migrate(srcAuthUrl);
  await targetDb("sec_pass");
  const source = new Client({ connectionString: srcAuthUrl });
  await source.connect();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-pgpass-"));
  const passfile = path.join(dir, "pgpass");
  fs.writeFileSync(
    passfile,
    `127.0.0.1:${target.port}:sec_pass:${USER}:${SECRET}\n127.0.0.1:${target.port}:sec_src:${SRC_USER}:${SECRET}\n`,
    { mode: 0o600 },
  );
  try {
    await source.query(DDL);
    await source.query("insert into items select g, 'n' || g from generate_series(1, 10) g");
    await source.query("select dbsync.add_table('items', 'g')");
    await source.query("select dbsync.add_subscription('pp', 'g', $1)", [url("sec_pass")]);

    // Without a password anywhere the sidecar cannot even reach the source: it says so and exits.
    const none = startSidecar(sourceUrl, ["--poll-interval", "200"], { PGPASSFILE: path.join(dir, "none") });
    const code = await orAfter(new Promise((r) => none.proc.once("exit", r)), 15_000, "running");
    await none.stop("SIGKILL");
    console.log(`# without a password: exit ${code}: ${none.output().trim().split("\n").at(-1)}`);
    assert.notEqual(code, 0, none.output());
    assertNoSecret("the sidecar's output (no password)", none.output());

    const withFile = startSidecar(sourceUrl, ["--poll-interval", "200"], { PGPASSFILE: passfile, DBSYNC_LOG_LEVEL: "debug" });
    try {
      assert.equal(await value(source, "select dbsync.wait_for_sync('pp', '30 s')"), true, withFile.output());
    } finally {
      assert.equal(await withFile.stop(), 0, withFile.output());
    }
    assertNoSecret("the sidecar's log (PGPASSFILE)", withFile.output());

    await source.query("insert into items values (100, 'via PGPASSWORD')");
    const withEnv = startSidecar(sourceUrl, ["--poll-interval", "200"], {
      PGPASSFILE: path.join(dir, "none"),
      PGPASSWORD: SECRET,
      DBSYNC_LOG_LEVEL: "debug",
    });
    try {
      assert.equal(await value(source, "select dbsync.wait_for_sync('pp', '30 s')"), true, withEnv.output());
    } finally {
      assert.equal(await withEnv.stop(), 0, withEnv.output());
    }
    assertNoSecret("the sidecar's log (PGPASSWORD)", withEnv.output());
    const t = await targetClient("sec_pass");
    assert.deepEqual(await tableText(t, "items"), await tableText(source, "items"));
    await t.end();
  } finally {
    await source.end();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a libpq keyword/value target conninfo with a password works, and the password is never shown", async () => {
  await targetDb("sec_kv");
  const env = await sourceWithItems("security_kv");
  const conninfo = `host=127.0.0.1 port=${target.port} dbname=sec_kv user=${USER} password=${SECRET} application_name='dbsync kv'`;
  await env.source.query("select dbsync.add_subscription('kv', 'g', $1)", [conninfo]);
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200"], { DBSYNC_LOG_LEVEL: "debug" });
  try {
    const ok = await value(env.source, "select dbsync.wait_for_sync('kv', '60 s')");
    const errs = await rows(env.source, "select last_error from dbsync.table_status union all select last_error from dbsync.status");
    assertNoSecret("dbsync.status / table_status", JSON.stringify(errs));
    assert.equal(ok, true, `not in sync: ${JSON.stringify(errs)}`);
  } finally {
    await sidecar.stop();
  }
  assertNoSecret("the sidecar's log", sidecar.output());
});

/** A superuser session on a database of the private target, over its Unix socket. */
async function targetClient(db: string) {
  const c = new Client({ host: socketDir(target), port: target.port, user: "postgres", database: db });
  await c.connect();
  return c;
}
