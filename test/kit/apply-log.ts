// Which backends applied which table when, logged on the target: statement triggers
// that fire during apply (ALWAYS triggers fire under session_replication_role =
// replica) write (table, txid, backend pid, time) at the start and end of each
// statement through a dblink connection: autonomous writes, so attempts that roll
// back are logged too. Without dblink the log is written in the apply transaction
// itself (committed applies only). Used to show that two appliers of one
// subscription never overlap. And the sidecar's own log of its batches (phasesOf).
import { Pool } from "pg";

/** Creates apply_log and its triggers on `tables` of the target; false: dblink is not available. */
export async function installApplyLog(target: Pool, targetUrl: string, tables: string[]): Promise<boolean> {
  let dblink = true;
  try {
    await target.query("create extension dblink");
  } catch {
    dblink = false;
  }
  await target.query(applyLogSql(targetUrl, tables, dblink));
  return dblink;
}

function applyLogSql(targetUrl: string, tables: string[], dblink: boolean): string {
  const write = dblink
    ? `if not coalesce('applylog' = any (dblink_get_connections()), false) then
         perform dblink_connect('applylog', ${literal(targetUrl)});
       end if;
       perform dblink_exec('applylog', format('insert into apply_log values (%L, %s, %s, %L, %L)',
                           TG_TABLE_NAME, txid_current(), pg_backend_pid(), clock_timestamp(), TG_WHEN || ' ' || TG_OP));`
    : `insert into apply_log values (TG_TABLE_NAME, txid_current(), pg_backend_pid(), clock_timestamp(), TG_WHEN || ' ' || TG_OP);`;
  return `
    create table apply_log (tbl text not null, txid bigint not null, pid int not null, at timestamptz not null, what text not null);
    create function log_apply() returns trigger language plpgsql as $f$
    begin
      ${write}
      -- Slow every applied statement a little: wider windows for an overlap to show.
      if TG_WHEN = 'BEFORE' then perform pg_sleep(0.01); end if;
      return null;
    end $f$;
    ${tables
      .map(
        (t) => `
      create trigger log_start before insert or delete or truncate on ${t} for each statement execute procedure log_apply();
      create trigger log_end after insert or delete or truncate on ${t} for each statement execute procedure log_apply();
      alter table ${t} enable always trigger log_start, enable always trigger log_end;`,
      )
      .join("\n")}`;
}

function literal(s: string) {
  return `'${s.replace(/'/g, "''")}'`;
}

/** Apply transactions of one table (= one subscription) by two backends that overlap in time: none is right. */
export async function overlappingApplies(target: Pool): Promise<Record<string, unknown>[]> {
  const { rows } = await target.query(`
    with tx as (
      select tbl, pid, txid, min(at) as s, max(at) as e, count(*) as n
      from apply_log group by tbl, pid, txid)
    select x.tbl, x.pid as pid1, x.txid as tx1, x.s as s1, x.e as e1, y.pid as pid2, y.txid as tx2, y.s as s2, y.e as e2
    from tx x join tx y on x.tbl = y.tbl and x.pid < y.pid and x.s <= y.e and y.s <= x.e
    limit 5`);
  return rows;
}

/** Per table: apply transactions logged, and by how many backends. */
export async function appliesPerTable(target: Pool): Promise<{ tbl: string; txs: number; pids: number }[]> {
  const { rows } = await target.query(`
    select tbl, count(distinct (pid, txid))::int as txs, count(distinct pid)::int as pids
    from apply_log group by tbl order by tbl`);
  return rows;
}

/** The phases of the sidecar's "batch applied" debug lines so far (DBSYNC_LOG_LEVEL debug, json), summed. */
export function phasesOf(output: string): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const line of output.split("\n")) {
    if (!line.includes('"batch applied"')) continue;
    for (const [k, v] of Object.entries(JSON.parse(line).phases ?? {})) sum[k] = (sum[k] ?? 0) + Number(v);
  }
  return sum;
}
