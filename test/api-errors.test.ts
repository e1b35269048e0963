// The SQL API on the source: every bad input gets a clear error (SQLSTATE, a message
// naming the object, a hint saying what to do) and changes nothing; the good inputs
// do what DESIGN.md says, as seen through dbsync.status and dbsync.table_status.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { Pool } from "pg";
import { Env, freshEnv, parentKey, partitionKey, rows, sqlError, value } from "./helpers";

let env: Env;
let src: Pool;

before(async () => {
  env = await freshEnv("api_errors");
  src = env.source;
});

/** Everything a failed call must leave as it was. */
async function state(): Promise<Record<string, unknown>> {
  const [r] = await rows(
    src,
    `select (select count(*) from dbsync.tables)::int as tables,
            (select count(*) from dbsync.tables where removed_at is null)::int as live_tables,
            (select count(*) from dbsync.subscriptions)::int as subscriptions,
            (select count(*) from dbsync.groups)::int as groups,
            (select count(*) from dbsync.subscription_tables)::int as subscription_tables,
            (select count(*) from dbsync.shapes)::int as shapes,
            (select count(*) from pg_trigger where tgname like 'dbsync\\_capture\\_%')::int as triggers,
            (select count(*) from pg_proc where pronamespace = 'dbsync'::regnamespace)::int as functions,
            (select count(*) from pg_class where relnamespace = 'dbsync'::regnamespace)::int as relations,
            (select coalesce(json_agg(json_build_object('name', name, 'paused', paused) order by name), '[]')::text
               from dbsync.subscriptions) as subs`,
  );
  return r;
}

interface Expect {
  code: string;
  /** Substrings the message must contain (the objects it is about). */
  names: string[];
  /** Set to false where no hint is expected. */
  hint?: boolean;
}

async function rejects(sql: string, params: unknown[], expect: Expect) {
  const before = await state();
  const err = await sqlError(src, sql, params);
  assert.equal(err.code, expect.code, `${sql}: SQLSTATE ${err.code} (${err.message})`);
  for (const n of expect.names) {
    assert.ok(err.message.includes(n), `${sql}: message "${err.message}" should name ${n}`);
  }
  if (expect.hint !== false) {
    assert.ok(err.hint && err.hint.trim().length > 10, `${sql}: "${err.message}" has no useful hint (${err.hint})`);
  }
  assert.deepEqual(await state(), before, `${sql} changed something`);
  return err;
}

