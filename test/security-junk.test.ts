// Random junk for every argument of every SQL API function (property-based, with
// fast-check): each call either succeeds or fails with a clean SQL error (a SQLSTATE,
// never an internal error, never a syntax error of dbsync's own generated SQL), the
// session stays usable, and afterwards dbsync's catalog is still whole: active tables
// have their capture triggers and functions, removed ones have none, every group has
// its queue partitions, slots, sequence and current tick, subscriptions and their
// tables agree, and the status views answer for every subscription.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { Client } from "pg";
import { Env, compat, freshEnv, parentKey, partitionKey, rows, value } from "./helpers";

let env: Env;
let junk: Client;

before(async () => {
  env = await freshEnv("security_junk");
  await env.source.query(`
    create table t (id int primary key);
    insert into t values (42);
    create table a (id int primary key, v text);
    create table b (id int primary key, u int not null unique, v text);
    create table nokey (x int);
    create table uq (u text not null, w int);
    create unique index on uq (u);
    create view v as select * from a;
    create sequence s;
    create table parted (id int not null, k int not null${parentKey("id, k", "source")}) partition by list (k);
    create table parted_1 partition of parted${partitionKey("id, k", "source")} for values in (1);
    create table ${'"Order Items"'} (${'"select"'} int primary key, ${'"a""b"'} text);
    insert into a select g, 'v' || g from generate_series(1, 5) g;
  `);
  await env.source.query("select dbsync.add_table('a', 'g1')");
  await env.source.query("select dbsync.add_subscription('s1', 'g1', $1, false)", [env.targetUrl]);
  junk = new Client({ connectionString: env.sourceUrl });
  junk.on("error", () => undefined);
  await junk.connect();
  // A generous limit for every call; wait_for_sync gets a short one (see below).
  await junk.query("set statement_timeout = 10000");
});

after(async () => {
  await junk?.end().catch(() => undefined);
});

// ---- arbitraries --------------------------------------------------------------

const KNOWN_NAMES = [
  null, "", " ", "\t", "g1", "g2", "s1", "s2", "default", "'", '"', "\\", ";", "%s", "%I", "%1$s", "$1", "$$", "$f$",
  "a", "public.a", "Order Items", "ünïcödé 🎉", `x"; drop table t; --`, `g'; select pg_sleep(10); --`, `s\\"; drop`,
  "null", "NULL", "true",
];
const junkText: fc.Arbitrary<string | null> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KNOWN_NAMES) },
  { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) }, // any code point: NUL, lone surrogates...
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  {
    weight: 2,
    arbitrary: fc.string({ unit: fc.constantFrom("'", '"', "\\", ";", "-", "$", "%", " ", "\n", "\0", "(", ")", "a", "1"), maxLength: 24 }),
  },
  { weight: 1, arbitrary: fc.integer({ min: 64, max: 20000 }).map((n) => "x".repeat(n)) },
);
// Names that exist (or will) half the time, so calls reach deep states, not just "unknown ...".
const groupName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("g1", "g2", "default", `g'; select pg_sleep(10); --`, "ünïcödé 🎉") },
  { weight: 2, arbitrary: junkText },
);
const subName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("s1", "s2", `s\\"; drop`, "%s") },
  { weight: 2, arbitrary: junkText },
);
const regclassish: fc.Arbitrary<string | null> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("a", "b", "uq", "parted", '"Order Items"', "nokey") },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      null, "a", "public.a", "b", "nokey", "uq", "v", "s", "parted", "parted_1", "t", '"Order Items"', '"a"', '"A"',
      "dbsync.groups", "dbsync.events", "dbsync.subscriptions", "pg_class", "pg_catalog.pg_proc", "information_schema.tables",
      "0", "1259", "-1", "4294967295", "4294967296", "99999", "a.b.c.d", "pg_temp.x", "a;", "a b", "", `"unterminated`,
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 70000 }).map(String) }, // random OIDs: indexes, toast, nothing
  { weight: 2, arbitrary: junkText },
);
const tableName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("a", "b", "uq", "parted", '"Order Items"') },
  { weight: 2, arbitrary: regclassish },
);
const bool: fc.Arbitrary<boolean | string | null> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(true, false, null) },
  { weight: 1, arbitrary: fc.constantFrom("yes", "maybe", "", "t", "2") },
);
const shortInterval: fc.Arbitrary<string | null> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("0", "10 ms", "-1 s", "-infinity", "1 microsecond", "0.05", "-1000 years", "00:00:00.01") },
  { weight: 2, arbitrary: fc.integer({ min: -100000, max: 100 }).map((n) => `${n} ms`) },
  { weight: 2, arbitrary: junkText }, // mostly not an interval; "1" is one second
  { weight: 1, arbitrary: fc.constantFrom(null, "infinity", "1 year", "1e308 s", "P1Y", "@ 1 hour ago") },
);
const keyColumns: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.constantFrom(["u"], ["id", "u"], ["select"], ['a"b', "select"]) },
  { weight: 1, arbitrary: fc.constant([]) },
  { weight: 3, arbitrary: fc.array(fc.oneof(fc.constantFrom("id", "u", "k", "ID", "x", "select", 'a"b', null, ""), junkText), { maxLength: 3 }) },
  { weight: 1, arbitrary: junkText }, // not an array literal (or one: "{id}")
);
const benignDdl: fc.Arbitrary<string | null> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "alter table a add column if not exists extra text",
      "alter table b add column if not exists \"%3$s\" text",
      "comment on table a is 'x''; drop table t; --'",
      "create table if not exists junk_created (id int primary key)",
      "create index if not exists a_v on a (v)",
      "select 1",
      ";",
      "commit",
      "begin",
      "set local work_mem = '8MB'",
    ),
  },
  { weight: 3, arbitrary: junkText },
);

