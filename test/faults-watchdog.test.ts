// src/db/liveness.ts's hung-link detection, directly and through the sidecar, with a very
// short DBSYNC_QUERY_TIMEOUT_MS (1 s): what is legitimately slow (a long statement,
// a lock wait, a COPY whose first row takes long, a COPY held back by the other side
// of its pipeline, a 1,000,000-row transaction replicated as one batch) is never
// cut; a link that hangs under a statement, a COPY out or a COPY in is declared
// dead within a bound; closing never hangs. Also the fault proxy's own modes.
import assert from "node:assert/strict";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { Client } from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { clientConfig, closeQuietly, connect } from "../src/db/connect";
import { FaultProxy, startFaultProxy } from "./harness/fault-proxy";
import { Env, freshEnv, orAfter, SOURCE_MAJOR, sleep, startSidecar, until, value } from "./helpers";

const TIMEOUT_MS = 1000;
process.env.DBSYNC_QUERY_TIMEOUT_MS = String(TIMEOUT_MS);
process.env.DBSYNC_CONNECT_TIMEOUT_MS = "1000";
/** Silence + probe (bounded by the connect timeout) + the watchdog's tick + margin. */
const BOUND_MS = TIMEOUT_MS + 1000 + 1500;

let env: Env;
let sp: FaultProxy; // in front of the source cluster
let tp: FaultProxy; // in front of the target cluster
const open: Client[] = [];

before(async () => {
  env = await freshEnv("faults_watchdog");
  sp = await startFaultProxy({ port: Number(new URL(env.sourceUrl).port) });
  tp = await startFaultProxy({ port: Number(new URL(env.targetUrl).port) });
  const ddl = "create table big (id int primary key, payload text)";
  await env.source.query(ddl);
  await env.target.query(ddl);
});
after(async () => {
  await Promise.all(open.map((c) => closeQuietly(c)));
  await Promise.all([sp?.close(), tp?.close()]);
});

async function client(url: string, name = "dbsync test") {
  const c = await connect(url, { applicationName: name });
  open.push(c);
  return c;
}

/** Runs fn; its result or error, and how long it took. */
async function elapsed<T>(fn: () => Promise<T>): Promise<{ ms: number; value?: T; error?: Error & { code?: string } }> {
  const t0 = Date.now();
  try {
    const value = await fn();
    return { ms: Date.now() - t0, value };
  } catch (error) {
    return { ms: Date.now() - t0, error: error as Error & { code?: string } };
  }
}

test("slow but alive: long statements, lock waits and slow COPYs are not cut by a 1 s watchdog", async (t) => {
  const a = await client(sp.url(env.sourceUrl));
  const sleepy = await elapsed(() => a.query("select pg_sleep(3.5)"));
  assert.equal(sleepy.error, undefined, String(sleepy.error));

  // A lock wait of 3 s.
  const holder = await env.source.connect();
  try {
    await holder.query("begin; lock table big in access exclusive mode");
    setTimeout(() => void holder.query("commit"), 3000);
    const waited = await elapsed(() => a.query("select count(*) from big"));
    assert.equal(waited.error, undefined, String(waited.error));
    assert.ok(waited.ms >= 2500);
  } finally {
    holder.release();
  }

  // COPY out whose first row comes after ~3 s, into a COPY in held back meanwhile.
  const b = await client(tp.url(env.targetUrl));
  const slowFirst = await elapsed(() =>
    pipeline(
      a.query(copyTo("copy (select g, md5(g::text) from generate_series(1, 50000) g where pg_sleep(case when g = 1 then 3 else 0 end) is not null) to stdout")),
      b.query(copyFrom("copy big from stdin")),
    ),
  );
  assert.equal(slowFirst.error, undefined, String(slowFirst.error));

  // A consumer slower than the watchdog: 2 s pauses in the middle of a COPY out.
  let chunks = 0;
  const slowConsumer = await elapsed(() =>
    pipeline(
      a.query(copyTo("copy (select g, repeat(md5(g::text), 4) from generate_series(100001, 300000) g) to stdout")),
      new Transform({
        transform(chunk, _enc, cb) {
          if (++chunks % 200 === 0) setTimeout(() => cb(null, chunk), 2000);
          else cb(null, chunk);
        },
      }),
      b.query(copyFrom("copy big from stdin")),
    ),
  );
  assert.equal(slowConsumer.error, undefined, String(slowConsumer.error));
  assert.equal(await value<number>(env.target, "select count(*)::int from big"), 250_000);
  t.diagnostic(`pg_sleep(3.5) ${sleepy.ms} ms; COPY with a 3 s first row ${slowFirst.ms} ms; COPY with a consumer pausing 2 s at a time ${slowConsumer.ms} ms`);
  assert.equal((await a.query("select 1 as x")).rows[0].x, 1, "the connection is still good");
});

