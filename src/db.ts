// Connections. Every session dbsync opens pins the settings that change how a
// value is written as text, so that text read on the source parses back to the
// same value on the target, and uses TCP keepalives so a dead link is noticed.
import { Client, ClientConfig } from "pg";

export const PINNED_SETTINGS = [
  "set datestyle = 'ISO, YMD'",
  "set intervalstyle = 'postgres'",
  "set timezone = 'UTC'",
  "set extra_float_digits = 3",
  "set bytea_output = 'hex'",
  "set lc_monetary = 'C'",
].join("; ");

export interface ConnectOptions {
  applicationName: string;
  /** Abort a statement that runs longer (ms); 0 = no limit. */
  statementTimeoutMs?: number;
}

export function clientConfig(conninfo: string | undefined, opts: ConnectOptions): ClientConfig {
  const base: ClientConfig = conninfo ? { connectionString: conninfo } : {};
  return {
    ...base,
    application_name: opts.applicationName,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    connectionTimeoutMillis: 10_000,
    statement_timeout: opts.statementTimeoutMs ?? 0,
    idle_in_transaction_session_timeout: 60_000,
  };
}

export async function connect(conninfo: string | undefined, opts: ConnectOptions): Promise<Client> {
  const client = new Client(clientConfig(conninfo, opts));
  // An error on an idle client (server gone) must not crash the process; the next
  // query on it fails and the caller reconnects.
  client.on("error", () => undefined);
  await client.connect();
  try {
    await client.query(PINNED_SETTINGS);
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

export async function closeQuietly(client: Client | undefined) {
  if (client) await client.end().catch(() => undefined);
}

export { escapeIdentifier as quoteIdent, escapeLiteral as quoteLiteral } from "pg";