interface Spec {
  fn: string;
  signature: string;
  args: fc.Arbitrary<unknown>[];
  sql: string;
}

const SPECS: Spec[] = [
  { fn: "create_group", signature: "create_group(text)", args: [groupName], sql: "select dbsync.create_group($1::text)" },
  {
    fn: "add_table",
    signature: "add_table(regclass,text,text[])",
    args: [tableName, groupName, keyColumns],
    sql: "select dbsync.add_table($1::regclass, $2::text, $3::text[])",
  },
  { fn: "remove_table", signature: "remove_table(regclass)", args: [tableName], sql: "select dbsync.remove_table($1::regclass)" },
  {
    fn: "add_subscription",
    signature: "add_subscription(text,text,text,boolean)",
    args: [subName, groupName, junkText, bool],
    sql: "select dbsync.add_subscription($1::text, $2::text, $3::text, $4::boolean)",
  },
  { fn: "drop_subscription", signature: "drop_subscription(text)", args: [subName], sql: "select dbsync.drop_subscription($1::text)" },
  { fn: "pause", signature: "pause(text)", args: [subName], sql: "select dbsync.pause($1::text)" },
  { fn: "resume", signature: "resume(text)", args: [subName], sql: "select dbsync.resume($1::text)" },
  {
    fn: "resync_table",
    signature: "resync_table(text,regclass)",
    args: [subName, tableName],
    sql: "select dbsync.resync_table($1::text, $2::regclass)",
  },
  {
    fn: "wait_for_sync",
    signature: "wait_for_sync(text,interval)",
    args: [subName, shortInterval],
    sql: "select dbsync.wait_for_sync($1::text, $2::interval)",
  },
  {
    fn: "verify_table",
    signature: "verify_table(text,regclass,boolean)",
    args: [subName, tableName, bool],
    sql: "select dbsync.verify_table($1::text, $2::regclass, $3::boolean)",
  },
  { fn: "execute_ddl", signature: "execute_ddl(text,text)", args: [groupName, benignDdl], sql: "select dbsync.execute_ddl($1::text, $2::text)" },
  // The same with plausible arguments, to reach their deeper states as well.
  {
    fn: "resync_table",
    signature: "resync_table(text,regclass)",
    args: [fc.constantFrom("s1", "s2"), fc.constantFrom("a", "b", "parted")],
    sql: "select dbsync.resync_table($1::text, $2::regclass)",
  },
  {
    fn: "verify_table",
    signature: "verify_table(text,regclass,boolean)",
    args: [fc.constantFrom("s1", "s2"), fc.constantFrom("a", "b", "parted"), bool],
    sql: "select dbsync.verify_table($1::text, $2::regclass, $3::boolean)",
  },
  {
    fn: "add_sequence",
    signature: "add_sequence(regclass,text)",
    args: [regclassish, groupName],
    sql: "select dbsync.add_sequence($1::regclass, $2::text)",
  },
];

// ---- checks ---------------------------------------------------------------------

interface PgError extends Error {
  code?: string;
  where?: string;
}