test("add_table refuses tables it cannot capture, with a hint, and changes nothing", async () => {
  await src.query(`
    create table public.nokey (id int, v text);
    create table public.nullable_key (a int unique, b int not null, v text);
    create table public.not_unique (a int not null, b int not null, v text, unique (a, b));
    create table public.partial_unique (a int not null, v text);
    create unique index on public.partial_unique (a) where v is not null;
    create table public.expr_unique (a text not null);
    create unique index on public.expr_unique (lower(a));
    create table public.grouped (id int primary key, v text);
    create view public.a_view as select * from public.grouped;
    create materialized view public.a_matview as select * from public.grouped;
    create foreign data wrapper dummy;
    create server s foreign data wrapper dummy;
    create foreign table public.a_foreign (id int, v text) server s;
    create table public.parted (id int not null, k int not null${parentKey("id, k", "source")}) partition by list (k);
    create table public.parted_1 partition of public.parted${partitionKey("id, k", "source")} for values in (1);
  `);
  await value(src, "select dbsync.add_table('public.grouped', 'g1')");
  await value(src, "select dbsync.create_group('g2')");

  // No key.
  const noKey = await rejects("select dbsync.add_table('public.nokey')", [], {
    code: "42P16",
    names: ["public.nokey", "primary key"],
  });
  assert.match(noKey.hint!, /add primary key.*key_columns.*leave the table out/);
  // A unique index on NOT NULL columns: the hint names them.
  await src.query("create table public.nokey_uniq (a int, b int not null, c text not null, unique (b, c), unique (a))");
  const named = await rejects("select dbsync.add_table('public.nokey_uniq')", [], { code: "42P16", names: ["public.nokey_uniq"] });
  assert.match(named.hint!, /or pass key_columns => array\['b', 'c'\] \(a unique index on NOT NULL columns covers them\)/);
  await rejects("select dbsync.add_table('public.nokey', 'g1', null)", [], { code: "42P16", names: ["public.nokey"] });

  // key_columns that cannot identify a row.
  const nullable = await rejects("select dbsync.add_table('public.nullable_key', key_columns => array['a'])", [], {
    code: "42P16",
    names: ["public.nullable_key", '"a"', "nullable"],
  });
  assert.match(nullable.hint!, /not null/i);
  await rejects("select dbsync.add_table('public.nullable_key', key_columns => array['b', 'nope'])", [], {
    code: "42703",
    names: ["public.nullable_key", '"nope"'],
  });
  await rejects("select dbsync.add_table('public.not_unique', key_columns => array['a'])", [], {
    code: "42P16",
    names: ["public.not_unique", "unique"],
  });
  await rejects("select dbsync.add_table('public.partial_unique', key_columns => array['a'])", [], {
    code: "42P16",
    names: ["public.partial_unique"],
  });
  await rejects("select dbsync.add_table('public.expr_unique', key_columns => array['a'])", [], {
    code: "42P16",
    names: ["public.expr_unique"],
  });
  await rejects("select dbsync.add_table('public.not_unique', key_columns => array[]::text[])", [], {
    code: "22023",
    names: ["public.not_unique", "key_columns"],
  });
  await rejects("select dbsync.add_table('public.not_unique', key_columns => array['a', null])", [], {
    code: "22023",
    names: ["public.not_unique", "key_columns"],
  });

  // Already added: in another group, and in the same one.
  const other = await rejects("select dbsync.add_table('public.grouped', 'g2')", [], {
    code: "42710",
    names: ["public.grouped", '"g1"'],
  });
  assert.match(other.hint!, /remove_table/);
  // The same call again is no error: a NOTICE, the same id, nothing changed.
  {
    const before = await state();
    const c = await src.connect();
    const notices: string[] = [];
    c.on("notice", (n) => notices.push(n.message ?? ""));
    try {
      const id = await value(c, "select dbsync.add_table('public.grouped', 'g1')");
      assert.equal(id, await value(c, "select table_id from dbsync.tables where relid = 'public.grouped'::regclass"));
      await value(c, "select dbsync.add_table('public.grouped', 'g1', key_columns => array['id'])");
    } finally {
      c.release();
    }
    assert.match(notices.join("\n"), /add_table: public\.grouped is already replicated in group "g1"; nothing changed/);
    assert.deepEqual(await state(), before);
  }
  // Same group, another key: refused, with the way to change keys.
  const otherKey = await rejects("select dbsync.add_table('public.grouped', 'g1', key_columns => array['id', 'v'])", [], {
    code: "42710",
    names: ["public.grouped", '"g1"', "(id)"],
  });
  assert.match(otherKey.hint!, /remove_table/);
  // ...and a new group named in the failed call is not left behind.
  await rejects("select dbsync.add_table('public.grouped', 'brand_new')", [], { code: "42710", names: ["public.grouped"] });
  assert.equal(await value(src, "select count(*)::int from dbsync.groups where name = 'brand_new'"), 0);

  // Not an ordinary or partitioned table.
  await rejects("select dbsync.add_table('public.a_view')", [], { code: "42809", names: ["public.a_view", "view"] });
  await rejects("select dbsync.add_table('public.a_matview')", [], {
    code: "42809",
    names: ["public.a_matview", "materialized view"],
  });
  await rejects("select dbsync.add_table('public.a_foreign')", [], {
    code: "42809",
    names: ["public.a_foreign", "foreign table"],
  });
  await src.query("create sequence public.a_seq; create index grouped_v_idx on public.grouped (v)");
  await rejects("select dbsync.add_table('public.a_seq')", [], { code: "42809", names: ["public.a_seq", "sequence"] });
  await rejects("select dbsync.add_table('public.grouped_v_idx')", [], { code: "42809", names: ["public.grouped_v_idx"] });
  const part = await rejects("select dbsync.add_table('public.parted_1')", [], {
    code: "42809",
    names: ["public.parted_1", "partition of public.parted"],
  });
  assert.match(part.hint!, /partitioned table/);
  await rejects("select dbsync.add_table('dbsync.groups')", [], { code: "42809", names: ["dbsync.groups"] });
  await rejects("select dbsync.add_table(null)", [], { code: "22023", names: ["table"] });

  // A temporary table (one session: it only exists there).
  const c = await src.connect();
  try {
    await c.query("create temp table tmp_t (id int primary key)");
    const before = await state();
    const err = await sqlError(c, "select dbsync.add_table('tmp_t')");
    assert.equal(err.code, "42809", err.message);
    assert.match(err.message, /tmp_t/);
    assert.match(err.message, /temporary/);
    assert.ok(err.hint, `no hint: ${err.message}`);
    assert.deepEqual(await state(), before);
  } finally {
    c.release();
  }

  // An empty group name.
  await src.query("create table public.fresh (id int primary key)");
  await rejects("select dbsync.add_table('public.fresh', '')", [], { code: "22023", names: ["group name"] });
  await rejects("select dbsync.add_table('public.fresh', '  ')", [], { code: "22023", names: ["group name"] });
  await rejects("select dbsync.add_table('public.fresh', null)", [], { code: "22023", names: ["group name"] });
  // A table that does not exist: PostgreSQL's own regclass error.
  await rejects("select dbsync.add_table('public.no_such_table')", [], { code: "42P01", names: ["public.no_such_table"], hint: false });
});

