// Applications with their own triggers (a BEFORE trigger that changes the
// row and writes another replicated table, an AFTER trigger that keeps a replicated
// audit table) writing in READ COMMITTED, REPEATABLE READ and SERIALIZABLE, while
// the target's apply connection is terminated, the subscription is paused and
// resumed, execute_ddl adds a column, and the sidecar is SIGKILLed and started again.
// The target must end equal to the source, with no error left in dbsync.status.
import assert from "node:assert/strict";
import { test } from "node:test";
import { freshEnv, seeded, sleep, startSidecar, Sidecar, value } from "./helpers";
import { setup, status, strictlyConverged } from "./kit/convergence";

const DDL = `
  create table acct (id int primary key, balance bigint not null, touched int not null default 0);
  create table audit (id bigserial primary key, acct int not null, delta bigint not null, iso text not null);
  create table totals (k int primary key, n bigint not null);
  insert into totals values (1, 0);`;

const APP_TRIGGERS = `
  create function app_before() returns trigger language plpgsql as $$
  begin
    new.touched := old.touched + 1;
    update totals set n = n + (new.balance - old.balance) where k = 1;
    return new;
  end $$;
  create trigger app_before before update on acct for each row execute procedure app_before();
  create function app_after() returns trigger language plpgsql as $$
  begin
    insert into audit (acct, delta, iso) values (new.id, new.balance - old.balance, current_setting('transaction_isolation'));
    return null;
  end $$;
  create trigger app_after after update on acct for each row execute procedure app_after();`;

test("application triggers and RR/SERIALIZABLE writers while the apply connection is killed, pauses, execute_ddl and a SIGKILLed sidecar", async () => {
  const env = await freshEnv("b3_apps");
  await setup(env, DDL, ["acct", "audit", "totals"]);
  // The application's triggers are on the source only (the target gets their effects as rows).
  await env.source.query(APP_TRIGGERS);
  await env.source.query("insert into acct select g, 1000 from generate_series(1, 200) g");
  let sidecar: Sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200", "--concurrency", "2"], { DBSYNC_STREAM_PIECE_LINES: "64" });
  const stop = { done: false };
  const failures: string[] = [];
  const writer = (w: number, iso: string) =>
    (async () => {
      const rng = seeded(`b3-apps/${w}`);
      const c = await env.source.connect();
      try {
        while (!stop.done) {
          const a = rng.int(1, 200);
          const b = rng.int(1, 200);
          const amt = rng.int(1, 50);
          try {
            await c.query(`begin isolation level ${iso}`);
            await c.query("update acct set balance = balance - $1 where id = $2", [amt, a]);
            await c.query("update acct set balance = balance + $1 where id = $2", [amt, b]);
            if (rng.int(1, 10) === 1) await c.query("insert into acct values ($1, 0) on conflict (id) do nothing", [1000 + rng.int(1, 500)]);
            if (rng.int(1, 20) === 1) await c.query("delete from acct where id = $1 and balance = 0", [1000 + rng.int(1, 500)]);
            await c.query("commit");
          } catch (err) {
            await c.query("rollback").catch(() => undefined);
            const code = (err as { code?: string }).code;
            if (code !== "40001" && code !== "40P01") failures.push(String(err));
          }
          await sleep(rng.int(0, 5));
        }
      } finally {
        c.release();
      }
    })();
  const writers = [writer(1, "read committed"), writer(2, "repeatable read"), writer(3, "serializable"), writer(4, "serializable")];
  try {
    await sleep(1500);
    for (let round = 0; round < 6; round++) {
      await sleep(700);
      switch (round % 3) {
        case 0:
          await env.target.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and application_name like 'dbsync apply%'");
          break;
        case 1:
          await env.source.query("select dbsync.pause('s')");
          await sleep(500);
          await env.source.query("select dbsync.resume('s')");
          break;
        case 2:
          await sidecar.stop("SIGKILL");
          sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "200", "--concurrency", "2"], { DBSYNC_STREAM_PIECE_LINES: "64" });
          break;
      }
      if (round === 3) await env.source.query("select dbsync.execute_ddl('g', 'alter table audit add column note text default ''n''')");
    }
    stop.done = true;
    await Promise.all(writers);
    assert.deepEqual(failures.slice(0, 3), [], "writers failed");
    await strictlyConverged(env, ["acct", "audit", "totals"]);
    // The application's invariant holds on the target too.
    assert.equal(Number(await value(env.target, "select sum(balance) from acct where id <= 200")) + Number(await value(env.target, "select n from totals")), 200 * 1000);
    assert.equal((await status(env))?.last_error ?? null, null);
  } finally {
    stop.done = true;
    await Promise.allSettled(writers);
    await sidecar.stop();
  }
});