/** Why an error is not a clean SQL error, or undefined when it is. */
function unclean(spec: Spec, err: PgError): string | undefined {
  const code = err.code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return `no SQLSTATE (${err.name}: ${err.message})`;
  if (code.startsWith("XX") || code.startsWith("58")) return `internal error ${code}`;
  if (code.startsWith("08") || code.startsWith("57P")) return `connection error ${code}`;
  if (code === "57014" && spec.fn !== "wait_for_sync") return "statement timeout";
  if (code === "P0001") return "RAISE without an errcode";
  const where = err.where ?? "";
  // Bad input for a parameter's type (regclass, interval, boolean, text[], encoding).
  if (where === "" || where.startsWith("unnamed portal parameter")) return undefined;
  // dbsync's own error, raised on purpose.
  if (/^PL\/pgSQL function [^\n]* at RAISE(\n|$)/.test(where)) return undefined;
  // The user's own DDL (execute_ddl) may be anything.
  if (spec.fn === "execute_ddl" && /^PL\/pgSQL function dbsync\.execute_ddl\(text,text\) line \d+ at EXECUTE$/.test(where)) return undefined;
  // Otherwise SQL that dbsync built or ran failed to parse or to resolve a name.
  if (["42601", "42602", "42622", "42702", "42703", "42704", "42725", "42804", "42809", "42883", "42P01", "42P02", "42P18"].includes(code)) {
    return `dbsync's SQL failed (${code})`;
  }
  return undefined;
}

const INVARIANTS: [string, string][] = [
  [
    "an active table lacks its capture function or triggers",
    `select t.table_id, t.relid::regclass::text from dbsync.tables t
      where t.removed_at is null and (
        to_regprocedure(format('dbsync.%I()', 'capture_' || t.table_id)) is null
        or (not t.partitioned and (select count(*) from pg_trigger g where g.tgrelid = t.relid
              and g.tgname in ('dbsync_capture_ins', 'dbsync_capture_upd', 'dbsync_capture_del', 'dbsync_capture_trunc')) <> 4)
        or (t.partitioned and (select count(*) from pg_trigger g where g.tgrelid = t.relid
              and g.tgname in ('dbsync_capture_row', 'dbsync_capture_trunc')) <> 2))`,
  ],
  [
    "a removed table still has a capture function or triggers",
    `select t.table_id from dbsync.tables t
      where t.removed_at is not null
        and not exists (select from dbsync.tables t2 where t2.relid = t.relid and t2.removed_at is null)
        and (to_regprocedure(format('dbsync.%I()', 'capture_' || t.table_id)) is not null
             or exists (select from pg_trigger g where g.tgrelid = t.relid and g.tgname like 'dbsync\\_capture\\_%'))`,
  ],
  [
    "a capture trigger on a relation that is not captured",
    compat(`select g.tgrelid::regclass::text, g.tgname from pg_trigger g
      where g.tgname like 'dbsync\\_capture\\_%' and not g.tgisinternal and g.tgparentid = 0
        and not exists (select from dbsync.tables t
                        where t.removed_at is null
                          and (g.tgrelid = t.relid or g.tgrelid in (select relid from pg_partition_tree(t.relid))))`),
  ],
  [
    "a group without its queue partition, 3 slots, sequence or current tick",
    `select g.group_id from dbsync.groups g
      where to_regclass(format('dbsync.%I', 'events_' || g.group_id)) is null
         or not exists (select from pg_inherits i where i.inhrelid = to_regclass(format('dbsync.%I', 'events_' || g.group_id))
                                                   and i.inhparent = 'dbsync.events'::regclass)
         or (select count(*) from pg_inherits i where i.inhparent = to_regclass(format('dbsync.%I', 'events_' || g.group_id))) <> 3
         or (select count(*) from dbsync.queue_slots q where q.group_id = g.group_id) <> 3
         or to_regclass(format('dbsync.%I', 'events_seq_' || g.group_id)) is null
         or not exists (select from dbsync.ticks k where k.group_id = g.group_id and k.tick_id = g.last_tick_id)`,
  ],
  [
    "a queue partition or sequence of no group",
    `select c.relname from pg_class c
      where c.relnamespace = 'dbsync'::regnamespace and c.relname ~ '^events_(seq_)?[0-9]+$'
        and not exists (select from dbsync.groups g where substring(c.relname from '[0-9]+$')::int = g.group_id)`,
  ],
  [
    "a subscription lacks a table of its group, or has one of another group",
    `select s.name, t.table_id from dbsync.subscriptions s
       join dbsync.tables t on t.group_id = s.group_id and t.removed_at is null
      where not exists (select from dbsync.subscription_tables st where st.sub_id = s.sub_id and st.table_id = t.table_id)
     union all
     select s.name, st.table_id from dbsync.subscription_tables st
       join dbsync.subscriptions s using (sub_id) join dbsync.tables t using (table_id)
      where t.group_id <> s.group_id`,
  ],
  [
    "orphan subscription_tables or verifications",
    `select st.sub_id, st.table_id from dbsync.subscription_tables st
      where not exists (select from dbsync.subscriptions s where s.sub_id = st.sub_id)
         or not exists (select from dbsync.tables t where t.table_id = st.table_id)`,
  ],
  [
    "a subscription stands on a tick that does not exist (it would vanish from dbsync.status)",
    `select s.name from dbsync.subscriptions s
      where not exists (select from dbsync.ticks k where k.group_id = s.group_id and k.tick_id = s.position_tick)`,
  ],
  [
    "a replicated sequence that is not a sequence",
    `select q.relid from dbsync.sequences q where not exists (select from pg_class c where c.oid = q.relid and c.relkind = 'S')`,
  ],
  ["the canary is gone or something was injected", `select 1 where to_regclass('public.t') is null or exists (select from pg_class where relname = 'pwned')`],
];

