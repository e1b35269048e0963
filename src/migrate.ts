// `dbsync migrate`: installs or upgrades the dbsync schema on the source.
// Numbered files in migrations/ are applied once each, in order; the functions and
// views in sql/ are code and are re-installed whenever their text changed. All of it
// runs in one transaction under an advisory lock, so two processes migrating at
// once apply everything exactly once, and a failed migration changes nothing.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Client, ClientConfig, Pool } from "pg";
import { compatSql, PRELUDES, ServerTraits, serverTraits } from "./compat";
import { clientConfig } from "./db/connect";
import { DbsyncError } from "./errors";
import { loadGraphileWorker } from "./graphile-worker";
import { DBSYNC_LOCK } from "./locks";
import { VERSION } from "./version";

export const WORKER_SCHEMA = "dbsync_worker";
/**
 * graphile-worker's schema needs PostgreSQL 12 (generated columns); an older source
 * gets no dbsync_worker schema, and the sidecar's wake-ups run in-process there
 * (src/sidecar/jobs.ts, LocalJobs). A version switch, like those in src/compat.ts.
 */
export const WORKER_MIN_MAJOR = 12;
const ROOT = path.join(__dirname, "..");

interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function knownMigrations(): Migration[] {
  const dir = path.join(ROOT, "migrations");
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((f) => ({ version: Number(f.slice(0, 4)), name: f, sql: fs.readFileSync(path.join(dir, f), "utf8") }));
}

type Section = "internal" | "views" | "protocol" | "api" | "finally";
const SECTIONS: readonly Section[] = ["internal", "views", "protocol", "api", "finally"];

/**
 * sql/manifest.txt: the files of sql/ in the order migrate installs them, each with
 * its section. Every file of sql/functions and sql/views must be named exactly once,
 * and nothing else: a file added without a place would install in no defined order.
 */
export function manifest(): { section: Section; file: string }[] {
  const out: { section: Section; file: string }[] = [];
  let section: Section | undefined;
  for (const raw of fs.readFileSync(path.join(ROOT, "sql", "manifest.txt"), "utf8").split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) {
      if (!SECTIONS.includes(m[1] as Section)) throw new Error(`sql/manifest.txt: unknown section [${m[1]}]`);
      section = m[1] as Section;
    } else if (!section) throw new Error(`sql/manifest.txt: ${line} comes before any section`);
    else out.push({ section, file: line });
  }
  const named = out.map((e) => e.file);
  const onDisk = ["functions", "views"].flatMap((d) =>
    fs.readdirSync(path.join(ROOT, "sql", d)).filter((f) => f.endsWith(".sql")).map((f) => `${d}/${f}`),
  );
  const problems = [
    ...onDisk.filter((f) => !named.includes(f)).map((f) => `sql/${f} is not in it: add it under its section`),
    ...named.filter((f, i) => named.indexOf(f) !== i).map((f) => `${f} is named twice`),
    ...named.filter((f) => !fs.existsSync(path.join(ROOT, "sql", f))).map((f) => `${f} does not exist`),
  ];
  if (problems.length) throw new Error(`sql/manifest.txt: ${problems.join("; ")}`);
  return out;
}

/**
 * Everything of sql/manifest.txt, in its order, with dbsync.version() and
 * dbsync._protocol_functions() made here, and the comments psql shows (\\df+,
 * \\dv+, \\dt+): the code re-installed on upgrade, as the server of `traits`
 * understands it (src/compat.ts). Unchanged, and so with the same checksum, on
 * PostgreSQL 14+.
 */
export function codeBundle(traits?: ServerTraits): { sql: string; sha: string } {
  const code: string[] = [];
  const last: string[] = [];
  const headers: Header[] = [];
  const protocol: string[] = [];
  for (const { section, file } of manifest()) {
    const text = fs.readFileSync(path.join(ROOT, "sql", file), "utf8");
    if (section === "finally") {
      last.push(text);
      continue;
    }
    const own = headersOf(text);
    if (section === "protocol") protocol.push(...own.map((h) => h.name));
    code.push(text);
    headers.push(...own);
  }
  // First: dbsync.grant_sidecar reads _protocol_functions() whenever it runs.
  const generated = [versionFunction(), protocolFunction(protocol)];
  for (const g of generated) headers.push(...headersOf(g));
  // The functions an older server gets before the migrations are commented like the rest.
  for (const p of PRELUDES) {
    if (traits && p.applies(traits)) headers.push(...headersOf(fs.readFileSync(path.join(ROOT, "sql", p.file), "utf8")));
  }
  const joined = [...generated, ...code, ...last, commentsFromHeaders(headers, new Set(protocol))].join("\n");
  const sql = traits ? compatSql(joined, traits) : joined;
  return { sql, sha: crypto.createHash("sha256").update(sql).digest("hex") };
}

interface Header {
  kind: "function" | "view";
  name: string;
  text: string;
}

/**
 * The header comment of each function and view of a file (as STYLE.md asks: a first
 * line naming it, then what it does): `-- dbsync.name(...)` or `-- dbsync.name: ...`.
 */
