// DDL run on the source outside dbsync.execute_ddl that changes the values of a
// replicated table's existing rows with no row trigger firing: ALTER COLUMN ...
// TYPE ... USING (also to the same type, which the target never fails on), a column
// added whose values each server computes for itself (now(), random(), serial,
// identity). Before, it was a WARNING and a line of dbsync.unreplicated_ddl, while
// dbsync.status said streaming, wait_for_sync true, and the target kept its old rows
// for ever. Now the subscription shows an error until the DBA has made the change on
// the target and acknowledged it, and then copies the table again: whatever the
// target's own run of the DDL did to its rows (USING v * 2 run there on rows that
// had already reached it doubled, its own now()), it ends equal to the source.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Env, SOURCE_MAJOR, compat, freshEnv, parentKey, partitionKey, partitionKeyColumns, rows, startSidecar, until, value } from "./helpers";
import { setup, status, strictlyConverged, synced } from "./kit/convergence";
import { connectAs, rolesDroppedAfter } from "./kit/roles";

const made = rolesDroppedAfter();

interface Case {
  /** Both sides' tables (added to group g in this order: `tables`); `targetCreate`: the target's, where the majors differ. */
  create: string;
  targetCreate?: string;
  tables: string[];
  keyColumns?: Record<string, string[] | null>;
  /** Rows written and applied before the DDL. */
  before: string;
  /** Run on the source outside execute_ddl. */
  ddl: string;
  /** Rows written after it, before the DBA acts. */
  after: string;
  /** What the DBA runs on the target (default: the same DDL). */
  targetDdl?: string;
  /** Run the DDL in a session with session_replication_role = replica. */
  replica?: boolean;
  /** A login role, not a superuser, made to own the source's tables and to run the DDL. */
  owner?: string;
}

/**
 * The case's DDL on the source outside execute_ddl, a WARNING that names the copy;
 * the subscription in error until the DBA makes the change on the target and
 * acknowledges it; then the target equals the source, with no error left.
 */
async function rewrittenOutside(env: Env, c: Case): Promise<void> {
  await setup(env, c.create, c.tables, { keyColumns: c.keyColumns, targetDdl: c.targetCreate });
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await env.source.query(c.before);
    await synced(env);
    if (c.owner) {
      await env.source.query(`create role ${c.owner} login`);
      made.push({ url: env.sourceUrl, role: c.owner });
      // (Partitions too: ALTER TABLE recurses to them, as their owner.)
      const rels = await rows<{ rel: string }>(env.source, compat(`select t::regclass::text as rel from unnest($1::text[]) t
        union select p.relid::regclass::text from unnest($1::text[]) t, pg_partition_tree(t::regclass) p`), [c.tables]);
      for (const { rel } of rels) await env.source.query(`alter table ${rel} owner to ${c.owner}`);
    }
    const pooled = c.owner ? undefined : await env.source.connect();
    const session = pooled ?? (await connectAs(env.sourceUrl, c.owner!));
    const warnings: string[] = [];
    session.on("notice", (n) => warnings.push(n.message ?? ""));
    try {
      if (c.replica) await session.query("set session_replication_role = replica");
      await session.query(c.ddl);
    } finally {
      if (pooled) pooled.release();
      else await session.end();
    }
    assert.ok(warnings.some((w) => /changed its rows outside dbsync\.execute_ddl/.test(w)), `WARNING expected: ${warnings.join("; ")}`);
    await env.source.query(c.after);
    // The rows differ: never 'streaming', never in sync, whatever the target does
    // until the change is acknowledged.
    await until("the subscription in error", async () => (await status(env))?.state === "error", 60_000);
    assert.equal(await value(env.source, "select dbsync.wait_for_sync('s', '1 s')"), false);
    await env.target.query(c.targetDdl ?? c.ddl);
    await until("the error says to acknowledge the change", async () =>
      /make the same change on the target, then select dbsync\.acknowledge_ddl\(\d+\)/.test((await status(env))?.last_error ?? ""), 60_000);
    assert.equal((await status(env))?.state, "error");
    assert.match(await notInSync(env), /not in sync after 1 s: .* outside dbsync\.execute_ddl changed its rows on the source only .*acknowledge_ddl\(\d+\).*\(rows stream on meanwhile\)$/);
    assert.ok(Number(await value(env.source, "select dbsync.acknowledge_ddl(null)")) >= 1);
    await strictlyConverged(env, c.tables);
  } finally {
    await sidecar.stop();
  }
}

/** wait_for_sync('s', '1 s') is false: the NOTICE that says why. */
async function notInSync(env: Env): Promise<string> {
  const c = await env.source.connect();
  const said: string[] = [];
  c.on("notice", (n) => said.push(n.message ?? ""));
  try {
    assert.equal((await c.query("select dbsync.wait_for_sync('s', '1 s') as ok")).rows[0].ok, false);
  } finally {
    c.release();
  }
  return said.join("\n");
}

const plain = "create table t (id int primary key, v int, s text)";
const rowsBefore = "insert into t select g, g, 'row ' || g from generate_series(1, 50) g";
const rowsAfter = "update t set v = v + 1000 where id <= 5; insert into t (id, v, s) values (51, 51, 'row 51')";

