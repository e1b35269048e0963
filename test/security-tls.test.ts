// TLS with sslmode=verify-full to the source and to the target: a private cluster
// that accepts TCP connections over TLS only (pg_hba hostssl), with a server
// certificate for localhost signed by a CA the test makes with openssl. The sidecar
// (and migrate) reach both databases through verify-full URLs; a wrong CA and a
// host name the certificate does not name are refused, with the reason in
// dbsync.status / table_status.
//
// dbsync reads sslmode, sslrootcert, sslcert and sslkey as libpq does
// (src/conninfo.ts): sslrootcert's file becomes the only trusted CA; verify-full
// checks the chain and the host name, verify-ca the chain, require neither (unless a
// root certificate file is there: then as verify-ca), prefer and allow fall back.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { Client } from "pg";
import { connSettings } from "../src/conninfo";
import { closeQuietly, connect } from "../src/db/connect";
import { Cluster } from "../src/embedded/cluster";
import { migrate } from "../src/migrate";
import { rows, startSidecar, tableText, until, value } from "./helpers";
import { admin, giveToServer, privateCluster, setHba } from "./security-cluster";

const OPENSSL = spawnSync("openssl", ["version"], { encoding: "utf8" }).status === 0;
const skip = OPENSSL ? false : "openssl is not installed: no certificates can be made (node cannot issue X.509 certificates)";

let dir: string;
let cluster: Cluster;
let ca: string;
let otherCa: string;

function openssl(...args: string[]) {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr}`);
}

function makeCa(name: string) {
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2",
    "-subj", `/CN=dbsync test ${name}`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  return path.join(dir, `${name}.crt`);
}

/** URL of a database of the private cluster over TLS, verify-full, trusting `rootcert`. */
function tlsUrl(db: string, rootcert: string, host = "localhost") {
  return `postgres://postgres@${host}:${cluster.port}/${db}?sslmode=verify-full&sslrootcert=${encodeURIComponent(rootcert)}`;
}

before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-tls-"));
  ca = makeCa("ca");
  otherCa = makeCa("other-ca");
  // The server's certificate names localhost only (not 127.0.0.1): connecting by
  // IP address must then fail verify-full's host name check.
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
  fs.writeFileSync(path.join(dir, "server.ext"),
    "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n");
  openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt",
    "-days", "2", "-extfile", "server.ext");

  cluster = await privateCluster();
  // The key must belong to the server's user (nobody when we are root) with mode 0600.
  for (const f of ["server.crt", "server.key"]) {
    const to = path.join(cluster.dataDir, f);
    fs.copyFileSync(path.join(dir, f), to);
    giveToServer(to, 0o600);
  }
  await admin(cluster, "postgres", "alter system set ssl = on");
  await admin(cluster, "postgres", "alter system set ssl_cert_file = 'server.crt'");
  await admin(cluster, "postgres", "alter system set ssl_key_file = 'server.key'");
  // TCP only over TLS; the harness keeps its Unix socket.
  await setHba(cluster, ["hostssl all all 127.0.0.1/32 trust", "hostssl all all ::1/128 trust"]);
  assert.equal((await admin(cluster, "postgres", "show ssl"))[0].ssl, "on");
});

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("TLS is enforced by the test cluster: plain TCP is refused, verify-full gets in", { skip }, async () => {
  const plain = new Client({ host: "127.0.0.1", port: cluster.port, user: "postgres", database: "postgres" });
  await assert.rejects(plain.connect(), /no pg_hba.conf entry|SSL off|no encryption/);
  const tls = new Client({ connectionString: tlsUrl("postgres", ca) });
  await tls.connect();
  try {
    assert.equal((await tls.query("select ssl from pg_stat_ssl where pid = pg_backend_pid()")).rows[0].ssl, true);
  } finally {
    await tls.end();
  }
});