test("hung link: a statement, a COPY out and a COPY in each fail within the bound with 08006; end() never hangs", async (t) => {
  t.after(() => {
    sp.pass();
    tp.pass();
  });
  // An ordinary statement.
  const a = await client(sp.url(env.sourceUrl));
  sp.blackhole();
  const stmt = await elapsed(() => a.query("select 1"));
  sp.pass();
  assert.equal(stmt.error?.code, "08006", String(stmt.error));
  assert.match(stmt.error!.message, /lost: no reply/);
  assert.ok(stmt.ms < BOUND_MS, `statement: ${stmt.ms} ms`);

  // A COPY out, mid-stream (the source link hangs), into a COPY in on a healthy link.
  const b = await client(sp.url(env.sourceUrl));
  const c = await client(env.targetUrl);
  await c.query("begin");
  let moved = 0;
  let t0 = 0;
  const out = b.query(copyTo("copy (select g, repeat('x', 200) from generate_series(1000001, 3000000) g) to stdout"));
  const counter = new Transform({
    transform(chunk: Buffer, _e, cb) {
      moved += chunk.length;
      if (moved > 2_000_000 && !t0) {
        sp.blackhole();
        t0 = Date.now();
      }
      cb(null, chunk);
    },
  });
  const copyOut = await elapsed(() => pipeline(out, counter, c.query(copyFrom("copy big from stdin"))));
  const copyOutMs = Date.now() - t0;
  sp.pass();
  assert.ok(t0 > 0, "the link was cut mid-stream");
  assert.equal(copyOut.error?.code, "08006", String(copyOut.error));
  assert.ok(copyOutMs < BOUND_MS, `COPY out: ${copyOutMs} ms`);
  await c.query("rollback").catch(() => undefined);

  // A COPY in, mid-stream (the target link hangs).
  const d = await client(env.sourceUrl);
  const e = await client(tp.url(env.targetUrl));
  const f = await client(tp.url(env.targetUrl)); // idle: closed once the link hangs
  await e.query("begin");
  moved = 0;
  t0 = 0;
  const counter2 = new Transform({
    transform(chunk: Buffer, _e, cb) {
      moved += chunk.length;
      if (moved > 2_000_000 && !t0) {
        tp.blackhole();
        t0 = Date.now();
      }
      cb(null, chunk);
    },
  });
  const copyIn = await elapsed(() =>
    pipeline(d.query(copyTo("copy (select g, repeat('y', 200) from generate_series(1000001, 3000000) g) to stdout")), counter2, e.query(copyFrom("copy big from stdin"))),
  );
  const copyInMs = Date.now() - t0;
  assert.ok(t0 > 0, "the link was cut mid-stream");
  assert.equal(copyIn.error?.code, "08006", String(copyIn.error));
  assert.ok(copyInMs < BOUND_MS, `COPY in: ${copyInMs} ms`);

  // Closing a client whose link hangs, with no statement running, is bounded too.
  const closing = await elapsed(() => closeQuietly(f));
  tp.pass();
  assert.ok(closing.ms < 3500, `end() took ${closing.ms} ms`);
  t.diagnostic(`hung link noticed: statement ${stmt.ms} ms, COPY out ${copyOutMs} ms, COPY in ${copyInMs} ms; end() ${closing.ms} ms`);
  t.diagnostic(stmt.error!.message);
});

test("connecting over a hung link fails within DBSYNC_CONNECT_TIMEOUT_MS and names the server (08001)", async () => {
  sp.blackhole();
  try {
    const r = await elapsed(() => connect(sp.url(env.sourceUrl), { applicationName: "dbsync test" }));
    assert.equal(r.error?.code, "08001");
    assert.match(r.error!.message, new RegExp(`could not connect to 127\\.0\\.0\\.1:${sp.port}: no answer within 1000 ms`));
    assert.ok(r.ms < 2500, `${r.ms} ms`);
  } finally {
    sp.pass();
  }
});

test("interactive CLI connections keep no client-side limit (dbsync wait may wait long)", async () => {
  const cfg = clientConfig(env.sourceUrl, { applicationName: "dbsync cli" });
  assert.equal(cfg.query_timeout, undefined);
  const c = new Client(cfg);
  await c.connect();
  try {
    const r = await elapsed(() => c.query("select pg_sleep(2)"));
    assert.equal(r.error, undefined);
  } finally {
    await c.end();
  }
  assert.equal(clientConfig(env.sourceUrl, { applicationName: "dbsync listen" }).query_timeout, TIMEOUT_MS);
});

test("server-side detection settings are on every sidecar session", async () => {
  const c = await client(env.sourceUrl);
  const r = (await c.query(
    "select current_setting('tcp_keepalives_idle') as idle, current_setting('tcp_keepalives_interval') as intvl, current_setting('tcp_keepalives_count') as cnt, current_setting('client_connection_check_interval', true) as chk, current_setting('idle_in_transaction_session_timeout') as iit",
  )).rows[0];
  // client_connection_check_interval comes with PostgreSQL 14; before, the sessions go without it.
  assert.deepEqual(r, { idle: "30", intvl: "10", cnt: "3", chk: SOURCE_MAJOR >= 14 ? "10s" : null, iit: "1min" });
});

