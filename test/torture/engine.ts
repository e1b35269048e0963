// The divergence ("torture") test: a seeded, randomized application workload on a
// source, two subscriptions of one group to two target databases, DDL through
// dbsync.execute_ddl, admin actions and sidecar kills at random moments; at the end
// every table is compared row by row between the source and each target.
//
// Black box: only the public SQL API (add_table, add_subscription, execute_ddl,
// resync_table, pause, resume, wait_for_sync, status views) and the sidecar
// (`dbsync migrate`, `dbsync run`) as child processes. Used by test/torture/cli.ts
// (`npm run torture`) and test/torture.test.ts (a short run inside `npm test`).
//
// Determinism: every random choice comes from PRNGs derived from the one seed, one
// stream per actor (writer 0, writer 1, ..., the DDL actor, ...), so the sequence of
// choices of each actor replays with the same seed. The interleaving of the actors is
// up to the servers and the scheduler, so a replay is the same workload, not the same
// history.
import fs from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { rowDiff } from "../../src/embedded/compare";
import { Rng } from "../../src/embedded/random";
import { sqlstate, startWriters } from "../../src/embedded/writers";
import { DbsyncProcess, runDbsync, spawnDbsync } from "../kit/dbsync";
import { sleep } from "../kit/wait";

// ---------------------------------------------------------------- options