async function assertInvariants(context: string) {
  for (const [what, sql] of INVARIANTS) {
    const bad = await rows(env.source, sql);
    assert.deepEqual(bad, [], `${what} after ${context}`);
  }
  const subs = await value<number>(env.source, "select count(*)::int from dbsync.subscriptions");
  assert.equal(await value<number>(env.source, "select count(*)::int from dbsync.status"), subs, `dbsync.status misses subscriptions after ${context}`);
  await env.source.query("select * from dbsync.table_status");
}

/** Each run starts from at least one live subscription, so junk reaches its deeper states too. */
async function baseline() {
  await env.source.query("select dbsync.create_group('g1') where not exists (select from dbsync.groups where name = 'g1')");
  await env.source.query(
    "select dbsync.add_table('a', 'g1') where not exists (select from dbsync.tables where relid = 'a'::regclass and removed_at is null)",
  );
  await env.source.query(
    "select dbsync.add_subscription('s1', 'g1', $1, false) where not exists (select from dbsync.subscriptions where name = 's1')",
    [env.targetUrl],
  );
  await env.source.query("select dbsync.resume('s1')");
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 60)}...(${s.length} chars)` : s;
}

test("random junk to every SQL API function gives only clean SQL errors and never a broken catalog", async () => {
  const present = new Set(
    (await rows<{ sig: string }>(env.source, "select p.oid::regprocedure::text as sig from pg_proc p where p.pronamespace = 'dbsync'::regnamespace")).map(
      (r) => r.sig.replace(/^dbsync\./, "").replace(/ /g, ""),
    ),
  );
  const specs = SPECS.filter((s) => present.has(s.signature));
  const missing = SPECS.filter((s) => !present.has(s.signature)).map((s) => s.signature);
  if (missing.length) console.log(`# not in this schema, skipped: ${missing.join(", ")}`);
  assert.ok(specs.length >= 9, "the core API functions are missing");

  // The spec goes by index: fast-check prints counterexamples, and a spec holds arbitraries.
  const call = fc.oneof(...specs.map((s, i) => fc.tuple(fc.constant(i), fc.tuple(...s.args))));
  const problems = new Map<string, string>();
  const tally = new Map<string, number>();
  let calls = 0;
  const started = Date.now();

  await fc.assert(
    fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 6 }), async (seq) => {
      await baseline();
      const done: string[] = [];
      for (const [i, args] of seq) {
        const spec = specs[i];
        calls++;
        let outcome = "ok";
        try {
          // wait_for_sync may get a long (or NULL = 60 s) timeout: the server cuts it short.
          if (spec.fn === "wait_for_sync") await junk.query("set statement_timeout = 1500");
          const r = await junk.query(spec.sql, args).finally(async () => {
            if (spec.fn === "wait_for_sync") await junk.query("set statement_timeout = 10000");
          });
          if (spec.fn === "add_sequence" && r.rows[0] && Object.values(r.rows[0])[0] === null) {
            problems.set(`${spec.fn}: returned NULL`, `${spec.fn}(${args.map(show).join(", ")}) succeeded and returned NULL`);
          }
        } catch (e) {
          const err = e as PgError;
          outcome = err.code ?? "no code";
          const why = unclean(spec, err);
          if (why) {
            const key = `${spec.fn}: ${why}: ${err.message.slice(0, 100)}`;
            if (!problems.has(key)) problems.set(key, `${spec.fn}(${args.map(show).join(", ")}) -> ${err.code} ${err.message} [${err.where ?? ""}]`);
          }
        }
        const k = `${spec.fn} ${outcome}`;
        tally.set(k, (tally.get(k) ?? 0) + 1);
        done.push(`${spec.fn}(${args.map(show).join(", ")}) -> ${outcome}`);
        // The session is still usable (no lingering aborted transaction either).
        assert.equal((await junk.query("select 1 as one")).rows[0].one, 1, `session broken after ${done.at(-1)}`);
      }
      await assertInvariants(done.join("; "));
    }),
    { numRuns: 200, endOnFailure: true },
  );

  const summary = [...tally.entries()].sort().map(([k, n]) => `${k}: ${n}`);
  console.log(`# ${calls} calls in ${((Date.now() - started) / 1000).toFixed(1)} s\n# ${summary.join("\n# ")}`);
  assert.deepEqual([...problems.values()], [], "unclean errors");
});