export function headersOf(sql: string): Header[] {
  const out: Header[] = [];
  const lines = sql.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^-- dbsync\.([a-z_0-9]+)(\(|:)(.*)$/.exec(lines[i]);
    if (!m) continue;
    const body: string[] = m[2] === ":" && m[3].trim() ? [m[3].trim()] : [];
    let j = i + 1;
    for (; j < lines.length && lines[j].startsWith("--"); j++) body.push(lines[j].replace(/^--\s?/, "").replace(/^ {2}/, ""));
    // What the header describes is created right after it.
    const created = lines.slice(j, j + 3).join(" ");
    const kind = /create (or replace )?view/.test(created) ? "view" : "function";
    // Reflowed: the file's line breaks are for 80 columns, psql wraps by itself.
    const text = body.join("\n").trim().split(/\n\s*\n/).map((p) => p.replace(/\s*\n\s*/g, " ")).join("\n");
    out.push({ kind, name: m[1], text });
    i = j - 1;
  }
  return out;
}

const dollar = (s: string) => {
  let tag = "c";
  while (s.includes(`$${tag}$`)) tag += "c";
  return `$${tag}$${s}$${tag}$`;
};

/** COMMENT ON every function (all overloads) and view of dbsync, from their headers. */
function commentsFromHeaders(headers: Header[], protocol: Set<string>): string {
  const rows = headers.map((h) => {
    const prefix = h.kind === "view" ? "" : protocol.has(h.name)
      ? "Called by the sidecar (dbsync run); not for DBAs. "
      : h.name.startsWith("_") ? "Internal to dbsync, not an API. " : "";
    return `(${dollar(h.kind)}, ${dollar(h.name)}, ${dollar(prefix + h.text)})`;
  });
  return `do $comments$
declare
    r record;
begin
    for r in select c.kind, c.name, c.txt, p.oid::regprocedure as fn
             from (values ${rows.join(",\n                          ")}) as c(kind, name, txt)
             left join pg_catalog.pg_proc p on c.kind = 'function' and p.proname = c.name
                                           and p.pronamespace = 'dbsync'::regnamespace loop
        if r.kind = 'view' then
            execute pg_catalog.format('comment on view dbsync.%I is %L', r.name, r.txt);
        elsif r.fn is not null then
            execute pg_catalog.format('comment on function %s is %L', r.fn, r.txt);
        end if;
    end loop;
end
$comments$;`;
}

/** dbsync.version(): the dbsync that installed this code. */
function versionFunction(): string {
  return `-- dbsync.version() returns text
--   The version of dbsync whose \`dbsync migrate\` installed this code (as \`dbsync --version\`
--   prints it). The schema's version is select max(version) from dbsync.migrations.
create or replace function dbsync.version() returns text
language sql stable set search_path = pg_catalog, pg_temp as $$ select ${dollar(VERSION)}::text $$;`;
}

/**
 * dbsync._protocol_functions(): the names of the functions of the manifest's protocol
 * section, which dbsync.grant_sidecar grants: the one list of what a sidecar may call.
 */
function protocolFunction(names: string[]): string {
  return `-- dbsync._protocol_functions() returns text[]
--   The functions of the sidecar <-> source protocol (the protocol section of
--   sql/manifest.txt, written here by \`dbsync migrate\`): what dbsync.grant_sidecar
--   lets a sidecar role execute.
create or replace function dbsync._protocol_functions() returns text[]
language sql immutable set search_path = pg_catalog, pg_temp as $$ select array[${names.map((n) => `'${n}'`).join(", ")}]::text[] $$;`;
}

export interface MigrateResult {
  applied: string[];
  codeInstalled: boolean;
  /** Tables whose capture an older dbsync generated, generated again. */
  captureUpgraded: number;
  version: number;
}

/**
 * A schema dbsync that another role made before dbsync was installed in it (CREATE
 * on the database is enough), or that changed hands since: its owner may replace
 * any function in it, and migrate (often a superuser) and the capture triggers
 * would then run that role's code. dbsync's schema belongs to the role that
 * installed dbsync (README, Security).
 */
async function refuseForeignSchema(client: Client): Promise<void> {
  const { rows } = await client.query<{ owner: string; mine: boolean; installer: string | null }>(
    `select pg_catalog.pg_get_userbyid(n.nspowner) as owner, pg_catalog.pg_get_userbyid(n.nspowner) = current_user as mine,
            (select pg_catalog.pg_get_userbyid(c.relowner) from pg_catalog.pg_class c
              where c.oid = pg_catalog.to_regclass('dbsync.migrations')) as installer
       from pg_catalog.pg_namespace n where n.nspname = 'dbsync'`,
  );
  const s = rows[0];
  if (!s || (s.installer === null ? s.mine : s.installer === s.owner)) return;
  throw new DbsyncError(
    s.installer === null
      ? `schema dbsync exists, owned by ${s.owner}, and dbsync is not installed in it: dbsync will not install into a schema another role controls`
      : `schema dbsync is owned by ${s.owner}, but dbsync was installed by ${s.installer}: dbsync will not run code from a schema another role controls`,
    {
      sqlstate: "42501",
      hint:
        "Check what that role put in schema dbsync (functions, triggers), then, as a superuser, drop the schema (before dbsync is installed) " +
        "or give it to the role that installs dbsync (ALTER SCHEMA dbsync OWNER TO ...), and run migrate again.",
    },
  );
}

