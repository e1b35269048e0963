// Connection strings read as libpq reads them, in SQL (add_subscription refuses
// what libpq would refuse, at once) and in the sidecar (src/conninfo.ts), with the
// same grammar and keywords on both sides. TLS modes: test/security-tls.test.ts.
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { Client } from "pg";
import { ENUM_VALUES, LIBPQ_KEYWORDS, UNSUPPORTED_WHY, connSettings, parseConninfo } from "../src/conninfo";
import { freshEnv, orAfter, rows, sqlError, startSidecar, until, value } from "./helpers";

const BAD: [string, RegExp, RegExp][] = [
  ["this is not a conninfo", /missing "=" after "this" in connection info string/, /keyword=value pairs/],
  ["hostt=replica dbname=app", /invalid connection option "hostt"/, /Did you mean "host"\?/],
  ["host=replica dbname='app", /unterminated quoted string/, /single quote/],
  ["postgresql://replica/app?sslmodee=require", /invalid URI query parameter: "sslmodee"/, /Did you mean "sslmode"\?/],
  ["postgresql://replica/app?sslmode", /missing key\/value separator "="/, /URI/],
  ["postgresql://[::1/app", /matching "\]" in IPv6 host address/, /URI/],
  ["postgresql://replica/a%zzpp", /invalid percent-encoded token/, /%XX/],
  ["host=replica sslmode=requir", /invalid sslmode value/, /Valid values: disable, allow, prefer, require, verify-ca, verify-full/],
  ["host=replica port=54x32", /invalid integer value for connection option "port"/, /whole number from 1 to 65535/],
  ["host=replica krbsrvname=postgres", /"krbsrvname" is not supported by dbsync/, /GSSAPI/],
  ["host=a,b dbname=app", /several hosts or ports are not supported/, /one host/],
  ["host=replica sslmode=require sslrootcert=system", /weak sslmode "require" may not be used with sslrootcert=system/, /./],
  ["host=replica client_encoding=LATIN1", /client_encoding is not supported/, /UTF8/],
];

const GOOD: [string, [string, string][]][] = [
  ["host=replica dbname=app user=dbsync", [["host", "replica"], ["dbname", "app"], ["user", "dbsync"]]],
  ["host = replica   dbname = 'my app'  application_name='it\\'s me' options=-c\\ work_mem=64MB", [
    ["host", "replica"], ["dbname", "my app"], ["application_name", "it's me"], ["options", "-c work_mem=64MB"],
  ]],
  ["host= dbname=app", [["host", "dbname=app"]]], // as libpq: the blank after "=" is skipped
  ["postgres://dbsync:p%40ss@replica:5433/app?sslmode=verify-full&application_name=x%20y", [
    ["user", "dbsync"], ["password", "p@ss"], ["host", "replica"], ["port", "5433"], ["dbname", "app"],
    ["sslmode", "verify-full"], ["application_name", "x y"],
  ]],
  ["postgresql://[::1]:5432/app", [["host", "::1"], ["port", "5432"], ["dbname", "app"]]],
  ["postgresql:///app?host=/var/run/postgresql", [["dbname", "app"], ["host", "/var/run/postgresql"]]],
  ["postgresql://replica/app?ssl=true", [["host", "replica"], ["dbname", "app"], ["sslmode", "require"]]],
  ["postgresql://replica", [["host", "replica"]]],
  ["", []],
];

test("add_subscription refuses a conninfo libpq would refuse, with libpq's words and a hint; nothing is stored", async () => {
  const env = await freshEnv("conninfo_sql");
  await env.source.query("select dbsync.create_group('g')");
  for (const [conninfo, message, hint] of BAD) {
    const err = await sqlError(env.source, "select dbsync.add_subscription('s', 'g', $1)", [conninfo]);
    assert.match(err.message, /^add_subscription: invalid target_conninfo: /, conninfo);
    assert.match(err.message, message, conninfo);
    assert.match(err.hint ?? "", hint, `${conninfo}: hint ${err.hint}`);
    assert.ok(["22023", "0A000"].includes(err.code ?? ""), `${conninfo}: SQLSTATE ${err.code}`);
  }
  assert.equal(await value(env.source, "select count(*)::int from dbsync.subscriptions"), 0);
  for (const [conninfo] of GOOD.filter(([c]) => c !== "")) {
    await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [conninfo]);
    await env.source.query("select dbsync.drop_subscription('s')");
  }
});

