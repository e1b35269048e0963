// PostgreSQL version switches. dbsync has one code path for sources and targets on
// PostgreSQL 10 to 18; where an older major lacks something, the difference is
// named in one of three places, all listed here:
//  1. Names (REWRITES below): the SQL on disk is written for current PostgreSQL, and
//     migrate rewrites the few names an older server spells differently before
//     installing it. So migrations and functions stay one text for every major, and
//     PostgreSQL 14+ runs them byte for byte (same checksum: an existing install
//     re-installs nothing). The sidecar's own catalog queries go through forServer().
//  2. Behaviour (dbsync._server_has in sql/functions/_server_has.sql):
//     partitioned_index, partitioned_row_trigger, partitioned_unique,
//     trigger_keeps_class_row (PostgreSQL 10); enum_add_in_transaction (10 and 11).
//  3. The job queue (WORKER_MIN_MAJOR in migrate.ts): graphile-worker needs 12; an
//     older source's sidecar wakes its jobs in-process (src/sidecar/jobs.ts).
// Plus a few spellings every major accepts, chosen for 10 (PL/pgSQL where a void
// SQL function ended in a SELECT, row variables set in the body): no switch needed.
//
// Why rewrite text rather than branch in the SQL: the txid functions are one-for-one
// renames (PostgreSQL 13 renamed txid_current() to pg_current_xact_id() and the
// bigint txids to xid8: same values, same snapshot text), and migrations already
// landed must not change for existing installs. A rewrite keeps both true, and the
// lines that differ stay greppable here.
import { Client, ClientBase } from "pg";

/** What the SQL needs to know about the server it is installed on. */
export interface ServerTraits {
  /** e.g. 12 for 12.22. */
  major: number;
  /**
   * The queue holds bigint txids (txid_current()) rather than xid8: a server older
   * than 13, or a dbsync installed there and then pg_upgraded (its columns keep
   * their types, and the txid_* functions still exist on every later major).
   */
  bigintTxids: boolean;
}

export interface Rewrite {
  /** The feature missing where `applies`; also the name dbsync._server_has knows it by. */
  name: string;
  applies: (s: ServerTraits) => boolean;
  pattern: RegExp;
  replacement: string | ((match: string, ...groups: string[]) => string);
  why: string;
}

/** xid8 and pg_snapshot (13+) and their functions, as the bigint txid_* names of 10–12. */
const TXID_NAMES: Record<string, string> = {
  xid8: "bigint",
  pg_snapshot: "txid_snapshot",
  pg_current_xact_id: "txid_current",
  pg_current_xact_id_if_assigned: "txid_current_if_assigned",
  pg_current_snapshot: "txid_current_snapshot",
  pg_snapshot_xmin: "txid_snapshot_xmin",
  pg_snapshot_xmax: "txid_snapshot_xmax",
  pg_snapshot_xip: "txid_snapshot_xip",
  pg_visible_in_snapshot: "txid_visible_in_snapshot",
};