test("replication with sslmode=verify-full to the source and the target", { skip }, async () => {
  await admin(cluster, "postgres", "create database tls_src");
  await admin(cluster, "postgres", "create database tls_tgt");
  const sourceUrl = tlsUrl("tls_src", ca);
  const targetUrl = tlsUrl("tls_tgt", ca);
  await migrate(sourceUrl);
  const ddl = "create table items (id int primary key, name text)";
  await admin(cluster, "tls_src", ddl);
  await admin(cluster, "tls_tgt", ddl);
  const source = new Client({ connectionString: sourceUrl });
  await source.connect();
  const target = new Client({ connectionString: targetUrl });
  await target.connect();
  try {
    await source.query("insert into items select g, 'n' || g from generate_series(1, 100) g");
    await source.query("select dbsync.add_table('items', 'g')");
    await source.query("select dbsync.add_subscription('tls', 'g', $1)", [targetUrl]);
    await source.query("select dbsync.add_subscription('wrong_ca', 'g', $1)", [tlsUrl("tls_tgt", otherCa)]);
    await source.query("select dbsync.add_subscription('wrong_name', 'g', $1)", [tlsUrl("tls_tgt", ca, "127.0.0.1")]);

    const sidecar = startSidecar(sourceUrl, ["--poll-interval", "200"]);
    try {
      assert.equal(await value(source, "select dbsync.wait_for_sync('tls', '30 s')"), true, sidecar.output());
      await source.query("insert into items values (101, 'streamed'); update items set name = 'u' where id < 10; delete from items where id = 50");
      assert.equal(await value(source, "select dbsync.wait_for_sync('tls', '30 s')"), true, sidecar.output());
      assert.deepEqual(await tableText(target, "items"), await tableText(source, "items"));

      // Every session of the sidecar, on both databases, is encrypted.
      const sessions = await admin(
        cluster,
        "postgres",
        `select a.datname, a.application_name, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)
          where a.application_name like 'dbsync%' or a.datname in ('tls_src', 'tls_tgt') and a.client_addr is not null`,
      );
      assert.ok(sessions.some((s) => s.datname === "tls_tgt" && /^dbsync/.test(s.application_name)), JSON.stringify(sessions));
      assert.ok(sessions.some((s) => s.datname === "tls_src" && /^dbsync/.test(s.application_name)), JSON.stringify(sessions));
      assert.deepEqual(sessions.filter((s) => !s.ssl), [], "unencrypted sessions");

      // A target whose certificate is not signed by the CA given, or does not name the host: refused, and said so.
      const failed = async () => {
        const r = await rows<{ name: string; e: string | null }>(
          source,
          `select name, last_error as e from dbsync.status where name <> 'tls'
           union all select subscription, last_error from dbsync.table_status where subscription <> 'tls'`,
        );
        return r;
      };
      await until("certificate errors recorded", async () => {
        const r = await failed();
        return ["wrong_ca", "wrong_name"].every((n) => r.some((x) => x.name === n && x.e));
      });
      const errs = await failed();
      console.log(`# ${errs.filter((e) => e.e).map((e) => `${e.name}: ${e.e}`).join("\n# ")}`);
      assert.match(errs.filter((e) => e.name === "wrong_ca").map((e) => e.e).join(" "), /certificate/i);
      assert.match(errs.filter((e) => e.name === "wrong_name").map((e) => e.e).join(" "), /altnames|host ?name|does not match/i);
      assert.equal(await value(target, "select count(*)::int from dbsync.applied where subscription in ('wrong_ca', 'wrong_name')"), 0);
    } finally {
      assert.equal(await sidecar.stop(), 0, sidecar.output());
    }
  } finally {
    await source.end();
    await target.end();
  }
});

test("a libpq keyword/value conninfo with sslmode=verify-full sslrootcert=... host=localhost works as target", { skip }, async () => {
  await admin(cluster, "postgres", "create database kv_src");
  await admin(cluster, "postgres", "create database kv_tgt");
  const sourceUrl = tlsUrl("kv_src", ca);
  await migrate(sourceUrl);
  const ddl = "create table items (id int primary key, name text)";
  await admin(cluster, "kv_src", ddl + "; insert into items values (1, 'one')");
  await admin(cluster, "kv_tgt", ddl);
  const conninfo = `host=localhost port=${cluster.port} dbname=kv_tgt user=postgres sslmode=verify-full sslrootcert=${ca}`;
  const source = new Client({ connectionString: sourceUrl });
  await source.connect();
  try {
    await source.query("select dbsync.add_table('items', 'g')");
    await source.query("select dbsync.add_subscription('kv', 'g', $1)", [conninfo]);
    const sidecar = startSidecar(sourceUrl, ["--poll-interval", "200"]);
    try {
      const ok = await value(source, "select dbsync.wait_for_sync('kv', '15 s')");
      const st = await rows(source, "select state, last_error from dbsync.table_status union all select state, last_error from dbsync.status");
      assert.equal(ok, true, `not in sync: ${JSON.stringify(st)}\n${sidecar.output().slice(-2000)}`);
    } finally {
      await sidecar.stop();
    }
  } finally {
    await source.end();
  }
});