export async function migrate(conninfo: string | undefined): Promise<MigrateResult> {
  // Long statements are fine here; a person waits for them (no watchdog). Names
  // resolve in pg_catalog first whatever the database's search_path: its owner may
  // set one with public first, and a public.now() would be bound into dbsync's column
  // defaults (called as the dbsync owner) by the superuser running this.
  const config = () => clientConfig(conninfo, { applicationName: "dbsync migrate", queryTimeoutMs: 0, catalogPath: true });
  const client = new Client(config());
  client.on("error", () => undefined);
  await client.connect();
  const applied: string[] = [];
  let codeInstalled = false;
  let captureUpgraded = 0;
  const known = knownMigrations();
  const latest = known[known.length - 1].version;
  let traits: ServerTraits;
  try {
    await client.query("begin");
    // Typed and qualified: an untyped parameter would pick a pg_advisory_xact_lock(text)
    // that any role with CREATE on a schema of the search_path made.
    await client.query("select pg_catalog.pg_advisory_xact_lock($1::int8)", [DBSYNC_LOCK]);
    await refuseForeignSchema(client);
    await client.query(`create schema if not exists dbsync`);
    await client.query(`create table if not exists dbsync.migrations (
        version int primary key, name text not null, applied_at timestamptz not null default now())`);
    await client.query(`create table if not exists dbsync.installed_code (
        only_row boolean primary key default true check (only_row), sha text not null,
        installed_at timestamptz not null default now())`);
    const { rows } = await client.query<{ version: number }>("select version from dbsync.migrations");
    const done = new Set(rows.map((r) => r.version));
    const newest = Math.max(0, ...done);
    if (newest > latest) {
      throw new DbsyncError(
        `this database was migrated by a newer dbsync (schema version ${newest}; this dbsync knows up to ${latest})`,
        { hint: "Upgrade dbsync on this host to the version that migrated the database." },
      );
    }
    // Migrations and code are written for current PostgreSQL; an older server gets
    // them with its own names for a few things (src/compat.ts), and first the
    // functions it lacks that they call. The files themselves never change.
    traits = await serverTraits(client);
    for (const p of PRELUDES) {
      if (p.applies(traits)) await client.query(fs.readFileSync(path.join(ROOT, "sql", p.file), "utf8"));
    }
    for (const m of known) {
      if (done.has(m.version)) continue;
      await client.query("insert into dbsync.migrations (version, name) values ($1, $2)", [m.version, m.name]);
      await client.query(compatSql(m.sql, traits));
      applied.push(m.name);
    }
    const code = codeBundle(traits);
    const { rows: cur } = await client.query<{ sha: string }>("select sha from dbsync.installed_code");
    if (cur[0]?.sha !== code.sha) {
      await client.query(code.sql);
      await client.query(
        `insert into dbsync.installed_code (sha) values ($1)
         on conflict (only_row) do update set sha = excluded.sha, installed_at = now()`,
        [code.sha],
      );
      codeInstalled = true;
    }
    await client.query("commit");
    // Capture is generated per table: tables captured by an older version get the
    // installed one, each in a transaction of its own (see _upgrade_capture); a
    // table it could not lock is tried again by the next migrate.
    const { rows: stale } = await client.query<{ id: number }>("select id from dbsync._capture_outdated() id");
    for (const { id } of stale) {
      const { rows: up } = await client.query<{ done: boolean }>("select dbsync._upgrade_capture($1) as done", [id]);
      if (up[0].done) captureUpgraded++;
    }
  } catch (err) {
    await client.query("rollback").catch(() => undefined);
    throw err;
  } finally {
    await client.end();
  }
  if (traits.major >= WORKER_MIN_MAJOR) {
    const pool = new Pool({ ...config(), max: 2 });
    pool.on("error", () => undefined);
    pool.on("connect", (c) => c.on("error", () => undefined));
    try {
      // Loaded here: the sidecar imports this module for its constants, and loading
      // graphile-worker would add to its start-up.
      const { Logger, runMigrations } = loadGraphileWorker();
      await runMigrations({ pgPool: pool, schema: WORKER_SCHEMA, logger: new Logger(() => () => undefined) });
    } finally {
      await pool.end();
    }
  }
  await regrantSidecars(config());
  return { applied, codeInstalled, captureUpgraded, version: latest };
}

/**
 * The sidecar roles (dbsync.grant_sidecar) get their rights again once graphile-worker's
 * schema is there: on a first install it did not exist when sql/grants.sql ran, and
 * its migrations may have added tables or functions since. The monitoring roles
 * (dbsync.grant_monitor) too: sql/grants.sql runs only when the code changed, and
 * every migrate restores a revoked right.
 */
async function regrantSidecars(config: ClientConfig): Promise<void> {
  const client = new Client(config);
  await client.connect();
  try {
    await client.query("select dbsync._regrant_sidecars(), dbsync._regrant_monitors()");
  } finally {
    await client.end();
  }
}

