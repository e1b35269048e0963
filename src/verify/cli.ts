// `dbsync verify <subscription> <table> [--repair]`: a thin face of
// dbsync.verify_table. Queues the verification, shows its progress while the
// sidecar runs it, prints the outcome. Exit code: 0 no differences (or all
// repaired), 4 differences remain, 1 the verification failed (SQL errors such as
// an unknown subscription are thrown, for the CLI's common error handler).
import { Client } from "pg";
import { clientConfig } from "../db";

export interface VerifyCommandOptions {
  repair?: boolean;
  json?: boolean;
  /** Stop waiting after this many seconds (the verification goes on); exit code 3. */
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

export async function verifyCommand(
  sourceUrl: string | undefined,
  subscription: string,
  table: string,
  opts: VerifyCommandOptions = {},
): Promise<number> {
  const print = opts.print ?? ((l: string) => process.stdout.write(l + "\n"));
  const tty = opts.tty ?? (!opts.json && !opts.print && process.stdout.isTTY === true);
  const pollMs = opts.pollMs ?? 500;
  const c = new Client(clientConfig(sourceUrl, { applicationName: "dbsync verify" }));
  c.on("error", () => undefined);
  await c.connect();
  try {
    const { rows } = await c.query("select dbsync.verify_table($1, $2::pg_catalog.text::pg_catalog.regclass, $3)::pg_catalog.text as id", [
      subscription,
      table,
      opts.repair === true,
    ]);
    const id: string = rows[0].id;
    if (!opts.json) print(`verification ${id}: ${table} on subscription "${subscription}"${opts.repair ? ", with repair" : ""}`);
    const started = Date.now();
    let lastLine = 0;
    let warnedQueued = false;
    let r: Row;
    for (;;) {
      r = (
        await c.query<Row>(
          `select verification_id::pg_catalog.text, subscription, table_name, repair, state, tick_id::pg_catalog.text, started_at,
                  compare_started_at, rows_estimated::pg_catalog.text, rows_compared::pg_catalog.text, chunks, chunks_differing,
                  differing_count::pg_catalog.text, rows_missing::pg_catalog.text, rows_extra::pg_catalog.text,
                  rows_different::pg_catalog.text, differing_keys, rows_repaired::pg_catalog.text,
                  extract(epoch from duration)::pg_catalog.float8 as duration_s, error
             from dbsync.verifications where verification_id OPERATOR(pg_catalog.=) $1::pg_catalog.int8`,
          [id],
        )
      ).rows[0];
      if (!r) throw new Error(`verification ${id} disappeared (was its subscription dropped?)`);
      if (r.state === "done" || r.state === "error") break;
      if (opts.timeoutSeconds !== undefined && Date.now() - started > opts.timeoutSeconds * 1000) {
        if (tty) process.stdout.write("\n");
        print(`still ${r.state} after ${opts.timeoutSeconds} s; see select * from dbsync.verifications where verification_id = ${id}`);
        return 3;
      }
      if (!opts.json) {
        const line = progressLine(r);
        if (tty) process.stdout.write(`\r${line}\x1b[K`);
        else if (Date.now() - lastLine >= 5000) {
          lastLine = Date.now();
          print(line);
        }
        if (r.state === "queued" && !warnedQueued && Date.now() - started > 10_000) {
          warnedQueued = true;
          if (tty) process.stdout.write("\n");
          print("still queued after 10 s: is `dbsync run` running against this source?");
        }
      }
      await new Promise((res) => setTimeout(res, pollMs));
    }
    if (tty) process.stdout.write("\r\x1b[K");
    const differing = Number(r.differing_count);
    const repaired = Number(r.rows_repaired);
    const code = r.state === "error" ? 1 : differing > repaired ? 4 : 0;
    if (opts.json) {
      print(JSON.stringify({ ...r, exit_code: code }, null, 2));
      return code;
    }
    for (const l of summary(r)) print(l);
    return code;
  } finally {
    await c.end().catch(() => undefined);
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

function summary(r: Row): string[] {
  if (r.state === "error") return [`verification ${r.verification_id} failed: ${r.error}`];
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
