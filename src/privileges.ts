// Permission errors of the CLI's commands, with the grant that is missing. PostgreSQL
// refuses a function or view the role may not use before dbsync's code runs, with a
// bare "permission denied" (42501); each command knows which grant set it needs
// (README, Security: Grants) and names it, for the role that was refused.
import type { Client, Pool } from "pg";
import { DbsyncError, messageOf, sqlstateOf } from "./errors";

/** monitor: dbsync.grant_monitor; sidecar: dbsync.grant_sidecar (`dbsync run`); admin: the administration grants. */
export type GrantSet = "monitor" | "sidecar" | "admin";

/** The statements that give `role` (an identifier and a literal, quoted) a grant set. */
function grantStatements(set: GrantSet, role: { ident: string; literal: string }): string {
  if (set === "monitor") return `select dbsync.grant_monitor(${role.literal});`;
  if (set === "sidecar") return `select dbsync.grant_sidecar(${role.literal});`;
  return (
    `grant usage on schema dbsync to ${role.ident}; grant execute on all functions in schema dbsync to ${role.ident}; ` +
    `grant select on dbsync.status, dbsync.table_status, dbsync.verifications, dbsync.unreplicated_ddl to ${role.ident};`
  );
}

/**
 * `err` as the command reports it: a permission error becomes one that names the
 * role and, in its hint, the grants to run as the dbsync owner; any other error is
 * returned as it is. `c` must still be open (it asks the server who it is).
 */
export async function explainDenied(c: Client | Pool, err: unknown, set: GrantSet): Promise<unknown> {
  if (sqlstateOf(err) !== "42501") return err;
  const who = await c
    .query<{ name: string; ident: string; literal: string }>(
      "select current_user::pg_catalog.text as name, pg_catalog.quote_ident(current_user) as ident, pg_catalog.quote_literal(current_user) as literal",
    )
    .then((r) => r.rows[0])
    .catch(() => undefined);
  if (!who) return err;
  const what = { monitor: "the monitoring rights", sidecar: "the sidecar's rights", admin: "dbsync's administration rights" }[set];
  return new DbsyncError(`${messageOf(err)} (role ${who.name} lacks ${what})`, {
    sqlstate: "42501",
    hint: `As the dbsync owner (the role that ran dbsync migrate): ${grantStatements(set, who)}`,
    cause: err,
  });
}