/** Connects as the sidecar does (src/db/connect.ts) and says whether the session is encrypted. */
async function sslOf(conninfo: string): Promise<boolean> {
  const c = await connect(conninfo, { applicationName: "dbsync tls test" });
  try {
    return (await c.query("select ssl from pg_stat_ssl where pid = pg_backend_pid()")).rows[0].ssl;
  } finally {
    await closeQuietly(c);
  }
}

test("sslmode has libpq's meaning: require encrypts without verifying, verify-ca checks the chain, verify-full the name too, prefer and allow fall back", { skip }, async () => {
  const kv = (host: string, extra: string) => `host=${host} port=${cluster.port} dbname=postgres user=postgres ${extra}`;
  // The certificate is signed by a CA nobody passed: libpq's require still connects.
  assert.equal(await sslOf(kv("127.0.0.1", "sslmode=require")), true);
  assert.equal(await sslOf(`postgresql://postgres@127.0.0.1:${cluster.port}/postgres?sslmode=require`), true);
  // verify-ca: the chain, not the name (the certificate names localhost only).
  assert.equal(await sslOf(kv("127.0.0.1", `sslmode=verify-ca sslrootcert=${ca}`)), true);
  await assert.rejects(sslOf(kv("127.0.0.1", `sslmode=verify-ca sslrootcert=${otherCa}`)), /certificate/i);
  // verify-full: both.
  assert.equal(await sslOf(kv("localhost", `sslmode=verify-full sslrootcert=${ca}`)), true);
  await assert.rejects(sslOf(kv("127.0.0.1", `sslmode=verify-full sslrootcert=${ca}`)), /altnames|does not match|host ?name/i);
  // hostaddr: connect there, check the certificate against host.
  assert.equal(await sslOf(`host=localhost hostaddr=127.0.0.1 port=${cluster.port} dbname=postgres user=postgres sslmode=verify-full sslrootcert=${ca}`), true);
  // require with a root certificate file behaves as verify-ca (libpq).
  await assert.rejects(sslOf(kv("127.0.0.1", `sslmode=require sslrootcert=${otherCa}`)), /certificate/i);
  // No root certificate for verify-full: libpq's error, before connecting.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-home-"));
  assert.throws(() => connSettings(kv("localhost", "sslmode=verify-full"), { HOME: home }), /root certificate file ".*root\.crt" does not exist/);
  // ~/.postgresql/root.crt is the default root certificate.
  fs.mkdirSync(path.join(home, ".postgresql"));
  fs.copyFileSync(ca, path.join(home, ".postgresql", "root.crt"));
  assert.equal(((connSettings(kv("localhost", "sslmode=verify-full"), { HOME: home }).config.ssl as { ca?: Buffer }).ca?.length ?? 0) > 0, true);
  fs.rmSync(home, { recursive: true, force: true });

  // The server wants TLS (hostssl): prefer (the default) and allow get in encrypted, disable is refused.
  assert.equal(await sslOf(kv("127.0.0.1", "")), true);
  assert.equal(await sslOf(kv("127.0.0.1", "sslmode=prefer")), true);
  assert.equal(await sslOf(kv("127.0.0.1", "sslmode=allow")), true);
  await assert.rejects(sslOf(kv("127.0.0.1", "sslmode=disable")), /no pg_hba.conf entry|no encryption/);
  // Refused both ways (a database that is not there): the refusal that says why, not pg_hba's.
  await assert.rejects(sslOf(kv("127.0.0.1", "sslmode=prefer dbname=nope")), /database "nope" does not exist/);
  // The server refuses TLS sessions (hostnossl) though it has TLS: prefer falls back, allow never tried it.
  await setHba(cluster, ["hostnossl all all 127.0.0.1/32 trust"]);
  try {
    assert.equal(await sslOf(kv("127.0.0.1", "sslmode=prefer")), false);
    assert.equal(await sslOf(kv("127.0.0.1", "sslmode=allow")), false);
    await assert.rejects(sslOf(kv("127.0.0.1", "sslmode=require")), /no pg_hba.conf entry|SSL encryption/);
  } finally {
    await setHba(cluster, ["hostssl all all 127.0.0.1/32 trust", "hostssl all all ::1/128 trust"]);
  }
});

