// Sessions as another role: the test clusters trust local connections, so a
// conninfo with the role's name and no password is enough.
import { Client } from "pg";

/** `url` with `role` as its user and no password. */
export function asRole(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = "";
  return u.toString();
}

/** A connected session as `role`; a server that goes away is not an unhandled error. */
export async function connectAs(url: string, role: string): Promise<Client> {
  const c = new Client({ connectionString: asRole(url, role) });
  await c.connect();
  c.on("error", () => undefined);
  return c;
}
