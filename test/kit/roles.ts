// Sessions as another role: the test clusters trust local connections, so a
// conninfo with the role's name and no password is enough.
import { after } from "node:test";
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

/**
 * The roles a test file creates, each with the database it was made in: every one
 * is dropped with what it owns after the file's tests (best effort: a database gone
 * took its objects with it). Push each role as it is created.
 */
export function rolesDroppedAfter(): { url: string; role: string }[] {
  const made: { url: string; role: string }[] = [];
  after(async () => {
    for (const { url, role } of made.reverse()) {
      const admin = new Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query(`drop owned by ${role} cascade`).catch(() => undefined);
        await admin.query(`drop role if exists ${role}`).catch(() => undefined);
      } finally {
        await admin.end();
      }
    }
  });
  return made;
}