export const DDL_KINDS = ["add", "drop", "rename", "renametable", "key"] as const;
export type DdlKind = (typeof DDL_KINDS)[number];
export const FAULT_KINDS = ["resync", "pause", "kill"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
export const OP_KINDS = [
  "insert", // multi-row inserts (ON CONFLICT DO NOTHING where the key allows it)
  "update", // multi-row non-key updates, also of added columns
  "delete", // range deletes
  "keyupdate", // key changes (single row, ranges, rotations in the deferrable table)
  "swap", // key swaps (deferrable key), code swaps (unique column), key swaps via a temporary key
  "delins", // delete and re-insert the same key; duplicate-then-delete in the deferrable table
  "cte", // writable CTEs
  "truncate", // occasional TRUNCATE (then inserts in the same transaction)
  "savepoint", // savepoints rolled back or released around other operations
  "orders", // the table whose trigger writes into another replicated table
  "names", // the table with AFTER INSERT / BEFORE UPDATE application triggers
  "longtx", // long REPEATABLE READ transactions across several seconds
] as const;
export type OpKind = (typeof OP_KINDS)[number];

export interface TortureOptions {
  /** Source database (empty; the engine migrates it). */
  sourceUrl: string;
  /** Two target databases (empty). */
  targetUrls: [string, string];
  seed: number;
  /** How long the workload and the faults run. */
  durationMs: number;
  ddl?: DdlKind[];
  faults?: FaultKind[];
  ops?: OpKind[];
  /**
   * Logical tables the writers and the DDL use (all are created and replicated);
   * default all. tord's trigger writes ttot whatever this says.
   */
  tables?: TableName[];
  /** Concurrent writers (READ COMMITTED, REPEATABLE READ, SERIALIZABLE, mixed, ...). */
  writers?: number;
  /** Seconds to wait for each subscription at the end. */
  waitSeconds?: number;
  /** Folder for the sidecar's log. */
  workDir: string;
  log?: (line: string) => void;
}

export interface Difference {
  target: string;
  table: string;
  kind: "missing-table" | "schema" | "only-on-source" | "only-on-target";
  detail: string;
}

export interface TortureResult {
  seed: number;
  durationMs: number;
  committed: number;
  rolledBack: number;
  intentionalRollbacks: number;
  retries: number;
  savepointsRolledBack: number;
  savepointsReleased: number;
  errorCodes: Record<string, number>;
  unexpectedErrors: string[];
  faults: Record<string, number>;
  synced: Record<string, boolean>;
  differences: Difference[];
  differencesByTable: Record<string, number>;
  sourceRows: Record<string, number>;
  sidecarLog: string;
  sidecarDiedByItself: number;
  ok: boolean;
}

// ---------------------------------------------------------------- schema

/** Logical table names (the physical names change with renametable). */
export const TABLES = ["ti", "tc", "td", "tu", "tp", "tord", "ttot"] as const;
export type TableName = (typeof TABLES)[number];
type Table = TableName;

/** Thrown while building a statement on a table that this run leaves alone: the step is skipped. */
class SkipTable extends Error {}

const KEYS = 120; // id space of the single-key tables: small, so keys are reused a lot
const TENANTS = 4;
const TC_IDS = 40;

/** Run identically on the source and on both targets (application triggers included: EXECUTE PROCEDURE, which PostgreSQL 10 knows too). */
const SCHEMA = `
  create table ti (id int not null primary key, v text, n int);
  create table tc (tenant int not null, id int not null, v text, n int, primary key (tenant, id));
  create sequence td_uid_seq;
  create table td (id int not null, uid bigint not null, v text, n int,
                   constraint td_pkey primary key (id) deferrable initially deferred);
  create table tu (id int not null, code text not null, v text, n int,
                   constraint tu_pkey primary key (id), constraint tu_code_key unique (code));
  create table tp (id int not null primary key, name text not null, name_lc text,
                   upd_count int not null default 0, v text, n int);
  create table tord (id int not null primary key, tenant int not null, amount int not null, v text, n int);
  create table ttot (tenant int not null primary key, total bigint not null, cnt int not null, v text, n int);

  -- Not replicated: where the application's trigger finds the totals table (regclass
  -- follows renames).
  create table app_conf (name text primary key, rel regclass not null);
  insert into app_conf values ('ttot', 'ttot');

  -- tp: an AFTER INSERT row trigger that updates its own row, and a BEFORE UPDATE
  -- trigger that changes another column. Deterministic: no now(), no random().
  create function tp_after_ins() returns trigger language plpgsql as $$
  begin
    execute format('update %I.%I set name_lc = lower(name) where id = $1', tg_table_schema, tg_table_name)
      using new.id;
    return null;
  end $$;
  create trigger tp_after_ins after insert on tp for each row execute procedure tp_after_ins();
  create function tp_before_upd() returns trigger language plpgsql as $$
  begin
    new.upd_count := old.upd_count + 1;
    return new;
  end $$;
  create trigger tp_before_upd before update on tp for each row execute procedure tp_before_upd();

  -- tord: a row trigger that maintains per-tenant totals in another replicated table.
  create function tord_totals() returns trigger language plpgsql as $$
  declare
    tot regclass := (select rel from app_conf where name = 'ttot');
  begin
    if tg_op in ('UPDATE', 'DELETE') then
      execute format('update %s set total = total - $2, cnt = cnt - 1 where tenant = $1', tot)
        using old.tenant, old.amount;
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
      execute format('insert into %s as t (tenant, total, cnt) values ($1, $2, 1) '
                     'on conflict (tenant) do update set total = t.total + excluded.total, cnt = t.cnt + 1', tot)
        using new.tenant, new.amount;
    end if;
    return null;
  end $$;
  create trigger tord_totals after insert or update or delete on tord for each row execute procedure tord_totals();`;

// ---------------------------------------------------------------- helpers

const q = (ident: string) => `"${ident.replace(/"/g, '""')}"`;

const RETRYABLE = new Set(["40001", "40P01"]);
/**
 * Errors an application meets under this workload and rolls back for: unique
 * violations (random keys), a table or column renamed or dropped under it, lock and
 * statement timeouts (DDL and TRUNCATE wait for long transactions), TRUNCATE of the
 * deferrable table while its deferred key checks are pending (55006).
 */
const EXPECTED = new Set(["23505", "42P01", "42703", "55P03", "57014", "55006"]);

const codeOf = sqlstate;

async function connect(url: string, appName: string): Promise<Client> {
  const c = new Client({ connectionString: url, application_name: appName });
  c.on("error", () => undefined);
  await c.connect();
  return c;
}

// ---------------------------------------------------------------- the engine

interface ShapeState {
  /** Current physical name of each logical table. */
  name: Record<Table, string>;
  /** Current name of each table's "v" column (renamed by the rename DDL). */
  vcol: Record<Table, string>;
  /** Columns added by DDL and not dropped yet. */
  added: Record<Table, { name: string; type: "int" | "text" }[]>;
  /** tu's key: 'id' or 'code'. */
  tuKey: "id" | "code";
  counter: number;
}

class Torture {
  readonly o: Required<Omit<TortureOptions, "log">> & { log: (s: string) => void };
  readonly shape: ShapeState;
  deadline: number;
  readonly r: TortureResult;
  private sidecar: DbsyncProcess | undefined;
  private sidecarKilling = false;
  private readonly sidecarLog: string;
  private subsReady = false;
  private paused = new Set<string>();
  private subs: string[] = ["s2"];
  private readonly ops: Set<OpKind>;
  private readonly tables: Set<Table>;

  constructor(opts: TortureOptions) {
    this.o = {
      ddl: [...DDL_KINDS],
      faults: [...FAULT_KINDS],
      ops: [...OP_KINDS],
      writers: 4,
      tables: [...TABLES],
      waitSeconds: 120,
      log: (s) => console.log(s),
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    } as Torture["o"];
    this.ops = new Set(this.o.ops);
    this.tables = new Set(this.o.tables);
    this.deadline = Date.now() + this.o.durationMs;
    const per = <T>(f: () => T) => Object.fromEntries(TABLES.map((t) => [t, f()])) as Record<Table, T>;
    this.shape = {
      name: Object.fromEntries(TABLES.map((t) => [t, t])) as Record<Table, string>,
      vcol: per(() => "v"),
      added: per(() => [] as { name: string; type: "int" | "text" }[]),
      tuKey: "id",
      counter: 0,
    };
    const sidecarLog = (this.sidecarLog = path.join(this.o.workDir, "sidecar.log"));
    this.r = {
      seed: this.o.seed,
      durationMs: this.o.durationMs,
      committed: 0,
      rolledBack: 0,
      intentionalRollbacks: 0,
      retries: 0,
      savepointsRolledBack: 0,
      savepointsReleased: 0,
      errorCodes: {},
      unexpectedErrors: [],
      faults: {},
      synced: {},
      differences: [],
      differencesByTable: {},
      sourceRows: {},
      sidecarLog,
      sidecarDiedByItself: 0,
      ok: false,
    };
  }

  log(s: string) {
    this.o.log(s);
  }
  count(fault: string) {
    this.r.faults[fault] = (this.r.faults[fault] ?? 0) + 1;
  }
  running() {
    return Date.now() < this.deadline;
  }
  /** A sleep that ends at the deadline. */
  async nap(ms: number) {
    await sleep(Math.max(0, Math.min(ms, this.deadline - Date.now())));
  }
  t(tbl: Table) {
    if (!this.tables.has(tbl)) throw new SkipTable(tbl);
    return q(this.shape.name[tbl]);
  }
  v(tbl: Table) {
    return q(this.shape.vcol[tbl]);
  }

  // ------------------------------------------------------------ set-up

  async setUp() {
    await this.cli(["migrate", "--source", this.o.sourceUrl], 120000);
    const dbs = [this.o.sourceUrl, ...this.o.targetUrls];
    for (const url of dbs) {
      const c = await connect(url, "torture setup");
      try {
        await c.query(SCHEMA);
      } finally {
        await c.end();
      }
    }
    const src = await connect(this.o.sourceUrl, "torture admin");
    try {
      for (const t of TABLES) await src.query("select dbsync.add_table($1, 'g')", [t]);
      // s2: the target is empty like the source: no copy. s1 (copy_data) comes later,
      // under the writes.
      await src.query("select dbsync.add_subscription('s2', 'g', $1, copy_data => false)", [this.o.targetUrls[1]]);
    } finally {
      await src.end();
    }
  }

  private async cli(args: string[], timeoutMs: number): Promise<void> {
    const r = await runDbsync(args, { timeoutMs });
    if (r.code !== 0) throw new Error(`dbsync ${args[0]} exited ${r.code}: ${r.stdout}${r.stderr}`);
  }

  // ------------------------------------------------------------ sidecar

  private sidecarArgs: string[] = [];

  startSidecar() {
    const p = spawnDbsync(["run", "--source", this.o.sourceUrl, ...this.sidecarArgs], { logFile: this.sidecarLog });
    this.sidecar = p;
    p.proc.once("exit", (code, signal) => {
      fs.appendFileSync(this.sidecarLog, `--- sidecar exited: code ${code} signal ${signal}\n`);
      if (this.sidecar === p && !this.sidecarKilling) {
        this.r.sidecarDiedByItself++;
        this.log(`sidecar died by itself (code ${code}, signal ${signal}); starting a new one in 1 s`);
        setTimeout(() => {
          if (this.sidecar === p && this.running()) this.startSidecar();
        }, 1000);
      }
    });
  }

  /** `signal`, then SIGKILL after 20 s (exit code -1 then). */
  async stopSidecar(signal: NodeJS.Signals): Promise<number | null> {
    const p = this.sidecar;
    if (!p) return null;
    this.sidecarKilling = true;
    try {
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        p.proc.kill("SIGKILL");
      }, 20000);
      const code = await p.stop(signal);
      clearTimeout(timer);
      return killed ? -1 : code;
    } finally {
      this.sidecar = undefined;
      this.sidecarKilling = false;
    }
  }

  // ------------------------------------------------------------ run

  async run(): Promise<TortureResult> {
    const t0 = Date.now();
    const setupRng = new Rng(this.o.seed, "setup");
    const pollInterval = setupRng.pick([100, 250, 500]);
    const maxBatch = setupRng.pick([50, 500, 5000, 200000]);
    // Only the flags this version of `dbsync run` has (--max-batch-events came and went).
    const help = (await runDbsync(["run", "--help"], { timeoutMs: 60000 })).stdout;
    this.sidecarArgs = ["--rotate-after", "1"];
    if (help.includes("--poll-interval")) this.sidecarArgs.push("--poll-interval", String(pollInterval));
    if (help.includes("--max-batch-events")) this.sidecarArgs.push("--max-batch-events", String(maxBatch));
    // Chunked copies of tables of a few hundred rows at most (a stream of its own,
    // so that a seed's other choices do not change).
    const chunkRows = new Rng(this.o.seed, "copy-chunk-rows").pick([10, 30, 100, 1_000_000]);
    if (help.includes("--copy-chunk-rows")) this.sidecarArgs.push("--copy-chunk-rows", String(chunkRows));
    this.log(`sidecar: dbsync run ${this.sidecarArgs.join(" ")}`);
    await this.setUp();
    const deadlineShift = Date.now() - t0; // the workload gets its full duration
    this.deadline += deadlineShift;
    this.startSidecar();

    const actors: Promise<void>[] = [];
    actors.push(this.writers());
    if (this.ops.has("longtx")) actors.push(this.longTransactions());
    actors.push(
      (async () => {
        // s1 with copy_data: its initial copy races with the writes.
        await this.nap(setupRng.int(1000, 3000));
        const c = await connect(this.o.sourceUrl, "torture admin");
        try {
          await c.query("select dbsync.add_subscription('s1', 'g', $1, copy_data => true)", [this.o.targetUrls[0]]);
        } finally {
          await c.end();
        }
        this.subs = ["s1", "s2"];
        this.subsReady = true;
        this.log(`subscription s1 added (copy_data => true) at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        // DDL must not start before s1 exists: a target added later would miss it.
        await Promise.all([this.ddlActor(), this.adminActor(), this.killActor()]);
      })(),
    );
    const settled = await Promise.allSettled(actors);
    for (const s of settled) if (s.status === "rejected") throw s.reason;
    this.log(`workload stopped after ${((Date.now() - t0) / 1000).toFixed(1)} s; waiting for sync`);

    // ------------------------------------------------ the end: sync, compare
    const admin = await connect(this.o.sourceUrl, "torture admin");
    try {
      for (const s of this.subs) await admin.query("select dbsync.resume($1)", [s]);
      this.paused.clear();
      if (!this.sidecar || this.sidecar.proc.exitCode !== null || this.sidecar.proc.signalCode !== null) this.startSidecar();
      const sinceSync = Date.now();
      for (const s of this.subs) {
        const ok = (await admin.query("select dbsync.wait_for_sync($1, make_interval(secs => $2)) as ok", [s, this.o.waitSeconds])).rows[0].ok as boolean;
        this.r.synced[s] = ok;
        if (!ok) {
          const st = (await admin.query("select * from dbsync.status where name = $1", [s])).rows[0];
          const ts = (await admin.query("select * from dbsync.table_status where subscription = $1 and state <> 'streaming'", [s])).rows;
          this.log(`wait_for_sync(${s}) failed: ${JSON.stringify(st)}\n  tables not streaming: ${JSON.stringify(ts)}`);
        }
      }
      this.log(`sync wait: ${((Date.now() - sinceSync) / 1000).toFixed(1)} s`);
      await this.compareAll(admin);
    } finally {
      await admin.end();
      const code = await this.stopSidecar("SIGTERM");
      if (code !== 0) this.log(`sidecar stopped with exit code ${code}`);
    }
    this.r.durationMs = Date.now() - t0;
    this.r.ok = this.r.differences.length === 0 && this.subs.every((s) => this.r.synced[s]);
    return this.r;
  }

  // ------------------------------------------------------------ writers

  /**
   * The writers until the deadline, each on its own connection at its own isolation
   * level ("mixed": one drawn per transaction), each from its stream "writer<i>".
   */
  private async writers(): Promise<void> {
    const levels = ["read committed", "repeatable read", "serializable", "mixed"] as const;
    const clients = await Promise.all(
      Array.from({ length: this.o.writers }, async (_, i) => {
        const c = await connect(this.o.sourceUrl, `torture writer ${i}`);
        await c.query("set lock_timeout = '4s'; set statement_timeout = '15s'");
        return c;
      }),
    );
    const txns = clients.map(() => 0);
    const options = { writers: clients.length, rng: new Rng(this.o.seed), durationMs: this.deadline - Date.now() };
    try {
      await startWriters(options, async ({ index: i, rng }) => {
        const level = levels[i % levels.length];
        const iso = level === "mixed" ? rng.pick(["read committed", "repeatable read", "serializable"] as const) : level;
        const plan = this.plan(rng, `w${i}.${++txns[i]}`);
        if (plan.length === 0) return this.nap(50);
        await this.transaction(clients[i], iso, plan, rng.chance(0.04));
        if (rng.chance(0.3)) await this.nap(rng.int(0, 20));
      }).done;
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  }

  /** Runs a planned transaction; retries it on serialization failures and deadlocks. */
  private async transaction(c: Client, iso: string, plan: Step[], rollback: boolean): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await c.query(`begin isolation level ${iso}`);
        await this.steps(c, plan);
        if (rollback) {
          await c.query("rollback");
          this.r.intentionalRollbacks++;
          this.r.rolledBack++;
        } else {
          await c.query("commit");
          this.r.committed++;
        }
        return;
      } catch (err) {
        await c.query("rollback").catch(() => undefined);
        const code = codeOf(err);
        if (RETRYABLE.has(code) && attempt < 20 && this.running()) {
          this.r.retries++;
          await sleep(5 + Math.floor(Math.random() * 20 * (attempt + 1))); // backoff timing only, no workload choice
          continue;
        }
        this.r.rolledBack++;
        this.r.errorCodes[code] = (this.r.errorCodes[code] ?? 0) + 1;
        if (!EXPECTED.has(code) && !RETRYABLE.has(code) && this.r.unexpectedErrors.length < 50) {
          this.r.unexpectedErrors.push(`${code}: ${(err as Error).message}`);
        }
        return;
      }
    }
  }

  private async steps(c: Client, steps: Step[]) {
    for (const step of steps) {
      try {
        await step(c);
      } catch (err) {
        if (!(err instanceof SkipTable)) throw err;
      }
    }
  }

  /** A statement that may fail on a random key collision: inside a savepoint. */
  private async guarded(c: Client, sql: string, params: unknown[] = []) {
    await c.query("savepoint g");
    try {
      await c.query(sql, params);
      await c.query("release savepoint g");
    } catch (err) {
      if (codeOf(err) !== "23505") throw err;
      await c.query("rollback to savepoint g");
      this.r.savepointsRolledBack++;
    }
  }

  /** 1-5 random operations; each is a function of the connection only. */
  private plan(rng: Rng, tag: string): Step[] {
    const kinds = OP_KINDS.filter((k) => this.ops.has(k) && k !== "longtx");
    if (kinds.length === 0) return [];
    const n = rng.int(1, 5);
    const steps: Step[] = [];
    for (let k = 0; k < n; k++) steps.push(...this.op(rng, rng.pick(kinds), `${tag}.${k}`, 0));
    return steps;
  }

  private op(rng: Rng, kind: OpKind, tag: string, depth: number): Step[] {
    const id = () => rng.int(1, KEYS);
    const tbl1 = () => rng.pick(["ti", "tu", "tp", "tord"] as const);
    switch (kind) {
      case "insert":
        return [this.insertStep(rng, rng.pick(["ti", "tc", "td", "tu", "tp", "tord"] as const), tag)];
      case "update": {
        const t = rng.pick(["ti", "tc", "td", "tu", "tp", "tord", "ttot"] as const);
        const a = id();
        const width = rng.pick([0, 0, 3, 20]);
        const setAdded = rng.chance(0.5);
        const addedPick = rng.next();
        const where =
          t === "tc" ? `tenant = ${rng.int(1, TENANTS)} and id between ${a % TC_IDS} and ${(a % TC_IDS) + width}`
          : t === "ttot" ? `tenant between 1 and ${TENANTS}`
          : `id between ${a} and ${a + width}`;
        return [
          async (c) => {
            const added = this.shape.added[t];
            const col = setAdded && added.length > 0 ? added[Math.floor(addedPick * added.length)] : undefined;
            const extra = !col ? "" : col.type === "int" ? `, ${q(col.name)} = coalesce(n, 0) * 3` : `, ${q(col.name)} = $1 || '#'`;
            await c.query(`update ${this.t(t)} set n = coalesce(n, 0) + 1, ${this.v(t)} = $1${extra} where ${where}`, [tag]);
          },
        ];
      }
      case "delete": {
        const t = rng.pick(["ti", "tc", "td", "tu", "tp", "tord"] as const);
        const a = id();
        const width = rng.pick([0, 0, 2, 10]);
        const where = t === "tc" ? `tenant = ${rng.int(1, TENANTS)} and id between ${a % TC_IDS} and ${(a % TC_IDS) + width}` : `id between ${a} and ${a + width}`;
        return [async (c) => void (await c.query(`delete from ${this.t(t)} where ${where}`))];
      }
      case "keyupdate": {
        const which = rng.int(0, 4);
        const a = id();
        const b = id();
        const width = rng.int(1, 8);
        if (which === 0) {
          const t = tbl1();
          return [async (c) => this.guarded(c, `update ${this.t(t)} set id = $2 where id = $1`, [a, b])];
        }
        if (which === 1) {
          // A range shifted by one: non-deferrable keys may collide mid-statement.
          const t = rng.pick(["ti", "tu", "tp"] as const);
          return [async (c) => this.guarded(c, `update ${this.t(t)} set id = id + 1 where id between $1 and $2`, [a, a + width])];
        }
        if (which === 2) {
          // A rotation in the deferrable table: duplicates inside the statement, none at its end.
          return [
            async (c) =>
              void (await c.query(
                `update ${this.t("td")} set id = case when id = $2 then $1 else id + 1 end where id between $1 and $2`,
                [a, a + width],
              )),
          ];
        }
        if (which === 3) {
          const t1 = rng.int(1, TENANTS);
          const t2 = rng.int(1, TENANTS);
          const i = rng.int(1, TC_IDS);
          return [async (c) => this.guarded(c, `update ${this.t("tc")} set tenant = $2 where tenant = $1 and id = $3`, [t1, t2, i])];
        }
        // tu's unique code changes (a key once the key DDL moved the primary key)
        return [async (c) => this.guarded(c, `update ${this.t("tu")} set code = $2 where id = $1`, [a, `c${rng.int(1, KEYS * 2)}`])];
      }
      case "swap": {
        const a = id();
        const b = id();
        const which = rng.int(0, 3);
        if (which === 0) {
          // Two statements in the deferrable table: key b exists twice in between.
          return [
            async (c) => {
              const ua = (await c.query(`select uid from ${this.t("td")} where id = $1 limit 1`, [a])).rows[0]?.uid;
              const ub = (await c.query(`select uid from ${this.t("td")} where id = $1 limit 1`, [b])).rows[0]?.uid;
              if (ua === undefined || ub === undefined || a === b) return;
              await c.query(`update ${this.t("td")} set id = $1 where uid = $2`, [b, ua]);
              await c.query(`update ${this.t("td")} set id = $1 where uid = $2`, [a, ub]);
            },
          ];
        }
        if (which === 1) {
          return [
            async (c) =>
              void (await c.query(`update ${this.t("td")} set id = case when id = $1 then $2 else $1 end where id in ($1, $2)`, [a, b])),
          ];
        }
        if (which === 2) {
          // tu: swap the unique codes of two rows through a temporary value.
          return [
            async (c) => {
              const rows = (await c.query(`select id, code from ${this.t("tu")} where id in ($1, $2) order by id`, [a, b])).rows;
              if (rows.length !== 2) return;
              await c.query(`update ${this.t("tu")} set code = code || '~' where id = $1`, [rows[0].id]);
              await c.query(`update ${this.t("tu")} set code = $2 where id = $1`, [rows[1].id, rows[0].code]);
              await c.query(`update ${this.t("tu")} set code = $2 where id = $1`, [rows[0].id, rows[1].code]);
            },
          ];
        }
        // ti: swap two keys through a temporary negative key.
        return [
          async (c) => {
            if (a === b) return;
            await c.query(`update ${this.t("ti")} set id = -id where id = $1`, [a]);
            await this.guarded(c, `update ${this.t("ti")} set id = $1 where id = $2`, [a, b]);
            await this.guarded(c, `update ${this.t("ti")} set id = $1 where id = $2`, [b, -a]);
            // if a collision left the negative key, put it back
            await this.guarded(c, `update ${this.t("ti")} set id = -id where id = $1`, [-a]);
          },
        ];
      }
      case "delins": {
        const t = rng.pick(["ti", "tu", "tp", "tord", "td", "td"] as const);
        const a = id();
        if (t === "td" && rng.chance(0.5)) {
          // A duplicate of an existing key, then the older row deleted: legal with a deferred key.
          return [
            async (c) => {
              const nu = (await c.query(`insert into ${this.t("td")} (id, uid, ${this.v("td")}, n) values ($1, nextval('td_uid_seq'), $2, 0) returning uid`, [a, tag])).rows[0].uid;
              await c.query(`delete from ${this.t("td")} where id = $1 and uid <> $2`, [a, nu]);
            },
          ];
        }
        return [async (c) => void (await c.query(`delete from ${this.t(t)} where id = $1`, [a])), this.insertStep(rng, t, tag, a)];
      }
      case "cte": {
        const which = rng.int(0, 4);
        const a = id();
        const width = rng.int(0, 5);
        if (which === 0) {
          // Delete and re-insert the same keys in one statement.
          const t = rng.pick(["ti", "tord"] as const);
          return [
            async (c) => {
              const cols = t === "ti" ? `id, ${this.v(t)}, n` : `id, tenant, amount, ${this.v(t)}, n`;
              const sel = t === "ti" ? `id, ${this.v(t)} || '+', coalesce(n, 0) + 1` : `id, tenant, amount + 1, ${this.v(t)} || '+', n`;
              await c.query(`with d as (delete from ${this.t(t)} where id between $1 and $2 returning *) insert into ${this.t(t)} (${cols}) select ${sel} from d`, [a, a + width]);
            },
          ];
        }
        if (which === 1) {
          // Move rows from ti into tc.
          const tenant = rng.int(1, TENANTS);
          return [
            async (c) =>
              this.guarded(
                c,
                `with d as (delete from ${this.t("ti")} where id between $1 and $2 returning id, ${this.v("ti")} as v, n)
                 insert into ${this.t("tc")} (tenant, id, ${this.v("tc")}, n) select $3, id % ${TC_IDS}, v, n from d on conflict do nothing`,
                [a, a + width, tenant],
              ),
          ];
        }
        if (which === 2) {
          // An update driven by another table's update.
          const tenant = rng.int(1, TENANTS);
          return [
            async (c) =>
              void (await c.query(
                `with u as (update ${this.t("tc")} set n = coalesce(n, 0) + 1 where tenant = $1 returning id)
                 update ${this.t("ti")} set n = coalesce(${this.t("ti")}.n, 0) + 10 from u where ${this.t("ti")}.id = u.id`,
                [tenant],
              )),
          ];
        }
        if (which === 3) {
          // Delete orders and fold them into another order (the trigger writes ttot each time).
          return [
            async (c) =>
              void (await c.query(
                `with d as (delete from ${this.t("tord")} where id between $1 and $2 returning amount)
                 update ${this.t("tord")} set amount = amount + (select coalesce(sum(amount), 0) from d) where id = $3`,
                [a, a + width, rng.int(1, KEYS)],
              )),
          ];
        }
        // Insert into tp through a CTE that deletes from tp (AFTER INSERT trigger updates the new rows).
        return [
          async (c) =>
            this.guarded(
              c,
              `with d as (delete from ${this.t("tp")} where id between $1 and $2 returning id, name)
               insert into ${this.t("tp")} (id, name, ${this.v("tp")}, n) select id, upper(name) || '!', $3, 0 from d`,
              [a, a + width, tag],
            ),
        ];
      }
      case "truncate": {
        if (!rng.chance(0.08)) return []; // rare
        const t = rng.pick(["ti", "tc", "td", "tu", "tp", "tord", "ttot"] as const);
        const t2 = rng.chance(0.3) ? rng.pick(["ti", "tc", "tp", "ttot"] as const) : undefined;
        this.count("truncate-planned"); // counted when planned: its transaction may still roll back
        return [
          async (c) => {
            const list = [t, ...(t2 && t2 !== t ? [t2] : [])].map((x) => this.t(x)).join(", ");
            await c.query(`truncate ${list}`);
          },
          this.insertStep(rng, t === "ttot" ? "tord" : t, tag),
        ];
      }
      case "savepoint": {
        if (depth > 1) return [];
        const inner: Step[] = [];
        const n = rng.int(1, 3);
        const kinds = OP_KINDS.filter((k) => this.ops.has(k) && k !== "longtx" && k !== "savepoint");
        if (kinds.length === 0) return [];
        for (let k = 0; k < n; k++) inner.push(...this.op(rng, rng.pick(kinds), `${tag}.s${k}`, depth + 1));
        const rollback = rng.chance(0.5);
        const name = `sp${depth}`;
        return [
          async (c) => {
            await c.query(`savepoint ${name}`);
            try {
              await this.steps(c, inner);
            } catch (err) {
              if (RETRYABLE.has(codeOf(err))) throw err;
              // an error inside the savepoint: roll it back and go on
              await c.query(`rollback to savepoint ${name}`);
              this.r.savepointsRolledBack++;
              return;
            }
            if (rollback) {
              await c.query(`rollback to savepoint ${name}`);
              this.r.savepointsRolledBack++;
            } else {
              await c.query(`release savepoint ${name}`);
              this.r.savepointsReleased++;
            }
          },
        ];
      }
      case "orders": {
        const a = id();
        const which = rng.int(0, 3);
        if (which === 0) return [this.insertStep(rng, "tord", tag)];
        if (which === 1) {
          const amt = rng.int(-50, 50);
          return [async (c) => void (await c.query(`update ${this.t("tord")} set amount = amount + $2 where id between $1 and $1 + 3`, [a, amt]))];
        }
        if (which === 2) {
          const tenant = rng.int(1, TENANTS);
          return [async (c) => void (await c.query(`update ${this.t("tord")} set tenant = $2 where id = $1`, [a, tenant]))];
        }
        return [async (c) => void (await c.query(`delete from ${this.t("tord")} where id = $1`, [a]))];
      }
      case "names": {
        const a = id();
        if (rng.chance(0.5)) return [this.insertStep(rng, "tp", tag)];
        const nm = `Name${rng.int(1, 1000)}`;
        return [async (c) => void (await c.query(`update ${this.t("tp")} set name = $2 where id between $1 and $1 + 2`, [a, nm]))];
      }
      case "longtx":
        return [];
    }
  }

  private insertStep(rng: Rng, t: Table, tag: string, key?: number): Step {
    const a = key ?? rng.int(1, KEYS);
    const count = key !== undefined ? 1 : rng.pick([1, 1, 2, 5, 20]);
    const b = a + count - 1;
    const tenant = rng.int(1, TENANTS);
    const codeBase = rng.int(1, KEYS * 2);
    const amount = rng.int(1, 100);
    return async (c) => {
      const T = this.t(t);
      const V = this.v(t);
      switch (t) {
        case "ti":
          return void (await c.query(`insert into ${T} (id, ${V}, n) select g, $3, g from generate_series($1::int, $2::int) g on conflict do nothing`, [a, b, tag]));
        case "tc":
          return void (await c.query(
            `insert into ${T} (tenant, id, ${V}, n) select $4, g % ${TC_IDS}, $3, g from generate_series($1::int, $2::int) g on conflict do nothing`,
            [a, b, tag, tenant],
          ));
        case "td":
          // No ON CONFLICT with a deferrable key: a duplicate fails at COMMIT (rolled back).
          return void (await c.query(
            `insert into ${T} (id, uid, ${V}, n) select g, nextval('td_uid_seq'), $3, g from generate_series($1::int, $2::int) g
              where not exists (select from ${T} x where x.id = g)`,
            [a, Math.min(b, a + 1), tag],
          ));
        case "tu":
          return void (await c.query(
            `insert into ${T} (id, code, ${V}, n) select g, 'c' || (($4::int + g) % ${KEYS * 2}), $3, g from generate_series($1::int, $2::int) g on conflict do nothing`,
            [a, b, tag, codeBase],
          ));
        case "tp":
          return void (await c.query(
            `insert into ${T} (id, name, ${V}, n) select g, 'Name' || g || '-' || $3, $3, 0 from generate_series($1::int, $2::int) g on conflict do nothing`,
            [a, b, tag],
          ));
        case "tord":
        case "ttot":
          return void (await c.query(
            `insert into ${this.t("tord")} (id, tenant, amount, ${this.v("tord")}, n) select g, $4, $5 + g % 7, $3, 0 from generate_series($1::int, $2::int) g on conflict do nothing`,
            [a, b, tag, tenant, amount],
          ));
      }
    };
  }

  /** Long REPEATABLE READ transactions: the snapshot is taken long before the first write, or a write is held open. */
  private async longTransactions() {
    const rng = new Rng(this.o.seed, "longtx");
    const c = await connect(this.o.sourceUrl, "torture longtx");
    await c.query("set lock_timeout = '4s'; set statement_timeout = '15s'");
    try {
      await this.nap(rng.int(500, 3000));
      while (this.running()) {
        const writeFirst = rng.chance(0.5);
        const hold1 = rng.int(1000, 4000);
        const hold2 = rng.int(500, 3000);
        const writes = this.plan(rng, `long.${this.r.faults["longtx"] ?? 0}`);
        this.count("longtx");
        try {
          await c.query("begin isolation level repeatable read");
          if (writeFirst) await this.steps(c, writes);
          else await c.query("select count(*) from pg_class"); // the snapshot, no xid yet
          await this.nap(hold1);
          if (!writeFirst) await this.steps(c, writes);
          await this.nap(hold2);
          await c.query("commit");
          this.r.committed++;
        } catch (err) {
          await c.query("rollback").catch(() => undefined);
          const code = codeOf(err);
          this.r.rolledBack++;
          this.r.errorCodes[code] = (this.r.errorCodes[code] ?? 0) + 1;
          if (!EXPECTED.has(code) && !RETRYABLE.has(code) && this.r.unexpectedErrors.length < 50) {
            this.r.unexpectedErrors.push(`${code}: ${(err as Error).message}`);
          }
        }
        await this.nap(rng.int(200, 2000));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  // ------------------------------------------------------------ faults

  private async ddlActor() {
    const kinds = this.o.ddl;
    if (kinds.length === 0) return;
    const rng = new Rng(this.o.seed, "ddl");
    const c = await connect(this.o.sourceUrl, "torture ddl");
    await c.query("set lock_timeout = '5s'");
    try {
      while (this.running()) {
        await this.nap(rng.int(1500, 5000));
        if (!this.running()) break;
        const kind = rng.pick(kinds);
        const t = rng.pick(TABLES.filter((x) => this.tables.has(x)));
        const s = this.shape;
        let ddl: string | undefined;
        let commit: () => void = () => undefined;
        const n = ++s.counter;
        switch (kind) {
          case "add": {
            const col = `x${n}`;
            const type = rng.pick(["int", "text default 'd'", "int default 7", "text"]);
            ddl = `alter table ${this.t(t)} add column ${q(col)} ${type}`;
            commit = () => s.added[t].push({ name: col, type: type.startsWith("int") ? "int" : "text" });
            break;
          }
          case "drop": {
            const cands = TABLES.filter((x) => s.added[x].length > 0 && this.tables.has(x));
            if (cands.length === 0) continue;
            const tt = rng.pick(cands);
            const col = rng.pick(s.added[tt]).name;
            ddl = `alter table ${this.t(tt)} drop column ${q(col)}`;
            commit = () => (s.added[tt] = s.added[tt].filter((x) => x.name !== col));
            break;
          }
          case "rename": {
            const to = `v${n}`;
            ddl = `alter table ${this.t(t)} rename column ${this.v(t)} to ${q(to)}`;
            commit = () => (s.vcol[t] = to);
            break;
          }
          case "renametable": {
            const to = `${t}_r${n}`;
            ddl = `alter table ${this.t(t)} rename to ${q(to)}`;
            commit = () => (s.name[t] = to);
            break;
          }
          case "key": {
            if (!this.tables.has("tu")) continue;
            // tu's primary key moves between (id) and (code); both stay unique.
            const toCode = s.tuKey === "id";
            ddl = toCode
              ? `alter table ${this.t("tu")} drop constraint tu_pkey, drop constraint tu_code_key, ` +
                `add constraint tu_pkey primary key (code), add constraint tu_id_key unique (id)`
              : `alter table ${this.t("tu")} drop constraint tu_pkey, drop constraint tu_id_key, ` +
                `add constraint tu_pkey primary key (id), add constraint tu_code_key unique (code)`;
            commit = () => (s.tuKey = toCode ? "code" : "id");
            break;
          }
        }
        if (!ddl) continue;
        // A DBA retries a DDL that lost a deadlock or waited too long for its locks.
        for (let attempt = 1; ; attempt++) {
          try {
            await c.query("select dbsync.execute_ddl('g', $1)", [ddl]);
            commit();
            this.count(`ddl:${kind}`);
            this.log(`ddl: ${ddl}${attempt > 1 ? ` (attempt ${attempt})` : ""}`);
            break;
          } catch (err) {
            const code = codeOf(err);
            this.count(`ddl-error-${code}`);
            if ((code === "40P01" || code === "55P03") && attempt < 5 && this.running()) {
              await this.nap(rng.int(100, 1000));
              continue;
            }
            this.count(`ddl-failed:${kind}`);
            this.log(`ddl failed (${code} ${(err as Error).message}): ${ddl}`);
            break;
          }
        }
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  private async adminActor() {
    const kinds = this.o.faults.filter((k) => k === "resync" || k === "pause");
    if (kinds.length === 0) return;
    const rng = new Rng(this.o.seed, "admin");
    const c = await connect(this.o.sourceUrl, "torture admin");
    try {
      while (this.running()) {
        await this.nap(rng.int(1500, 5000));
        if (!this.running()) break;
        const kind = rng.pick(kinds);
        const sub = rng.pick(this.subs);
        if (kind === "resync") {
          const t = rng.pick(TABLES.filter((x) => this.tables.has(x)));
          try {
            await c.query("select dbsync.resync_table($1, $2::regclass)", [sub, `public.${this.t(t)}`]);
            this.count("resync");
            this.log(`resync_table(${sub}, ${this.shape.name[t]})`);
          } catch (err) {
            this.count("resync-failed");
            this.log(`resync_table(${sub}, ${this.shape.name[t]}) failed: ${(err as Error).message}`);
          }
        } else {
          const ms = rng.int(300, 4000);
          await c.query("select dbsync.pause($1)", [sub]);
          this.paused.add(sub);
          this.count("pause");
          await this.nap(ms);
          await c.query("select dbsync.resume($1)", [sub]);
          this.paused.delete(sub);
        }
      }
    } finally {
      for (const s of this.paused) await c.query("select dbsync.resume($1)", [s]).catch(() => undefined);
      await c.end().catch(() => undefined);
    }
  }

  private async killActor() {
    if (!this.o.faults.includes("kill")) return;
    const rng = new Rng(this.o.seed, "kill");
    while (this.running()) {
      await this.nap(rng.int(3000, 9000));
      if (!this.running()) break;
      const down = rng.int(0, 1500);
      await this.stopSidecar("SIGKILL");
      this.count("sidecar-kill");
      await this.nap(down);
      this.startSidecar();
    }
  }

  // ------------------------------------------------------------ compare

  private async compareAll(src: Client) {
    for (const [i, url] of this.o.targetUrls.entries()) {
      const sub = `s${i + 1}`;
      const tgt = await connect(url, "torture compare");
      try {
        for (const t of TABLES) await this.compareTable(src, tgt, sub, t);
      } finally {
        await tgt.end();
      }
    }
    for (const t of TABLES) {
      this.r.sourceRows[this.shape.name[t]] = Number(
        (await src.query(`select count(*) as n from public.${q(this.shape.name[t])}`)).rows[0].n,
      );
    }
  }

  private async compareTable(src: Client, tgt: Client, sub: string, t: Table) {
    const name = this.shape.name[t];
    const diff = (kind: Difference["kind"], detail: string) => {
      this.r.differences.push({ target: sub, table: name, kind, detail });
      const k = `${sub}:${name}`;
      this.r.differencesByTable[k] = (this.r.differencesByTable[k] ?? 0) + 1;
    };
    const cols = async (c: Client) =>
      (
        await c.query(
          `select attname from pg_attribute where attrelid = to_regclass($1) and attnum > 0 and not attisdropped order by attnum`,
          [`public.${q(name)}`],
        )
      ).rows.map((r) => r.attname as string);
    const pk = async (c: Client) =>
      (
        await c.query(
          `select string_agg(a.attname, ',' order by k.ord) as k
             from pg_index i cross join lateral unnest(i.indkey) with ordinality k(attnum, ord)
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
            where i.indrelid = to_regclass($1) and i.indisprimary`,
          [`public.${q(name)}`],
        )
      ).rows[0]?.k as string | null;
    const sc = await cols(src);
    const tc = await cols(tgt);
    if (tc.length === 0) {
      diff("missing-table", `table ${name} does not exist on the target`);
      return;
    }
    const common = sc.filter((x) => tc.includes(x));
    const onlySrc = sc.filter((x) => !tc.includes(x));
    const onlyTgt = tc.filter((x) => !sc.includes(x));
    if (onlySrc.length || onlyTgt.length) {
      diff("schema", `columns only on the source: [${onlySrc.join(", ")}], only on the target: [${onlyTgt.join(", ")}]`);
    }
    const [sk, tk] = [await pk(src), await pk(tgt)];
    if (sk !== tk) diff("schema", `primary key (${sk}) on the source, (${tk}) on the target`);
    const text = async (c: Client) =>
      (await c.query(`select row(${common.map(q).join(", ")})::text as r from public.${q(name)}`)).rows.map((r) => r.r as string);
    const d = rowDiff(await text(src), await text(tgt));
    for (const r of d.onlyA) diff("only-on-source", `(${common.join(",")}) = ${r}`);
    for (const r of d.onlyB) diff("only-on-target", `(${common.join(",")}) = ${r}`);
  }
}

type Step = (c: Client) => Promise<void>;

export async function runTorture(opts: TortureOptions): Promise<TortureResult> {
  return new Torture(opts).run();
}

// ---------------------------------------------------------------- reporting

export function summary(r: TortureResult): string {
  const lines: string[] = [];
  lines.push(`seed ${r.seed}  (replay: DBSYNC_SEED=${r.seed} or --seed ${r.seed})`);
  lines.push(`duration ${(r.durationMs / 1000).toFixed(1)} s`);
  lines.push(
    `transactions: ${r.committed} committed, ${r.rolledBack} rolled back (${r.intentionalRollbacks} on purpose), ` +
      `${r.retries} retries after 40001/40P01; savepoints: ${r.savepointsRolledBack} rolled back, ${r.savepointsReleased} released`,
  );
  const codes = Object.entries(r.errorCodes).map(([k, v]) => `${k}×${v}`).join(" ");
  lines.push(`rollbacks by error code: ${codes || "none"}`);
  if (r.unexpectedErrors.length) {
    lines.push(`UNEXPECTED application errors (${r.unexpectedErrors.length}, first 10):`);
    for (const e of r.unexpectedErrors.slice(0, 10)) lines.push(`  ${e}`);
  }
  const faults = Object.entries(r.faults).sort().map(([k, v]) => `${k}×${v}`).join(" ");
  lines.push(`faults/admin actions: ${faults || "none"}`);
  if (r.sidecarDiedByItself) lines.push(`SIDECAR DIED BY ITSELF ${r.sidecarDiedByItself} time(s)`);
  lines.push(`source rows: ${Object.entries(r.sourceRows).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  lines.push(`wait_for_sync: ${Object.entries(r.synced).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  lines.push(`differences: ${r.differences.length}`);
  for (const [k, v] of Object.entries(r.differencesByTable)) lines.push(`  ${k}: ${v}`);
  for (const target of [...new Set(r.differences.map((d) => d.target))]) {
    const ds = r.differences.filter((d) => d.target === target);
    lines.push(`  first ${Math.min(20, ds.length)} of ${ds.length} on ${target}:`);
    for (const d of ds.slice(0, 20)) lines.push(`    ${d.table} ${d.kind}: ${d.detail}`);
  }
  lines.push(`sidecar log: ${r.sidecarLog}`);
  lines.push(r.ok ? "RESULT: OK (targets equal the source)" : "RESULT: DIVERGED");
  return lines.join("\n");
}

/** A comma list of kinds; unknown names are an error. */
export function parseKinds<T extends string>(what: string, value: string | undefined, all: readonly T[]): T[] | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === "" || v === "none") return [];
  if (v === "all") return [...all];
  const out = v.split(",").map((x) => x.trim()).filter(Boolean);
  for (const x of out) if (!all.includes(x as T)) throw new Error(`unknown ${what} kind "${x}" (known: ${all.join(", ")})`);
  return out as T[];
}