test("create_group, add_subscription and the subscription calls reject bad names with a hint", async () => {
  await value(src, "select dbsync.create_group('sg')");
  await value(src, "select dbsync.add_subscription('s_exists', 'sg', $1)", [env.targetUrl]);

  const dupGroup = await rejects("select dbsync.create_group('sg')", [], { code: "42710", names: ['"sg"', "already exists"] });
  assert.ok(dupGroup.hint);
  await rejects("select dbsync.create_group('')", [], { code: "22023", names: ["group name"] });
  await rejects("select dbsync.create_group('   ')", [], { code: "22023", names: ["group name"] });
  await rejects("select dbsync.create_group(null)", [], { code: "22023", names: ["group name"] });

  const unknownGroup = await rejects("select dbsync.add_subscription('s_new', 'no_such_group', $1)", [env.targetUrl], {
    code: "42704",
    names: ['"no_such_group"'],
  });
  assert.match(unknownGroup.hint!, /create_group|add_table/);
  const dupSub = await rejects("select dbsync.add_subscription('s_exists', 'sg', $1)", [env.targetUrl], {
    code: "42710",
    names: ['"s_exists"', "already exists"],
  });
  assert.match(dupSub.hint!, /drop_subscription/);
  await rejects("select dbsync.add_subscription('', 'sg', $1)", [env.targetUrl], { code: "22023", names: ["subscription name"] });
  await rejects("select dbsync.add_subscription(null, 'sg', $1)", [env.targetUrl], { code: "22023", names: ["subscription name"] });
  await rejects("select dbsync.add_subscription('s_new', '', $1)", [env.targetUrl], { code: "22023", names: ["group name"] });
  await rejects("select dbsync.add_subscription('s_new', 'sg', '')", [], { code: "22023", names: ["target_conninfo"] });
  await rejects("select dbsync.add_subscription('s_new', 'sg', '  ')", [], { code: "22023", names: ["target_conninfo"] });
  await rejects("select dbsync.add_subscription('s_new', 'sg', null)", [], { code: "22023", names: ["target_conninfo"] });
  await rejects("select dbsync.add_subscription('s_new', 'sg', $1, null)", [env.targetUrl], { code: "22023", names: ["copy_data"] });

  for (const fn of ["pause", "resume", "drop_subscription"]) {
    const err = await rejects(`select dbsync.${fn}('no_such_sub')`, [], { code: "42704", names: ['"no_such_sub"'] });
    assert.match(err.hint!, /dbsync\.status/);
  }

  await src.query("create table public.never_added (id int primary key)");
  const notAdded = await rejects("select dbsync.remove_table('public.never_added')", [], {
    code: "42704",
    names: ["public.never_added"],
  });
  assert.match(notAdded.hint!, /table_status/);
});