export const REWRITES: Rewrite[] = [
  {
    name: "xid8",
    applies: (s) => s.bigintTxids,
    pattern: new RegExp(`\\b(${Object.keys(TXID_NAMES).join("|")})\\b`, "g"),
    replacement: (m) => TXID_NAMES[m],
    why: "xid8, pg_snapshot and pg_current_xact_id() are PostgreSQL 13's names for the epoch-extended bigint txids of txid_current(): same values, same snapshot text, same rule for visibility",
  },
  {
    name: "gen_random_uuid",
    applies: (s) => s.major < 13,
    pattern: /\bgen_random_uuid\(\)/g,
    // A subscription's identity on its target: unique, not secret.
    replacement:
      "pg_catalog.md5(pg_catalog.random()::pg_catalog.text || pg_catalog.clock_timestamp()::pg_catalog.text || pg_catalog.pg_backend_pid()::pg_catalog.text)::pg_catalog.uuid",
    why: "gen_random_uuid() is built in from PostgreSQL 13 (pgcrypto before, which may not be installable)",
  },
  {
    name: "execute_function",
    applies: (s) => s.major < 11,
    pattern: /\bexecute function\b/gi,
    replacement: "execute procedure",
    why: "CREATE TRIGGER and CREATE EVENT TRIGGER say EXECUTE FUNCTION from PostgreSQL 11, EXECUTE PROCEDURE before (same meaning)",
  },
  {
    name: "partitioned_index",
    applies: (s) => s.major < 11,
    pattern: /^create index on dbsync\.events \(txid\);$/m,
    replacement: "-- (PostgreSQL 10: no index on a partitioned table; create_group indexes each slot)",
    why: "indexes on partitioned tables come with PostgreSQL 11; before, each leaf gets its own",
  },
  {
    name: "index_include",
    applies: (s) => s.major < 11,
    pattern: /\b([a-z_][a-z0-9_]*)\.indnkeyatts\b/g,
    replacement: "$1.indnatts",
    why: "pg_index.indnkeyatts (the key columns, without INCLUDE columns) comes with PostgreSQL 11; before, every column of an index is a key column: indnatts",
  },
  {
    name: "pg_partition_tree",
    applies: (s) => s.major < 12,
    pattern: /\b(?:pg_catalog\.)?(pg_partition_tree|pg_partition_ancestors)\b/g,
    replacement: (_m, fn) => `dbsync._${fn.slice("pg_".length)}`,
    why: "pg_partition_tree() and pg_partition_ancestors() come with PostgreSQL 12; sql/compat/partition_tree.sql reads pg_inherits the same way",
  },
  {
    name: "cte_materialized",
    applies: (s) => s.major < 12,
    pattern: /\bas materialized \(/gi,
    replacement: "as (",
    why: "WITH ... AS MATERIALIZED comes with PostgreSQL 12; before it every CTE is materialized, so the meaning is the same",
  },
  {
    name: "fast_defaults",
    applies: (s) => s.major < 11,
    pattern: /\b[a-z_][a-z0-9_]*\.atthasmissing\b/g,
    replacement: "false",
    why: "a column added with a default keeps it as a missing value (pg_attribute.atthasmissing) from PostgreSQL 11; before, every row is rewritten with it",
  },
  {
    name: "conparentid",
    applies: (s) => s.major < 11,
    pattern: /\b[a-z_][a-z0-9_]*\.conparentid = 0\b/g,
    replacement: "true",
    why: "pg_constraint.conparentid comes with PostgreSQL 11; before, no constraint is cloned from a partitioned table onto its partitions (inheritance children's copies are not conislocal, which the same queries test)",
  },
  {
    name: "generated_columns",
    applies: (s) => s.major < 12,
    pattern: /\b[a-z_][a-z0-9_]*\.attgenerated\b/g,
    replacement: `''::pg_catalog."char"`,
    why: "generated columns (pg_attribute.attgenerated) come with PostgreSQL 12; before, no column is generated",
  },
  {
    name: "regcollation",
    applies: (s) => s.major < 13,
    pattern: /'pg_catalog\."([^"]+)"'::regcollation\b/g,
    replacement: "(select c.oid from pg_catalog.pg_collation c where c.collname = '$1' and c.collnamespace = 'pg_catalog'::pg_catalog.regnamespace)",
    why: "the regcollation type comes with PostgreSQL 13; before, a collation's oid is looked up in pg_collation",
  },
  {
    name: "tgparentid",
    applies: (s) => s.major < 13,
    pattern: /\b[a-z_][a-z0-9_]*\.tgparentid = 0\b/g,
    replacement: "true",
    why: "pg_trigger.tgparentid comes with PostgreSQL 13; before, a trigger cloned onto a partition is tgisinternal, which the same queries test",
  },
];

/** Files under sql/ installed before the migrations where a rewrite names what they define. */
export const PRELUDES: { file: string; applies: (s: ServerTraits) => boolean }[] = [
  { file: "compat/partition_tree.sql", applies: (s) => s.major < 12 },
];

/** `sql` as the server described by `traits` understands it (unchanged on PostgreSQL 14+). */
export function compatSql(sql: string, traits: ServerTraits): string {
  let out = sql;
  for (const r of REWRITES) {
    if (!r.applies(traits)) continue;
    const { pattern, replacement } = r;
    out = typeof replacement === "string" ? out.replace(pattern, replacement) : out.replace(pattern, replacement);
  }
  return out;
}

/** The server's major version number. */
export async function serverMajor(client: ClientBase): Promise<number> {
  const { rows } = await client.query("select pg_catalog.current_setting('server_version_num')::pg_catalog.int4 as v");
  return Math.floor(rows[0].v / 10000);
}

/**
 * The traits of the server `client` is connected to: its major, and whether the
 * dbsync queue there (if installed yet) holds bigint txids.
 */
export async function serverTraits(client: Client): Promise<ServerTraits> {
  const major = await serverMajor(client);
  const { rows } = await client.query(
    `select a.atttypid = 'pg_catalog.int8'::pg_catalog.regtype as bigint
       from pg_catalog.pg_attribute a
      where a.attrelid = pg_catalog.to_regclass('dbsync.events') and a.attname = 'txid' and not a.attisdropped`,
  );
  return { major, bigintTxids: rows.length ? rows[0].bigint === true : major < 13 };
}

const majors = new WeakMap<ClientBase, number>();

/**
 * `sql` as the server at the other end of `client` understands it, for the sidecar's
 * catalog queries on sources and targets (the server's major is read once per
 * connection). Not for SQL naming txids: that follows the source's queue (serverTraits).
 */
export async function forServer(client: ClientBase, sql: string): Promise<string> {
  let major = majors.get(client);
  if (major === undefined) {
    major = await serverMajor(client);
    majors.set(client, major);
  }
  return compatSql(sql, { major, bigintTxids: major < 13 });
}
