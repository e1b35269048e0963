// Session 22's hostile roles on real clusters: an admin role (EXECUTE on dbsync's
// functions, not the dbsync owner) steering the sidecar's target connections, an
// ordinary writer forging the replica-mode mark, PUBLIC calling what it may call.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { Client } from "pg";
import { Env, freshEnv, sqlError, startSidecar, until, value } from "./helpers";
import { failsWith, setup } from "./kit/convergence";

const SECRET = "SECRETsidecar22";

/** A session on the source database as `role` (the test clusters trust local logins). */
async function connectAs(env: Env, role: string): Promise<Client> {
  const u = new URL(env.sourceUrl);
  u.username = role;
  const c = new Client({ connectionString: u.toString() });
  await c.connect();
  return c;
}

/**
 * A server that speaks just enough of the protocol to ask for a cleartext password,
 * and records every password it is sent.
 */
async function passwordCatcher(): Promise<{ port: number; got: string[]; close(): Promise<void> }> {
  const got: string[] = [];
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let started = false;
    sock.on("error", () => undefined);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!started) {
          if (buf.length < 8 || buf.length < buf.readInt32BE(0)) return;
          const len = buf.readInt32BE(0);
          const code = buf.readInt32BE(4);
          buf = buf.subarray(len);
          if (code === 80877103 || code === 80877104) sock.write("N"); // SSLRequest, GSSENCRequest: no
          else {
            started = true;
            sock.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])); // AuthenticationCleartextPassword
          }
        } else {
          if (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) return;
          const len = buf.readInt32BE(1);
          if (buf[0] === 0x70) got.push(buf.subarray(5, 1 + len).toString("utf8").replace(/\0$/, ""));
          sock.end();
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, got, close: () => new Promise((r) => server.close(() => r())) };
}

// README Security: an admin role "reads the views and the verifications, not the
// queue, not target_conninfo and no replicated table". A target conninfo is where the
// sidecar goes with its own credentials: its environment (PGPASSWORD, PGPASSFILE and
// ~/.pgpass, PGSERVICE, ~/.postgresql/postgresql.key) and its host's trust and peer
// logins. An admin role's subscription aimed at its own server was sent the
// sidecar's PGPASSWORD (with which it reads every target_conninfo and replicated
// table); one aimed at a server that trusts the sidecar's host connected as whatever
// role it named, and execute_ddl then ran its statements there as that role. As
// dblink and postgres_fdw do for non-superusers, a conninfo given by a role other
// than the dbsync owner must carry its own password, and the server must ask for it.
describe("a target conninfo given by an admin role that is not the dbsync owner", () => {
  let env: Env;
  let adm: Client;
  const ADMIN = "dbsync_admin_b22";
  before(async () => {
    env = await freshEnv("b22_conninfo");
    await setup(env, "create table t (id int primary key, v text)", ["t"]);
    await env.source.query(`do $$ begin if not exists (select from pg_roles where rolname = '${ADMIN}') then create role ${ADMIN} login; end if; end $$;
      grant usage on schema dbsync to ${ADMIN}; grant execute on all functions in schema dbsync to ${ADMIN}`);
    adm = await connectAs(env, ADMIN);
  });
  after(async () => {
    await adm.end();
  });

  test("without a password of its own, or naming the sidecar's files: refused, nothing stored; the sidecar's PGPASSWORD reaches no one", async () => {
    const catcher = await passwordCatcher();
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"], { PGPASSWORD: SECRET });
    try {
      const evil = `host=127.0.0.1 port=${catcher.port} dbname=x user=dbsync_sidecar sslmode=disable`;
      const err = await sqlError(adm, "select dbsync.add_subscription('evil', 'g', $1)", [evil]);
      assert.equal(err.code, "42501", `${err.code} ${err.message}`);
      assert.match(err.message, /add_subscription: a target conninfo given by a role other than the dbsync owner must carry its own password/);
      for (const kw of ["passfile=/tmp/x", "service=x", "sslkey=/tmp/x", "sslcert=/tmp/x", "sslpassword=x"]) {
        const e = await sqlError(adm, "select dbsync.add_subscription('evil', 'g', $1)", [`${evil} password=mine ${kw}`]);
        assert.equal(e.code, "42501", `${kw}: ${e.code} ${e.message}`);
        assert.match(e.message, new RegExp(`"${kw.split("=")[0]}"`));
      }
      assert.equal(await value(env.source, "select count(*)::int from dbsync.subscriptions where name = 'evil'"), 0);
      // The sidecar had a chance to connect to anything stored.
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(catcher.got, []);
      // Its own password is what it sends there.
      await value(adm, "select dbsync.add_subscription('evil', 'g', $1)", [`${evil} password=mine`]);
      await until("the catcher asked", async () => catcher.got.length > 0, 30_000);
      assert.deepEqual([...new Set(catcher.got)], ["mine"]);
    } finally {
      await sidecar.stop();
      await catcher.close();
      await env.source.query("select dbsync.drop_subscription(name) from dbsync.subscriptions where name = 'evil'");
    }
  });

  test("aimed at a server that does not ask for its password (trust, peer, a certificate): the sidecar refuses the connection", async () => {
    const u = new URL(env.targetUrl);
    u.password = "whatever";
    await value(adm, "select dbsync.add_subscription('trusted', 'g', $1)", [u.toString()]);
    const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
    try {
      await failsWith(env, /did not ask for the password/, "trusted");
      // The owner's own subscription to the same server works.
      await env.source.query("insert into t values (1, 'a')");
      assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '60 s')"), true, sidecar.output());
    } finally {
      await sidecar.stop();
      await env.source.query("select dbsync.drop_subscription('trusted')");
    }
  });
});
