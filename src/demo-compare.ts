// The demos' own check that a target equals its source: every table dbsync
// replicates, row by row, read from both sides in key order by COPY and merged
// here, so memory stays flat whatever the size (a few hundred MB in
// `demo:upgrade`). It reads whole rows as text (`row::text`), which is the same
// on every major from 10 for the demos' column types (no floats: their text
// changed in 12). Independent of dbsync's own verify, on purpose.
import { replicatedTables } from "./source/protocol";
import { Client, escapeIdentifier } from "pg";
import { to as copyTo } from "pg-copy-streams";
import { green, more, num, red, say, seconds } from "./demo-kit";

export interface TableDiff {
  table: string;
  rows: number;
  /** Keys the source has and the target lacks. */
  missing: number;
  /** Keys the target has and the source lacks. */
  extra: number;
  /** Keys on both sides whose rows differ. */
  changed: number;
  /** A few differing keys, for the reader. */
  examples: string[];
}

/** Compares one table on both sides; both clients must have the same timezone and datestyle. */
export async function compareTable(source: Client, target: Client, table: string, key: string[]): Promise<TableDiff> {
  const cols = key.map((k) => `r.${escapeIdentifier(k)}`).join(", ");
  const sql = `copy (select ${cols}, r::text from ${table} r order by ${cols}) to stdout`;
  const a = lines(source, sql);
  const b = lines(target, sql);
  const d: TableDiff = { table, rows: 0, missing: 0, extra: 0, changed: 0, examples: [] };
  const note = (line: string) => d.examples.length < 3 && d.examples.push(`(${keyOf(line, key.length).join(", ")})`);
  let x = await a.next();
  let y = await b.next();
  while (!x.done || !y.done) {
    const order = x.done ? 1 : y.done ? -1 : compareKeys(keyOf(x.value, key.length), keyOf(y.value, key.length));
    if (order === 0) {
      d.rows++;
      if (x.value !== y.value) {
        d.changed++;
        note(x.value as string);
      }
      [x, y] = await Promise.all([a.next(), b.next()]);
    } else if (order < 0) {
      d.rows++;
      d.missing++;
      note(x.value as string);
      x = await a.next();
    } else {
      d.extra++;
      note(y.value as string);
      y = await b.next();
    }
  }
  return d;
}

export const same = (d: TableDiff) => d.missing + d.extra + d.changed === 0;

/** Compares every replicated table, saying how each went; true when all are identical. */
export async function compareAll(source: Client, target: Client): Promise<boolean> {
  const started = Date.now();
  say("comparing every replicated table, row by row (COPY of key and row text, in key order, from both):");
  await Promise.all([source, target].map((c) => c.query("set timezone = 'UTC'; set datestyle = 'ISO'")));
  let ok = true;
  let rows = 0;
  const tables = await replicatedTables(source);
  const width = Math.max(...tables.map((t) => t.name.length));
  for (const t of tables) {
    const d = await compareTable(source, target, t.name, t.key);
    rows += d.rows;
    if (!same(d)) ok = false;
    more(`${t.name.padEnd(width)} ${num(d.rows).padStart(11)} rows on the source  ` +
      (same(d) ? green("identical on the target")
        : red(`DIFFERENT: ${num(d.missing)} missing, ${num(d.extra)} extra, ${num(d.changed)} changed on the target, e.g. keys ${d.examples.join(" ")}`)));
  }
  more(`${num(rows)} rows compared in ${seconds(Date.now() - started)}`);
  return ok;
}

/** The lines of a COPY TO STDOUT, one at a time. */
async function* lines(c: Client, sql: string): AsyncGenerator<string> {
  const stream = c.query(copyTo(sql));
  let rest = "";
  for await (const chunk of stream) {
    const parts = (rest + (chunk as Buffer).toString("utf8")).split("\n");
    rest = parts.pop() ?? "";
    yield* parts;
  }
  if (rest) yield rest;
}

/** The key fields of a COPY line (they come first, tab-separated). */
function keyOf(line: string, n: number): string[] {
  return line.split("\t", n);
}

/** Integers by value, anything else (dates in ISO form, text under the C collation) by its text. */
function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) {
    const c = /^-?\d+$/.test(a[i]) && /^-?\d+$/.test(b[i]) ? Math.sign(Number(BigInt(a[i]) - BigInt(b[i]))) : a[i] < b[i] ? -1 : a[i] > b[i] ? 1 : 0;
    if (c !== 0) return c;
  }
  return 0;
}

export interface SequenceCheck {
  name: string;
  source: string;
  target: string | null;
  /** The target's next value cannot collide with a value the source handed out. */
  ok: boolean;
}

/** Every sequence of the source outside dbsync's schemas, against the target's. */
export async function compareSequences(source: Client, target: Client): Promise<SequenceCheck[]> {
  const { rows: seqs } = await source.query<{ name: string }>(
    `select format('%I.%I', n.nspname, c.relname) as name
       from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'S' and n.nspname not like 'dbsync%' and n.nspname <> 'information_schema'
      order by 1`,
  );
  // last_value with is_called: the value the next nextval() starts after.
  const used = (c: Client, name: string) =>
    c.query(`select case when is_called then last_value else last_value - 1 end::text as v from ${name}`)
      .then((r) => r.rows[0].v as string, () => null);
  const out: SequenceCheck[] = [];
  for (const { name } of seqs) {
    const [s, t] = await Promise.all([used(source, name), used(target, name)]);
    out.push({ name, source: s ?? "-", target: t, ok: t !== null && s !== null && BigInt(t) >= BigInt(s) });
  }
  return out;
}