test("a target conninfo with sslmode=require and a certificate no CA here vouches for replicates (libpq: encrypted, not verified)", { skip }, async () => {
  await admin(cluster, "postgres", "create database req_src");
  await admin(cluster, "postgres", "create database req_tgt");
  const sourceUrl = tlsUrl("req_src", ca);
  await migrate(sourceUrl);
  const ddl = "create table items (id int primary key, name text)";
  await admin(cluster, "req_src", ddl + "; insert into items select g, 'n' || g from generate_series(1, 50) g");
  await admin(cluster, "req_tgt", ddl);
  const source = new Client({ connectionString: sourceUrl });
  await source.connect();
  try {
    await source.query("select dbsync.add_table('items', 'g')");
    await source.query("select dbsync.add_subscription('req', 'g', $1)", [
      `host=127.0.0.1 port=${cluster.port} dbname=req_tgt user=postgres sslmode=require`,
    ]);
    const sidecar = startSidecar(sourceUrl, ["--poll-interval", "200"]);
    try {
      const ok = await value(source, "select dbsync.wait_for_sync('req', '30 s')");
      const st = await rows(source, "select last_error from dbsync.table_status union all select last_error from dbsync.status");
      assert.equal(ok, true, `not in sync: ${JSON.stringify(st)}\n${sidecar.output().slice(-2000)}`);
      const enc = await admin(cluster, "postgres",
        "select bool_and(s.ssl) as all_ssl, count(*)::int as n from pg_stat_activity a join pg_stat_ssl s using (pid) where a.datname = 'req_tgt' and a.client_addr is not null");
      assert.equal(enc[0].all_ssl, true, JSON.stringify(enc));
    } finally {
      assert.equal(await sidecar.stop(), 0, sidecar.output());
    }
  } finally {
    await source.end();
  }
});

// sslmode=prefer to a server with TLS goes through dbsync's socket (src/ssl-socket.ts)
// over a TLS socket, whose writes made while corked, or while an earlier one waited
// for the connection to drain, go out joined (_writev): rows of megabytes both ways
// (the copy's COPY into the target, the stream's statements and their parameters),
// reading and writing on the same connections at once.
test("sslmode=prefer over TLS to both sides: rows of megabytes copied and streamed arrive whole", { skip }, async () => {
  await admin(cluster, "postgres", "create database big_src");
  await admin(cluster, "postgres", "create database big_tgt");
  const url = (db: string) => `postgres://postgres@127.0.0.1:${cluster.port}/${db}?sslmode=prefer`;
  await migrate(url("big_src"));
  const ddl = "create table big (id int primary key, v text)";
  // md5 of a counter, repeated: text that does not compress (TOAST keeps it as it is).
  const fill = (mb: number, seed: string) => `(select string_agg(md5(i::text || ${seed}::text), '') from generate_series(1, ${mb} * 32768) i)`;
  await admin(cluster, "big_src", `${ddl}; insert into big select g, ${fill(3, "g")} from generate_series(1, 4) g`);
  await admin(cluster, "big_tgt", ddl);
  const source = new Client(connSettings(url("big_src")).config);
  await source.connect();
  const fingerprint = (db: string) => admin(cluster, db, "select string_agg(id || ':' || length(v) || ':' || md5(v), ',' order by id) as f from big");
  try {
    await source.query("select dbsync.add_table('big', 'g')");
    await source.query("select dbsync.add_subscription('big', 'g', $1)", [url("big_tgt")]);
    const sidecar = startSidecar(url("big_src"), ["--poll-interval", "200"]);
    try {
      assert.equal(await value(source, "select dbsync.wait_for_sync('big', '120 s')"), true, sidecar.output().slice(-2000));
      await source.query(`update big set v = ${fill(5, "(-id)")} where id <= 2; insert into big select g, ${fill(2, "g")} from generate_series(5, 8) g`);
      assert.equal(await value(source, "select dbsync.wait_for_sync('big', '120 s')"), true, sidecar.output().slice(-2000));
      assert.deepEqual(await fingerprint("big_tgt"), await fingerprint("big_src"));
      const enc = await admin(cluster, "postgres",
        "select bool_and(s.ssl) as all_ssl from pg_stat_activity a join pg_stat_ssl s using (pid) where a.datname in ('big_src', 'big_tgt') and a.client_addr is not null and a.application_name <> ''");
      assert.equal(enc[0].all_ssl, true, JSON.stringify(enc));
    } finally {
      assert.equal(await sidecar.stop(), 0, sidecar.output());
    }
  } finally {
    await source.end();
  }
});