test("happy path: groups, tables, subscriptions as seen in dbsync.status and dbsync.table_status", async () => {
  // create_group returns the id and makes the group's queue.
  const gid = await value<number>(src, "select dbsync.create_group('orders')");
  assert.equal(await value(src, "select name from dbsync.groups where group_id = $1", [gid]), "orders");
  assert.equal(await value(src, "select to_regclass(format('dbsync.events_%s', $1::int)) is not null", [gid]), true);

  // add_table with the default group: 'default' is created on the way.
  assert.equal(await value(src, "select count(*)::int from dbsync.groups where name = 'default'"), 0);
  await src.query(`
    create table public.items (id int primary key, v text);
    create table public.keyed (a int not null, b int not null, v text);
    create unique index on public.keyed (a, b);
    create table public.later (id bigint primary key, v text);
  `);
  await value(src, "select dbsync.add_table('public.items')");
  const [items] = await rows(
    src,
    `select g.name as group_name, t.key_columns from dbsync.tables t join dbsync.groups g using (group_id)
     where t.relid = 'public.items'::regclass and t.removed_at is null`,
  );
  assert.deepEqual(items, { group_name: "default", key_columns: ["id"] });

  // key_columns over NOT NULL columns covered by a unique index.
  await value(src, "select dbsync.add_table('public.keyed', 'default', array['a', 'b'])");
  assert.deepEqual(
    await value(src, "select key_columns from dbsync.tables where relid = 'public.keyed'::regclass and removed_at is null"),
    ["a", "b"],
  );

  // Two subscriptions of the group: one copies, one does not.
  await value(src, "select dbsync.add_subscription('sub_copy', 'default', $1)", [env.targetUrl]);
  await value(src, "select dbsync.add_subscription('sub_nocopy', 'default', $1, copy_data => false)", [env.targetUrl]);

  const status = async () =>
    rows<Record<string, any>>(src, "select * from dbsync.status where group_name = 'default' order by name");
  const st = await status();
  assert.deepEqual(
    st.map((r) => r.name),
    ["sub_copy", "sub_nocopy"],
  );
  for (const col of [
    "name",
    "group_name",
    "state",
    "paused",
    "backlog_events",
    "lag_seconds",
    "last_applied_tick",
    "last_applied_at",
    "rows_per_second",
    "last_error",
    "last_error_at",
  ]) {
    assert.ok(col in st[0], `dbsync.status has no column ${col}`);
  }
  assert.equal(st[0].state, "copying");
  assert.equal(st[1].state, "streaming");
  assert.equal(st[0].paused, false);
  assert.equal(st[0].last_error, null);

  const tableStates = async (sub: string) =>
    Object.fromEntries(
      (
        await rows<{ table_name: string; state: string }>(
          src,
          "select table_name, state from dbsync.table_status where subscription = $1 order by table_name",
          [sub],
        )
      ).map((r) => [r.table_name, r.state]),
    );
  assert.deepEqual(await tableStates("sub_copy"), { "public.items": "copying", "public.keyed": "copying" });
  assert.deepEqual(await tableStates("sub_nocopy"), { "public.items": "streaming", "public.keyed": "streaming" });

  // A table added while subscriptions exist: copied by one, streamed by the other.
  await value(src, "select dbsync.add_table('public.later')");
  assert.equal((await tableStates("sub_copy"))["public.later"], "copying");
  assert.equal((await tableStates("sub_nocopy"))["public.later"], "streaming");

  // Backlog grows with captured rows; lag is 0 with nothing pending.
  const backlog = async () =>
    rows<{ name: string; backlog: number; lag: number }>(
      src,
      "select name, backlog_events::int as backlog, lag_seconds as lag from dbsync.status where group_name = 'default' order by name",
    );
  assert.deepEqual(
    (await backlog()).map((r) => [r.backlog, r.lag]),
    [
      [0, 0],
      [0, 0],
    ],
  );
  // (Events: a statement's keys are one event, up to 1,000 of them: README Limits.)
  for (const g of [1, 2, 3]) await src.query("insert into public.items values ($1, 'x')", [g]);
  assert.deepEqual(
    (await backlog()).map((r) => r.backlog),
    [3, 3],
  );
  await src.query("insert into public.later values (1, 'a'), (2, 'b')"); // one event
  await src.query("update public.items set v = 'y' where id = 1");
  const b = await backlog();
  assert.deepEqual(
    b.map((r) => r.backlog),
    [5, 5],
  );
  assert.ok(b.every((r) => r.lag >= 0));

  // pause / resume.
  await value(src, "select dbsync.pause('sub_copy')");
  let s = await status();
  assert.deepEqual(
    s.map((r) => [r.name, r.paused, r.state]),
    [
      ["sub_copy", true, "paused"],
      ["sub_nocopy", false, "streaming"],
    ],
  );
  await value(src, "select dbsync.pause('sub_copy')"); // idempotent
  await value(src, "select dbsync.resume('sub_copy')");
  s = await status();
  assert.deepEqual(
    s.map((r) => [r.name, r.paused, r.state]),
    [
      ["sub_copy", false, "copying"],
      ["sub_nocopy", false, "streaming"],
    ],
  );

  // remove_table: triggers and capture function gone, not in table_status, no more capture.
  const laterId = await value<number>(
    src,
    "select table_id from dbsync.tables where relid = 'public.later'::regclass and removed_at is null",
  );
  assert.ok(
    (await value<number>(src, "select count(*)::int from pg_trigger where tgrelid = 'public.later'::regclass")) > 0,
  );
  await value(src, "select dbsync.remove_table('public.later')");
  assert.equal(await value(src, "select count(*)::int from pg_trigger where tgrelid = 'public.later'::regclass"), 0);
  assert.equal(await value(src, "select to_regproc(format('dbsync.capture_%s', $1::int))", [laterId]), null);
  assert.equal(await value(src, "select count(*)::int from dbsync.table_status where table_name = 'public.later'"), 0);
  assert.equal(await value(src, "select removed_at is not null from dbsync.tables where table_id = $1", [laterId]), true);
  const seqBefore = (await backlog())[0].backlog;
  await src.query("insert into public.later values (3, 'c')");
  assert.equal((await backlog())[0].backlog, seqBefore, "a removed table is still captured");
  // ...and a second remove is an error.
  await rejects("select dbsync.remove_table('public.later')", [], { code: "42704", names: ["public.later"] });
  // It can be added again.
  await value(src, "select dbsync.add_table('public.later')");
  assert.equal((await tableStates("sub_copy"))["public.later"], "copying");
  assert.equal(await value(src, "select count(*)::int from pg_trigger where tgrelid = 'public.later'::regclass"), 8);

  // drop_subscription: gone from status and table_status.
  await value(src, "select dbsync.drop_subscription('sub_nocopy')");
  assert.deepEqual(
    (await status()).map((r) => r.name),
    ["sub_copy"],
  );
  assert.equal(await value(src, "select count(*)::int from dbsync.table_status where subscription = 'sub_nocopy'"), 0);
  assert.equal(
    await value(
      src,
      "select count(*)::int from dbsync.subscription_tables st where not exists (select from dbsync.subscriptions s where s.sub_id = st.sub_id)",
    ),
    0,
  );
  // The name is free again.
  await value(src, "select dbsync.add_subscription('sub_nocopy', 'orders', $1, false)", [env.targetUrl]);
  assert.equal(await value(src, "select group_name from dbsync.status where name = 'sub_nocopy'"), "orders");
});
