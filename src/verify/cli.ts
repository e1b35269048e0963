// `dbsync verify <subscription> [<table>] [--repair]`: a thin face of
// dbsync.verify_table (one table) and dbsync.verify_subscription (every table of
// the subscription). Queues the verifications, shows their progress while the
// sidecar runs them, prints the outcome table by table. Exit code: 0 no
// differences (or all repaired); 4 differences remain in some table; 1 a
// verification failed or a table could not be verified (and none differs); 3 still
// running at --timeout. SQL errors such as an unknown subscription are thrown, for
// the CLI's common error handler.
import { Client } from "pg";
import { clientConfig } from "../db/connect";
import { explainDenied } from "../privileges";

export interface VerifyCommandOptions {
  repair?: boolean;
  json?: boolean;
  /** Stop waiting after this many seconds (the verifications go on); exit code 3. */
  timeoutSeconds?: number;
  pollMs?: number;
  /** Where lines go (stdout by default); tests capture them. */
  print?: (line: string) => void;
  /** Rewrite one progress line in place (a TTY); else a progress line every few seconds. */
  tty?: boolean;
}

interface Row {
  verification_id: string;
  subscription: string;
  table_name: string;
  repair: boolean;
  state: string;
  tick_id: string | null;
  started_at: Date | null;
  compare_started_at: Date | null;
  rows_estimated: string | null;
  rows_compared: string;
  chunks: number;
  chunks_differing: number;
  differing_count: string;
  rows_missing: string;
  rows_extra: string;
  rows_different: string;
  differing_keys: string[];
  rows_repaired: string;
  duration_s: number | null;
  error: string | null;
}

/** One table of the command: its verification, or why it has none. */
interface Item {
  table: string;
  id?: string;
  notVerified?: string;
  row?: Row;
}

const finished = (i: Item) => i.notVerified !== undefined || i.row?.state === "done" || i.row?.state === "error";

/** 0 equal (or repaired), 4 rows differ, 1 failed or not verified. */
function exitCode(i: Item): number {
  if (!i.row || i.row.state === "error") return 1;
  return Number(i.row.differing_count) > Number(i.row.rows_repaired) ? 4 : 0;
}

/** The subscription's code: differences first (they need acting on), then failures. */
function overallCode(items: Item[]): number {
  const codes = items.map(exitCode);
  return codes.includes(4) ? 4 : codes.includes(1) ? 1 : 0;
}