test("the fault proxy: delay keeps order, drop RST and FIN, black-hole holds new connections, filters", async () => {
  const c = await client(sp.url(env.sourceUrl), "proxy a");
  sp.delay(150);
  const d = await elapsed(() => c.query("select 1"));
  assert.ok(d.ms >= 300, `a round trip through a 150 ms delay took ${d.ms} ms`);
  const many = await Promise.all([1, 2, 3].map((i) => c.query("select $1::int as i", [i])));
  assert.deepEqual(many.map((r) => r.rows[0].i), [1, 2, 3]);
  sp.pass();
  assert.ok(sp.drop("rst") >= 1);
  const afterRst = await elapsed(() => c.query("select 1"));
  assert.match(String(afterRst.error), /ECONNRESET|terminated|not queryable/);
  const e = await client(sp.url(env.sourceUrl), "proxy e");
  sp.drop("fin");
  const afterFin = await elapsed(() => e.query("select 1"));
  assert.match(String(afterFin.error), /terminated|not queryable|EPIPE|ECONNRESET/);
  // Black-hole some: only 'proxy h' connections, even new ones, hang.
  const h = await client(sp.url(env.sourceUrl), "proxy h");
  const k = await client(sp.url(env.sourceUrl), "proxy k");
  sp.blackhole((x) => x.applicationName === "proxy h");
  assert.equal((await k.query("select 2 as x")).rows[0].x, 2);
  const held = h.query("select 3 as x");
  const raced = await orAfter(held.then(() => "answered", () => "failed"), 500, "hanging");
  assert.equal(raced, "hanging");
  // A raw new connection with that name hangs; restoring delivers it.
  const raw = new Client({ connectionString: sp.url(env.sourceUrl), application_name: "proxy h" });
  const rawConnect = raw.connect();
  await sleep(300);
  assert.ok(sp.connections().filter((x) => x.applicationName === "proxy h").every((x) => x.held));
  sp.pass();
  await rawConnect;
  assert.equal((await raw.query("select 4 as x")).rows[0].x, 4);
  await raw.end();
  // The held statement was answered after the restore, or its connection declared dead.
  await held.catch(() => undefined);
});

test("a 1,000,000-row transaction replicates as one batch with a 1 s watchdog: nothing legitimate is cut", async (t) => {
  const e2 = await freshEnv("faults_watchdog_big");
  const ddl = "create table bulk (id int primary key, a int not null, payload text)";
  await e2.source.query(ddl);
  await e2.target.query(ddl);
  await e2.source.query("select dbsync.add_table('bulk', 'g')");
  await e2.source.query("select dbsync.add_subscription('s', 'g', $1, copy_data => false)", [tp.url(e2.targetUrl)]);
  const sidecar = startSidecar(sp.url(e2.sourceUrl), ["--poll-interval", "200"], {
    DBSYNC_QUERY_TIMEOUT_MS: String(TIMEOUT_MS),
    DBSYNC_LOG_LEVEL: "info",
  });
  try {
    await until("sidecar running", async () => sidecar.output().includes("dbsync sidecar running"), 20000);
    const probesBefore = (sp.stats().byApplication["dbsync probe"] ?? 0) + (tp.stats().byApplication["dbsync probe"] ?? 0);
    const t0 = Date.now();
    await e2.source.query("insert into bulk select g, g % 1000, md5(g::text) from generate_series(1, 1000000) g");
    const wrote = Date.now() - t0;
    assert.equal(await value(e2.source, "select dbsync.wait_for_sync('s', '80 s')"), true, sidecar.output());
    const batches = await value<number>(e2.source, "select batches_applied::int from dbsync.status where name = 's'");
    const probes = (sp.stats().byApplication["dbsync probe"] ?? 0) + (tp.stats().byApplication["dbsync probe"] ?? 0) - probesBefore;
    t.diagnostic(`1,000,000 rows written in ${wrote} ms, applied ${Date.now() - t0 - wrote} ms later in ${batches} batch(es); ` +
      `${probes} liveness checks of statements silent for over ${TIMEOUT_MS} ms found the server working and left them alone`);
    assert.equal(batches, 1);
    assert.doesNotMatch(sidecar.output(), /lost: no reply|error/i);
    assert.equal(await value<number>(e2.target, "select count(*)::int from bulk"), 1_000_000);
    const [a, b] = await Promise.all([
      value(e2.source, "select md5(string_agg(t::text, ',' order by id)) from bulk t"),
      value(e2.target, "select md5(string_agg(t::text, ',' order by id)) from bulk t"),
    ]);
    assert.equal(b, a);
  } finally {
    await sidecar.stop();
  }
});