test("SQL and the sidecar read a conninfo alike: same keywords, same values, same refusals", async () => {
  const env = await freshEnv("conninfo_parity");
  // The keyword lists.
  const sql = await rows<{ keyword: string; support: string; why: string | null; allowed: string[] | null }>(
    env.source,
    "select * from dbsync._conninfo_keywords()",
  );
  assert.deepEqual(Object.fromEntries(sql.map((k) => [k.keyword, k.support])), LIBPQ_KEYWORDS);
  assert.deepEqual(Object.fromEntries(sql.filter((k) => k.why).map((k) => [k.keyword, k.why])), UNSUPPORTED_WHY);
  assert.deepEqual(Object.fromEntries(sql.filter((k) => k.allowed).map((k) => [k.keyword, k.allowed])), ENUM_VALUES);
  // The parsers.
  for (const [conninfo, expected] of GOOD) {
    assert.deepEqual([...parseConninfo(conninfo)], expected, `sidecar: ${conninfo}`);
    const fromSql = await rows<{ keyword: string; value: string }>(env.source, "select * from dbsync._conninfo_parse($1, 'x')", [conninfo]);
    assert.deepEqual(fromSql.map((r) => [r.keyword, r.value]), expected, `SQL: ${conninfo}`);
  }
  for (const [conninfo, message] of BAD) {
    assert.throws(() => connSettings(conninfo, {}), message, `sidecar: ${conninfo}`);
  }
});

test("the sidecar refuses a bad conninfo with libpq's words: the source at start (exit 1), a target in dbsync.status", async () => {
  const env = await freshEnv("conninfo_sidecar");
  const bad = startSidecar("hostt=localhost dbname=x");
  assert.equal(await orAfter(bad.exited, 20_000, "running"), 1, bad.output());
  await bad.stop("SIGKILL");
  assert.match(bad.output(), /dbsync: invalid connection string: invalid connection option "hostt"\nhint: Did you mean "host"\?/);
  assert.doesNotMatch(bad.output(), /^\s+at /m, "no stack trace");

  // A conninfo stored before add_subscription checked them.
  await env.source.query("create table t (id int primary key)");
  await env.source.query("select dbsync.add_table('t', 'g')");
  await env.source.query("select dbsync.add_subscription('s', 'g', $1)", [env.targetUrl]);
  await env.source.query("update dbsync.subscriptions set target_conninfo = 'host=localhost sslmode=requir' where name = 's'");
  const sidecar = startSidecar(env.sourceUrl);
  try {
    await until("the error in dbsync.status", async () =>
      /invalid sslmode value/.test((await value<string | null>(env.source, "select last_error from dbsync.status")) ?? ""));
    assert.match(await value<string>(env.source, "select last_error from dbsync.status"), /hint: Valid values: disable, allow, prefer/);
  } finally {
    assert.equal(await sidecar.stop(), 0, sidecar.output());
  }
});

test("sslmode=prefer (the default): a query with parameters goes to the server in one write, not a write per protocol message", async () => {
  const env = await freshEnv("conninfo_one_write");
  const client = new Client(connSettings(`${env.sourceUrl}${env.sourceUrl.includes("?") ? "&" : "?"}sslmode=prefer`).config);
  await client.connect();
  try {
    // The socket node-postgres writes to is dbsync's (src/ssl-socket.ts); under it, node's.
    const inner = (client as unknown as { connection: { stream: { inner: net.Socket } } }).connection.stream.inner;
    assert.ok(inner instanceof net.Socket);
    let writes = 0;
    const write = inner.write.bind(inner) as (...args: unknown[]) => boolean;
    inner.write = ((...args: unknown[]) => {
      writes++;
      return write(...args);
    }) as typeof inner.write;
    assert.equal((await client.query("select $1::int + 1 as n", [41])).rows[0].n, 42);
    assert.equal(writes, 1);
  } finally {
    await client.end();
  }
});