export async function verifyCommand(
  sourceUrl: string | undefined,
  subscription: string,
  table: string | undefined,
  opts: VerifyCommandOptions = {},
): Promise<number> {
  const print = opts.print ?? ((l: string) => process.stdout.write(l + "\n"));
  const tty = opts.tty ?? (!opts.json && !opts.print && process.stdout.isTTY === true);
  const pollMs = opts.pollMs ?? 500;
  const c = new Client(clientConfig(sourceUrl, { applicationName: "dbsync verify", pinned: true }));
  c.on("error", () => undefined);
  await c.connect();
  try {
    const items = await queue(c, subscription, table, opts.repair === true).catch(async (err) => {
      throw await explainDenied(c, err, "admin");
    });
    const what = table ?? `${items.length} table(s) of subscription "${subscription}"`;
    if (!opts.json) {
      const ids = items.filter((i) => i.id).map((i) => i.id);
      print(`verification${ids.length === 1 ? "" : "s"} ${ids.join(", ") || "(none)"}: ${table ? `${table} on subscription "${subscription}"` : what}${opts.repair ? ", with repair" : ""}`);
    }
    const started = Date.now();
    let lastLine = 0;
    let warnedQueued = false;
    for (;;) {
      await poll(c, items).catch(async (err) => {
        throw await explainDenied(c, err, "admin");
      });
      const pending = items.filter((i) => !finished(i));
      if (!pending.length) break;
      if (opts.timeoutSeconds !== undefined && Date.now() - started > opts.timeoutSeconds * 1000) {
        if (tty) process.stdout.write("\n");
        const ids = pending.map((i) => i.id).join(", ");
        print(`still ${pending.map((i) => i.row!.state).join(", ")} after ${opts.timeoutSeconds} s; see select * from dbsync.verifications where verification_id in (${ids})`);
        return 3;
      }
      if (!opts.json) {
        const line = table ? progressLine(pending[0].row!) : `${items.length - pending.length} of ${items.length} tables done; ${pending[0].table}: ${progressLine(pending[0].row!)}`;
        if (tty) process.stdout.write(`\r${line}\x1b[K`);
        else if (Date.now() - lastLine >= 5000) {
          lastLine = Date.now();
          print(line);
        }
        if (pending.every((i) => i.row!.state === "queued") && !warnedQueued && Date.now() - started > 10_000) {
          warnedQueued = true;
          if (tty) process.stdout.write("\n");
          print("still queued after 10 s: is `dbsync run` running against this source?");
        }
      }
      await new Promise((res) => setTimeout(res, pollMs));
    }
    if (tty) process.stdout.write("\r\x1b[K");
    const code = overallCode(items);
    if (opts.json) {
      const one = (i: Item) => (i.row ? { ...i.row, exit_code: exitCode(i) } : { table_name: i.table, not_verified: i.notVerified, exit_code: 1 });
      print(JSON.stringify(table ? one(items[0]) : { subscription, exit_code: code, tables: items.map(one) }, null, 2));
      return code;
    }
    for (const i of items) for (const l of summary(i)) print(l);
    if (!table) print(total(subscription, items));
    return code;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** One verification (a table named), or one per table of the subscription. */
async function queue(c: Client, subscription: string, table: string | undefined, repair: boolean): Promise<Item[]> {
  if (table !== undefined) {
    const { rows } = await c.query("select dbsync.verify_table($1, $2::pg_catalog.text::pg_catalog.regclass, $3)::pg_catalog.text as id", [
      subscription,
      table,
      repair,
    ]);
    return [{ table, id: rows[0].id }];
  }
  const { rows } = await c.query<{ table_name: string; id: string | null; not_verified: string | null }>(
    "select table_name, verification_id::pg_catalog.text as id, not_verified from dbsync.verify_subscription($1, $2)",
    [subscription, repair],
  );
  return rows.map((r) => (r.id ? { table: r.table_name, id: r.id } : { table: r.table_name, notVerified: r.not_verified ?? "not verified" }));
}

/** Reads the current state of the items' verifications into them. */
async function poll(c: Client, items: Item[]): Promise<void> {
  const ids = items.filter((i) => i.id && !finished(i)).map((i) => i.id);
  if (!ids.length) return;
  const { rows } = await c.query<Row>(
    `select verification_id::pg_catalog.text, subscription, table_name, repair, state, tick_id::pg_catalog.text, started_at,
            compare_started_at, rows_estimated::pg_catalog.text, rows_compared::pg_catalog.text, chunks, chunks_differing,
            differing_count::pg_catalog.text, rows_missing::pg_catalog.text, rows_extra::pg_catalog.text,
            rows_different::pg_catalog.text, differing_keys, rows_repaired::pg_catalog.text,
            extract(epoch from duration)::pg_catalog.float8 as duration_s, error
       from dbsync.verifications where verification_id OPERATOR(pg_catalog.=) any ($1::pg_catalog.int8[])`,
    [ids],
  );
  for (const i of items) {
    if (!ids.includes(i.id)) continue;
    const r = rows.find((r) => r.verification_id === i.id);
    if (!r) throw new Error(`verification ${i.id} disappeared (was its subscription dropped?)`);
    i.row = r;
  }
}

function progressLine(r: Row): string {
  if (r.state === "queued") return "queued: waiting for the sidecar";
  if (!r.compare_started_at) return `waiting for the target to reach tick ${r.tick_id}`;
  const done = Number(r.rows_compared);
  const total = r.rows_estimated ? Number(r.rows_estimated) : 0;
  const pct = total ? ` (~${Math.min(99, Math.floor((done / total) * 100))}%)` : "";
  return `compared ${done}${total ? ` of ~${total}` : ""} rows${pct} in ${r.chunks} chunks, ${r.differing_count} differing`;
}

function summary(i: Item): string[] {
  const r = i.row;
  if (!r) return [`${i.table}: not verified: ${i.notVerified}`];
  if (r.state === "error") return [`${i.table}: verification ${r.verification_id} failed: ${r.error}`];
  const head =
    `${r.table_name}: ${r.rows_compared} rows in ${r.chunks} chunks compared at tick ${r.tick_id}` +
    (r.duration_s !== null ? ` in ${r.duration_s.toFixed(1)} s` : "");
  const differing = Number(r.differing_count);
  if (!differing) return [head, "no differences"];
  const keys = r.differing_keys;
  const out = [
    head,
    `${differing} rows differ: ${r.rows_missing} missing on the target, ${r.rows_extra} only on the target, ${r.rows_different} different`,
    `keys: ${keys.slice(0, 20).join(", ")}${differing > 20 ? `, ... (first ${keys.length} in dbsync.verifications.differing_keys)` : ""}`,
  ];
  if (r.repair) out.push(`repaired ${r.rows_repaired} rows on the target`);
  else out.push(`to fix them: dbsync verify ${r.subscription} ${r.table_name} --repair`);
  return out;
}

function total(subscription: string, items: Item[]): string {
  const codes = items.map(exitCode);
  const n = (c: number) => codes.filter((x) => x === c).length;
  return `subscription "${subscription}": ${items.length} table(s): ${n(0)} equal, ${n(4)} with differences, ${n(1)} failed or not verified`;
}