test("ALTER COLUMN ... TYPE int USING v * 2 (the same type: the target never fails on it): an error until acknowledged, then copied; execute_ddl's own is not held", async () => {
  const env = await freshEnv("rewrite_same_type");
  await rewrittenOutside(env, { create: plain, tables: ["t"], before: rowsBefore, ddl: "alter table t alter column v type int using v * 2", after: rowsAfter });
  // Through execute_ddl the targets run it at its point, and the table is copied
  // once, by execute_ddl: nothing is listed or held.
  await env.source.query("select dbsync.execute_ddl('g', 'alter table t alter column v type int using v * 3')");
  // Rows do not change: nothing to hold.
  await env.source.query("alter table t alter column v set default 7");
  await env.target.query("alter table t alter column v set default 7");
  await env.source.query("select dbsync.acknowledge_ddl(null)");
  const sidecar = startSidecar(env.sourceUrl, ["--poll-interval", "100"]);
  try {
    await strictlyConverged(env, ["t"]);
    assert.equal(await value(env.source, "select count(*)::int from dbsync.ddl_log where recopy_table_id is not null"), 1);
  } finally {
    await sidecar.stop();
  }
});

test("ALTER COLUMN ... TYPE text USING upper(s), run in a session with session_replication_role = replica", async () => {
  const env = await freshEnv("rewrite_text_replica");
  await rewrittenOutside(env, {
    create: plain, tables: ["t"], before: rowsBefore, ddl: "alter table t alter column s type text using upper(s)", after: rowsAfter, replica: true,
  });
});

test("ALTER COLUMN ... TYPE bigint USING v + 1 of a partitioned table (each partition rewritten), by its owner, not a superuser", async () => {
  const env = await freshEnv("rewrite_partitioned");
  const create = (side: "source" | "target") => `create table t (id int not null, v int, s text${parentKey("id", side)}) partition by range (id);
    create table t1 partition of t${partitionKey("id", side)} for values from (0) to (30);
    create table t2 partition of t${partitionKey("id", side)} for values from (30) to (100)`;
  await rewrittenOutside(env, {
    create: create("source"), targetCreate: create("target"), tables: ["t"], keyColumns: { t: partitionKeyColumns(["id"]) }, before: rowsBefore,
    ddl: "alter table t alter column v type bigint using v + 1", after: rowsAfter, owner: "rewrite_partitioned_owner",
  });
});

test("ADD COLUMN ... DEFAULT now() (no rewrite: a missing value, each server its own now())", async () => {
  const env = await freshEnv("rewrite_add_now");
  await rewrittenOutside(env, {
    create: plain, tables: ["t"], before: rowsBefore, ddl: "alter table t add column c timestamptz default now()",
    after: "insert into t (id, v, s) values (51, 51, 'row 51')",
    targetDdl: "alter table t add column c timestamptz default now() - interval '1 day'",
  });
});

test("ADD COLUMN ... DEFAULT random() (a rewrite)", async () => {
  const env = await freshEnv("rewrite_add_random");
  await rewrittenOutside(env, {
    create: plain, tables: ["t"], before: rowsBefore, ddl: "alter table t add column r float8 default random()",
    after: "insert into t (id, v, s) values (51, 51, 'row 51')",
  });
});

test("ADD COLUMN serial, and an identity column", async () => {
  const env = await freshEnv("rewrite_add_serial");
  await rewrittenOutside(env, {
    // Rows updated: each server numbers them in its own physical order.
    create: plain, tables: ["t"], before: `${rowsBefore}; update t set s = s || '!' where id % 3 = 0`,
    ddl: "alter table t add column q serial, add column i int generated always as identity",
    after: "update t set v = -v where id % 4 = 0",
    targetDdl: "alter table t add column i int generated always as identity (start with 100), add column q serial",
  });
});

test("an inheritance child replicated itself, rewritten by ALTER TABLE of its parent (the DDL event trigger sees only the parent)", { skip: SOURCE_MAJOR < 13 && "an inheritance child cannot be replicated before PostgreSQL 13 (transition tables)" }, async () => {
  const env = await freshEnv("rewrite_inherited");
  await rewrittenOutside(env, {
    create: "create table par (id int primary key, v int, s text); create table t (primary key (id)) inherits (par)", tables: ["t"],
    before: rowsBefore, ddl: "alter table par alter column v type int using v * 2", after: rowsAfter,
  });
});

test("ALTER COLUMN ... SET EXPRESSION of a stored generated column (PostgreSQL 17)", { skip: SOURCE_MAJOR < 17 && "SET EXPRESSION comes with PostgreSQL 17" }, async () => {
  const env = await freshEnv("rewrite_set_expression");
  await rewrittenOutside(env, {
    create: "create table t (id int primary key, v int, s text, g int generated always as (v * 2) stored)", tables: ["t"],
    before: rowsBefore, ddl: "alter table t alter column g set expression as (v * 3)", after: rowsAfter,
  });
});
