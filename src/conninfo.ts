// Connection strings read as libpq reads them: `keyword=value` lists (values
// single-quoted or backslash-escaped) and `postgres://` / `postgresql://` URIs, with
// libpq's keywords, its environment variables (PGSSLMODE ...), its defaults
// (sslmode=prefer) and its files (~/.pgpass or passfile, pg_service.conf,
// ~/.postgresql/root.crt ...). node-postgres parses URLs itself and gives several of
// them other meanings (sslmode=require verifies the certificate there; libpq only
// encrypts), so dbsync turns a conninfo into node-postgres settings here, once.
//
// The same grammar and keyword list are checked in SQL by dbsync._conninfo_check
// (add_subscription); test/conninfo.test.ts keeps the two lists equal.
// Errors never echo a value (a misplaced password could be one); keywords they do.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import type { ClientConfig } from "pg";
import { ConninfoError } from "./errors";
import { NegotiatedSocket } from "./ssl-socket";

/**
 * libpq's keywords (PostgreSQL 14 to 18) and what dbsync does with each:
 * "yes" as libpq does; "no-op" accepted, without effect in dbsync (the reason is in
 * UNSUPPORTED_WHY when it is not obvious); "no" refused with UNSUPPORTED_WHY.
 */
export const LIBPQ_KEYWORDS: Record<string, "yes" | "no-op" | "no"> = {
  host: "yes",
  hostaddr: "yes",
  port: "yes",
  dbname: "yes",
  user: "yes",
  password: "yes",
  passfile: "yes",
  service: "yes",
  connect_timeout: "yes",
  client_encoding: "yes",
  options: "yes",
  application_name: "yes",
  fallback_application_name: "yes",
  keepalives: "yes",
  keepalives_idle: "yes",
  keepalives_interval: "no-op",
  keepalives_count: "no-op",
  tcp_user_timeout: "no-op",
  sslmode: "yes",
  sslnegotiation: "yes",
  sslcompression: "no-op",
  sslcert: "yes",
  sslkey: "yes",
  sslpassword: "yes",
  sslcertmode: "yes",
  sslrootcert: "yes",
  sslcrl: "yes",
  sslcrldir: "yes",
  sslsni: "yes",
  ssl_min_protocol_version: "yes",
  ssl_max_protocol_version: "yes",
  sslkeylogfile: "no",
  channel_binding: "yes",
  gssencmode: "yes",
  krbsrvname: "no",
  gsslib: "no",
  gssdelegation: "no",
  requirepeer: "no",
  require_auth: "no",
  target_session_attrs: "yes",
  load_balance_hosts: "yes",
  replication: "no",
  min_protocol_version: "yes",
  max_protocol_version: "yes",
  scram_client_key: "no",
  scram_server_key: "no",
  oauth_issuer: "no",
  oauth_client_id: "no",
  oauth_client_secret: "no",
  oauth_scope: "no",
};

const GSS = "dbsync's sidecar (node-postgres) has no GSSAPI/Kerberos support; use password, SCRAM or certificate authentication";
export const UNSUPPORTED_WHY: Record<string, string> = {
  keepalives_interval: "Node.js sets only the idle time of TCP keepalives; dbsync also watches every link itself (DBSYNC_QUERY_TIMEOUT_MS)",
  keepalives_count: "Node.js sets only the idle time of TCP keepalives; dbsync also watches every link itself (DBSYNC_QUERY_TIMEOUT_MS)",
  tcp_user_timeout: "Node.js cannot set TCP_USER_TIMEOUT; dbsync watches every link itself (DBSYNC_QUERY_TIMEOUT_MS)",
  sslcompression: "as in libpq with current OpenSSL, TLS compression is never used",
  sslkeylogfile: "TLS key logging is a debugging aid dbsync does not offer",
  krbsrvname: GSS,
  gsslib: GSS,
  gssdelegation: GSS,
  requirepeer: "node-postgres cannot read a Unix socket's peer credentials",
  require_auth: "node-postgres cannot restrict the authentication methods it accepts",
  replication: "dbsync connects as a normal client, never as a replication client",
  scram_client_key: "it serves pass-through authentication (postgres_fdw, dblink), not clients like dbsync",
  scram_server_key: "it serves pass-through authentication (postgres_fdw, dblink), not clients like dbsync",
  oauth_issuer: "node-postgres has no OAuth support",
  oauth_client_id: "node-postgres has no OAuth support",
  oauth_client_secret: "node-postgres has no OAuth support",
  oauth_scope: "node-postgres has no OAuth support",
};

/** Values libpq accepts for its enumerated keywords. */
export const ENUM_VALUES: Record<string, string[]> = {
  sslmode: ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
  sslnegotiation: ["postgres", "direct"],
  sslcertmode: ["disable", "allow", "require"],
  channel_binding: ["disable", "prefer", "require"],
  gssencmode: ["disable", "prefer", "require"],
  target_session_attrs: ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"],
  load_balance_hosts: ["disable", "random"],
  ssl_min_protocol_version: ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
  ssl_max_protocol_version: ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
  min_protocol_version: ["3.0", "3.2", "latest"],
  max_protocol_version: ["3.0", "3.2", "latest"],
  sslsni: ["0", "1"],
  sslcompression: ["0", "1"],
  keepalives: ["0", "1"],
};

/** libpq's environment variables, for the keywords dbsync reads from the environment. */
const ENV: Record<string, string> = {
  host: "PGHOST",
  hostaddr: "PGHOSTADDR",
  port: "PGPORT",
  dbname: "PGDATABASE",
  user: "PGUSER",
  password: "PGPASSWORD",
  passfile: "PGPASSFILE",
  service: "PGSERVICE",
  connect_timeout: "PGCONNECT_TIMEOUT",
  client_encoding: "PGCLIENTENCODING",
  options: "PGOPTIONS",
  application_name: "PGAPPNAME",
  sslmode: "PGSSLMODE",
  sslnegotiation: "PGSSLNEGOTIATION",
  sslcompression: "PGSSLCOMPRESSION",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
  sslcertmode: "PGSSLCERTMODE",
  sslrootcert: "PGSSLROOTCERT",
  sslcrl: "PGSSLCRL",
  sslcrldir: "PGSSLCRLDIR",
  sslsni: "PGSSLSNI",
  ssl_min_protocol_version: "PGSSLMINPROTOCOLVERSION",
  ssl_max_protocol_version: "PGSSLMAXPROTOCOLVERSION",
  channel_binding: "PGCHANNELBINDING",
  gssencmode: "PGGSSENCMODE",
  krbsrvname: "PGKRBSRVNAME",
  gsslib: "PGGSSLIB",
  requirepeer: "PGREQUIREPEER",
  require_auth: "PGREQUIREAUTH",
  target_session_attrs: "PGTARGETSESSIONATTRS",
  load_balance_hosts: "PGLOADBALANCEHOSTS",
  min_protocol_version: "PGMINPROTOCOLVERSION",
  max_protocol_version: "PGMAXPROTOCOLVERSION",
};

/** A keyword libpq does not know: the hint names the nearest one. */
function unknownKeyword(keyword: string, where: string): ConninfoError {
  const near = nearestKeyword(keyword);
  return new ConninfoError(
    `${where} "${keyword}"`,
    (near ? `Did you mean "${near}"? ` : "") + `libpq's keywords: ${Object.keys(LIBPQ_KEYWORDS).join(", ")}.`,
  );
}

export function nearestKeyword(word: string): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of Object.keys(LIBPQ_KEYWORDS)) {
    const d = editDistance(word.toLowerCase(), k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

const isSpace = (c: string) => c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v";

/**
 * The keywords and values of a conninfo, as libpq's conninfo_parse and
 * conninfo_uri_parse read them (later keywords win, as there). Checks keywords, not
 * values: see checkValues.
 */
export function parseConninfo(conninfo: string): Map<string, string> {
  if (/^postgres(ql)?:\/\//.test(conninfo)) return parseUri(conninfo);
  const out = new Map<string, string>();
  let i = 0;
  const n = conninfo.length;
  while (i < n) {
    if (isSpace(conninfo[i])) {
      i++;
      continue;
    }
    let name = "";
    while (i < n && conninfo[i] !== "=" && !isSpace(conninfo[i])) name += conninfo[i++];
    while (i < n && isSpace(conninfo[i])) i++;
    if (conninfo[i] !== "=") {
      throw new ConninfoError(
        `missing "=" after "${name.slice(0, 40)}" in connection info string`,
        "Write keyword=value pairs separated by spaces (e.g. host=replica dbname=app user=dbsync), or a URI postgresql://user@host:5432/dbname.",
      );
    }
    i++;
    while (i < n && isSpace(conninfo[i])) i++;
    let value = "";
    if (conninfo[i] !== "'") {
      while (i < n && !isSpace(conninfo[i])) {
        if (conninfo[i] === "\\") {
          i++;
          if (i < n) value += conninfo[i++];
        } else value += conninfo[i++];
      }
    } else {
      i++;
      for (;;) {
        if (i >= n) {
          throw new ConninfoError("unterminated quoted string in connection info string", "Close the value's single quote; write \\' for a quote inside it.");
        }
        if (conninfo[i] === "\\") {
          i++;
          if (i < n) value += conninfo[i++];
          continue;
        }
        if (conninfo[i] === "'") {
          i++;
          break;
        }
        value += conninfo[i++];
      }
    }
    if (!(name in LIBPQ_KEYWORDS)) throw unknownKeyword(name, "invalid connection option");
    out.set(name, value);
  }
  return out;
}

function decode(s: string): string {
  if (/%(?![0-9a-fA-F]{2})/.test(s)) throw new ConninfoError("invalid percent-encoded token in URI");
  const bytes: number[] = [];
  for (let i = 0; i < s.length; ) {
    if (s[i] === "%") {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      const code = s.codePointAt(i)!;
      const ch = String.fromCodePoint(code);
      bytes.push(...Buffer.from(ch, "utf8"));
      i += ch.length;
    }
  }
  if (bytes.includes(0)) throw new ConninfoError("forbidden value %00 in percent-encoded value");
  return Buffer.from(bytes).toString("utf8");
}

/** postgresql://[user[:password]@][host[:port][,...]][/dbname][?keyword=value&...] */
function parseUri(uri: string): Map<string, string> {
  const out = new Map<string, string>();
  let rest = uri.replace(/^postgres(ql)?:\/\//, "");
  // user[:password]@ : only an @ before the path counts.
  const pathAt = rest.search(/[/?]/);
  const authority = pathAt < 0 ? rest : rest.slice(0, pathAt);
  rest = pathAt < 0 ? "" : rest.slice(pathAt);
  let hosts = authority;
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    hosts = authority.slice(at + 1);
    const colon = userinfo.indexOf(":");
    const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (user) out.set("user", decode(user));
    if (colon >= 0) out.set("password", decode(userinfo.slice(colon + 1)));
  }
  if (hosts) {
    const hostList: string[] = [];
    const portList: string[] = [];
    for (const spec of hosts.split(",")) {
      let host = spec;
      let port = "";
      if (spec.startsWith("[")) {
        const close = spec.indexOf("]");
        if (close < 0) throw new ConninfoError('end of string reached when looking for matching "]" in IPv6 host address in URI');
        host = spec.slice(1, close);
        if (!host) throw new ConninfoError("IPv6 host address may not be empty in URI");
        const after = spec.slice(close + 1);
        if (after && !after.startsWith(":")) {
          throw new ConninfoError('unexpected character after the IPv6 host address in URI (expected ":" or "/")');
        }
        port = after.slice(1);
      } else {
        const colon = spec.indexOf(":");
        if (colon >= 0) [host, port] = [spec.slice(0, colon), spec.slice(colon + 1)];
      }
      hostList.push(decode(host));
      portList.push(decode(port));
    }
    if (hostList.some((h) => h)) out.set("host", hostList.join(","));
    if (portList.some((p) => p)) out.set("port", portList.join(","));
  }
  let query = "";
  if (rest.startsWith("/")) {
    const q = rest.indexOf("?");
    const db = q < 0 ? rest.slice(1) : rest.slice(1, q);
    if (db) out.set("dbname", decode(db));
    query = q < 0 ? "" : rest.slice(q + 1);
  } else if (rest.startsWith("?")) query = rest.slice(1);
  if (query) {
    for (const param of query.split("&")) {
      if (!param) continue;
      const eq = param.indexOf("=");
      if (eq < 0) throw new ConninfoError(`missing key/value separator "=" in URI query parameter`);
      if (param.indexOf("=", eq + 1) >= 0) throw new ConninfoError(`extra key/value separator "=" in URI query parameter`);
      let key = decode(param.slice(0, eq));
      let value = decode(param.slice(eq + 1));
      // As libpq: the JDBC-style ssl=true means sslmode=require.
      if (key === "ssl" && value === "true") [key, value] = ["sslmode", "require"];
      if (!(key in LIBPQ_KEYWORDS)) throw unknownKeyword(key, "invalid URI query parameter:");
      out.set(key, value);
    }
  }
  return out;
}

/** Values libpq would refuse when connecting (an unknown sslmode ...), and keywords dbsync refuses. */
export function checkValues(params: Map<string, string>): void {
  for (const [k, v] of params) {
    if (LIBPQ_KEYWORDS[k] === "no" && v !== "") {
      if (k === "replication" && /^(0|off|false|no)$/i.test(v)) continue;
      throw new ConninfoError(`"${k}" is not supported by dbsync`, `${UNSUPPORTED_WHY[k]}. Leave it out.`);
    }
    const allowed = ENUM_VALUES[k];
    if (allowed && v !== "" && !allowed.includes(v)) {
      throw new ConninfoError(`invalid ${k} value`, `Valid values: ${allowed.join(", ")}.`);
    }
  }
  const int = (k: string, min: number, max = 2 ** 31 - 1) => {
    const v = params.get(k);
    if (v === undefined || v === "") return;
    for (const part of k === "port" ? v.split(",") : [v]) {
      if (part === "" && k === "port") continue;
      if (!/^\s*[+-]?\d+\s*$/.test(part) || Number(part) < min || Number(part) > max) {
        throw new ConninfoError(`invalid integer value for connection option "${k}"`, `${k} is a whole number from ${min}${max < 2 ** 31 - 1 ? ` to ${max}` : ""}.`);
      }
    }
  };
  int("port", 1, 65535);
  for (const k of ["connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"]) int(k, 0);
  const enc = params.get("client_encoding");
  if (enc && !/^(utf-?8|unicode|auto)$/i.test(enc)) {
    throw new ConninfoError(`this client_encoding is not supported by dbsync`, "dbsync reads and writes text as UTF8: leave client_encoding out (or set UTF8).");
  }
  const gss = params.get("gssencmode");
  if (gss === "require") throw new ConninfoError(`gssencmode=require is not supported by dbsync`, `${GSS}; use sslmode for encryption.`);
  if (params.get("sslcertmode") === "require") {
    throw new ConninfoError(`sslcertmode=require is not supported by dbsync`, "node-postgres cannot tell whether the server asked for the client certificate; use sslcertmode=allow (the default).");
  }
  if (params.get("min_protocol_version") === "3.2") {
    throw new ConninfoError(`min_protocol_version=3.2 is not supported by dbsync`, "node-postgres speaks protocol 3.0; leave min_protocol_version out.");
  }
  const hosts = [params.get("host"), params.get("hostaddr"), params.get("port")].filter((v) => v?.includes(","));
  if (hosts.length) {
    throw new ConninfoError(`several hosts or ports are not supported by dbsync`, "Name one host and one port (for failover, point a DNS name or a pooler at the current primary).");
  }
  if (params.get("host")?.startsWith("@")) {
    throw new ConninfoError(`abstract Unix sockets (host=@...) are not supported by dbsync`, "Use a socket directory (host=/var/run/postgresql) or a TCP host.");
  }
}

/** A pg_service.conf section's keywords (PGSERVICEFILE or ~/.pg_service.conf, then PGSYSCONFDIR/pg_service.conf). */
function serviceParams(name: string, env: NodeJS.ProcessEnv): Map<string, string> {
  const files = [env.PGSERVICEFILE ?? path.join(os.homedir(), ".pg_service.conf")];
  if (env.PGSYSCONFDIR) files.push(path.join(env.PGSYSCONFDIR, "pg_service.conf"));
  for (const file of files) {
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      continue;
    }
    let inSection = false;
    let found = false;
    const out = new Map<string, string>();
    for (const [i, raw] of text.split(/\r?\n/).entries()) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      if (line.startsWith("[")) {
        if (found && inSection) return out;
        inSection = line === `[${name}]`;
        found ||= inSection;
        continue;
      }
      if (!inSection) continue;
      const eq = line.indexOf("=");
      if (eq < 0) throw new ConninfoError(`syntax error in service file "${file}", line ${i + 1}`);
      const key = line.slice(0, eq).trim();
      if (key === "service") throw new ConninfoError(`nested "service" specifications not supported in service file "${file}", line ${i + 1}`);
      if (!(key in LIBPQ_KEYWORDS)) throw unknownKeyword(key, `service file "${file}", line ${i + 1}: invalid connection option`);
      out.set(key, line.slice(eq + 1).trim());
    }
    if (found) return out;
  }
  throw new ConninfoError(`definition of service "${name}" not found`, "Define it in ~/.pg_service.conf (or PGSERVICEFILE, or PGSYSCONFDIR/pg_service.conf) on the sidecar's host.");
}

/**
 * Every keyword's value as libpq would use it: the conninfo's, else the service's,
 * else the environment's. Unset keywords are absent.
 */
export function resolveConninfo(conninfo: string | undefined, env: NodeJS.ProcessEnv = process.env): Map<string, string> {
  const given = conninfo ? parseConninfo(conninfo) : new Map<string, string>();
  const service = given.get("service") ?? env.PGSERVICE;
  const fromService = service ? serviceParams(service, env) : new Map<string, string>();
  const out = new Map<string, string>();
  for (const k of Object.keys(LIBPQ_KEYWORDS)) {
    const v = given.get(k) ?? fromService.get(k) ?? (ENV[k] ? env[ENV[k]] : undefined);
    if (v !== undefined && v !== "") out.set(k, v);
  }
  checkValues(out);
  return out;
}

/** What a conninfo means for node-postgres: every setting a pg Client takes from it. */
export interface ConnSettings {
  config: ClientConfig;
  /** Refuse a server that does not ask for the password (ownPasswordOnly). */
  passwordRequired: boolean;
  /** target_session_attrs to check once connected ("any" needs nothing). */
  targetSessionAttrs: string;
  /** Client TCP keepalives (keepalives=0 turns them off). */
  keepAlive: boolean;
  keepAliveIdleMs?: number;
}

const read = (file: string, what: string): Buffer => {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new ConninfoError(`could not read ${what} "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
};

const exists = (file: string) => {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
};

const SYSTEM_HINT = "The system's roots vouch for many hosts: only verify-full (certificate and host name) is safe with them; or name your own CA's file in sslrootcert.";

/** TLS options with libpq's meaning for sslmode and the ssl* keywords; no client certificate with `ownPassword`. */
function tlsOptions(p: Map<string, string>, host: string | undefined, env: NodeJS.ProcessEnv, ownPassword: boolean): tls.ConnectionOptions {
  const mode = p.get("sslmode") ?? "prefer";
  const home = env.HOME ?? os.homedir();
  const dir = path.join(home, ".postgresql");
  const o: tls.ConnectionOptions = {};
  // Client certificate: given, else ~/.postgresql/postgresql.crt when it exists (libpq).
  if (p.get("sslcertmode") !== "disable" && !ownPassword) {
    const cert = p.get("sslcert") ?? path.join(dir, "postgresql.crt");
    if (exists(cert)) {
      o.cert = read(cert, "certificate file");
      const key = p.get("sslkey") ?? path.join(dir, "postgresql.key");
      o.key = read(key, "private key file");
      const pass = p.get("sslpassword");
      if (pass) o.passphrase = pass;
    } else if (p.has("sslcert")) {
      read(cert, "certificate file"); // names the file in the error
    }
  }
  // Root certificates: sslrootcert, else ~/.postgresql/root.crt; "system": the
  // system's trusted roots (libpq 16+).
  const rootcert = p.get("sslrootcert") ?? path.join(dir, "root.crt");
  if (rootcert === "system" && mode !== "verify-full") {
    throw new ConninfoError(`weak sslmode "${mode}" may not be used with sslrootcert=system (use "verify-full")`, SYSTEM_HINT);
  }
  const haveRoot = rootcert === "system" || exists(rootcert);
  if (rootcert !== "system" && haveRoot) o.ca = read(rootcert, "root certificate file");
  // Verification: verify-ca and verify-full always; require when a root
  // certificate file is there (libpq: then require behaves as verify-ca); never
  // for prefer and allow.
  const verifyChain = mode === "verify-ca" || mode === "verify-full" || (mode === "require" && haveRoot);
  if ((mode === "verify-ca" || mode === "verify-full") && !haveRoot) {
    throw new ConninfoError(
      `root certificate file "${rootcert}" does not exist`,
      `Either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification.`,
    );
  }
  o.rejectUnauthorized = verifyChain;
  if (verifyChain && mode !== "verify-full") o.checkServerIdentity = () => undefined;
  else if (mode === "verify-full" && host) o.checkServerIdentity = (_h, cert) => tls.checkServerIdentity(host, cert);
  for (const [k, crlPath] of [["sslcrl", p.get("sslcrl")], ["sslcrldir", p.get("sslcrldir")]] as const) {
    if (!crlPath) continue;
    const files = k === "sslcrl" ? [crlPath] : fs.readdirSync(crlPath).map((f) => path.join(crlPath, f)).filter(exists);
    const crls = files.map((f) => read(f, "certificate revocation list"));
    o.crl = [...((o.crl as Buffer[] | undefined) ?? []), ...crls];
  }
  const min = p.get("ssl_min_protocol_version") ?? "TLSv1.2";
  o.minVersion = min as tls.SecureVersion;
  const max = p.get("ssl_max_protocol_version");
  if (max) o.maxVersion = max as tls.SecureVersion;
  // SNI: on unless sslsni=0; never an IP address (RFC 6066).
  if (p.get("sslsni") !== "0" && host && !/^[\d.]+$|:/.test(host)) o.servername = host;
  return o;
}

/**
 * The keywords that name the sidecar's own credentials: its password file, a service
 * of its pg_service.conf, its client certificate and key.
 */
const SIDECAR_CREDENTIALS = ["passfile", "service", "sslcert", "sslkey", "sslpassword"];

/**
 * Raises unless `conninfo` carries its own password and names none of
 * SIDECAR_CREDENTIALS: what a target conninfo given by a role other than the dbsync
 * owner must do. connSettings then takes nothing from the sidecar's environment,
 * files or client certificate, and its client refuses a server that does not ask for
 * the password (trust, peer, a certificate). The SQL twin, and why, is
 * dbsync._conninfo_own_password.
 */
function ownPasswordOnly(conninfo: string | undefined): void {
  const given = conninfo ? parseConninfo(conninfo) : new Map<string, string>();
  const named = SIDECAR_CREDENTIALS.find((k) => given.get(k));
  if (named) throw new ConninfoError(`a target conninfo given by a role other than the dbsync owner may not name "${named}"`);
  if (!given.get("password")) throw new ConninfoError("a target conninfo given by a role other than the dbsync owner must carry its own password");
}

/**
 * The ClientConfig a conninfo stands for (see the file's header). `env` is libpq's;
 * none with `ownPassword` (ownPasswordOnly).
 */
export function connSettings(conninfo: string | undefined, env: NodeJS.ProcessEnv = process.env, ownPassword = false): ConnSettings {
  if (ownPassword) {
    ownPasswordOnly(conninfo);
    env = {};
  }
  const p = resolveConninfo(conninfo, env);
  const host = p.get("host");
  const hostaddr = p.get("hostaddr");
  const config: ClientConfig = {};
  // hostaddr: the address connected to; host: the name certificates and the
  // password file are checked against (libpq).
  const connectTo = hostaddr ?? host ?? defaultSocketDir(Number(p.get("port") ?? 5432));
  if (connectTo !== undefined) config.host = connectTo;
  // libpq uses no TLS on a Unix socket, whatever sslmode says.
  const viaSocket = connectTo === undefined ? false : connectTo.startsWith("/");
  if (p.has("port")) config.port = Number(p.get("port"));
  if (p.has("dbname")) config.database = p.get("dbname");
  if (p.has("user")) config.user = p.get("user");
  if (p.has("application_name") || p.has("fallback_application_name")) {
    config.application_name = p.get("application_name") ?? p.get("fallback_application_name");
  }
  if (p.has("options")) config.options = p.get("options");
  if (p.has("connect_timeout")) {
    // libpq: 0 (or negative) waits for ever; anything else is at least 2 s.
    const s = Number(p.get("connect_timeout"));
    config.connectionTimeoutMillis = s <= 0 ? 0 : Math.max(2, s) * 1000;
  }
  if (p.has("password")) config.password = p.get("password");
  else config.password = passwordFromFile(p.get("passfile"), host ?? hostaddr, env) as unknown as string;
  // sslmode and channel binding.
  const mode = p.get("sslmode") ?? "prefer";
  if (p.get("channel_binding") === "require" && !["require", "verify-ca", "verify-full"].includes(mode)) {
    throw new ConninfoError('channel_binding=require needs an encrypted connection that is known to be: set sslmode=require (or verify-ca, verify-full)');
  }
  config.enableChannelBinding = p.get("channel_binding") !== "disable" && mode !== "disable";
  if (mode === "disable" || viaSocket) config.ssl = false;
  else {
    const tlsOpts = tlsOptions(p, host ?? hostaddr, env, ownPassword);
    if (p.get("sslnegotiation") === "direct" && (mode === "prefer" || mode === "allow")) {
      throw new ConninfoError("sslnegotiation=direct needs sslmode=require, verify-ca or verify-full", "As in libpq: direct TLS cannot fall back to an unencrypted connection.");
    }
    if (mode === "prefer" || mode === "allow") {
      // node-postgres cannot fall back between TLS and plain: dbsync's socket does
      // the SSLRequest itself and hands node-postgres a plain stream either way.
      config.ssl = false;
      (config as ClientConfig & { stream: unknown }).stream = () => new NegotiatedSocket(mode, tlsOpts);
    } else {
      config.ssl = tlsOpts;
      if (p.get("sslnegotiation") === "direct") (config as ClientConfig & { sslnegotiation?: string }).sslnegotiation = "direct";
    }
  }
  const keepAlive = p.get("keepalives") !== "0";
  const idle = p.get("keepalives_idle");
  return {
    config,
    passwordRequired: ownPassword,
    targetSessionAttrs: p.get("target_session_attrs") ?? "any",
    keepAlive,
    keepAliveIdleMs: idle !== undefined ? Number(idle) * 1000 : undefined,
  };
}

/**
 * No host given: libpq's default is its Unix socket folder (set when libpq was
 * built: /var/run/postgresql on Debian and Red Hat, /tmp upstream); the one that has
 * the server's socket, else node-postgres' default (localhost over TCP).
 */
function defaultSocketDir(port: number): string | undefined {
  for (const dir of ["/var/run/postgresql", "/tmp"]) {
    try {
      if (fs.statSync(path.join(dir, `.s.PGSQL.${port}`)).isSocket()) return dir;
    } catch {
      // not there
    }
  }
  return undefined;
}

/**
 * The password from the password file, as libpq looks it up: passfile, else
 * PGPASSFILE, else ~/.pgpass; matched on host (host, else hostaddr; "localhost" for a
 * Unix socket), port, database and user; ignored when group or others can read it.
 * Asked only when the server wants a password.
 */
function passwordFromFile(passfile: string | undefined, host: string | undefined, env: NodeJS.ProcessEnv) {
  return async (params: { host?: string; port?: number; database?: string; user?: string }): Promise<string | undefined> => {
    // pgpass is node-postgres' own dependency; its helpers parse the file as libpq does.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const helper = require("pgpass/lib/helper") as {
      getFileName(env: NodeJS.ProcessEnv): string;
      usePgPass(stats: fs.Stats, fname: string): boolean;
      getPassword(connInfo: object, stream: NodeJS.ReadableStream, cb: (pass: string | undefined) => void): void;
    };
    const file = passfile ?? helper.getFileName(env);
    let stats: fs.Stats;
    try {
      stats = fs.statSync(file);
    } catch {
      return undefined;
    }
    if (!helper.usePgPass(stats, file)) return undefined;
    const h = host ?? params.host ?? "localhost";
    const connInfo = {
      host: h.startsWith("/") ? "localhost" : h,
      port: params.port,
      database: params.database,
      user: params.user,
    };
    return new Promise((resolve) => helper.getPassword(connInfo, fs.createReadStream(file), resolve));
  };
}

/**
 * Checks a conninfo as add_subscription does (grammar, keywords, values) plus what
 * only the sidecar's host can tell (files named, the service). Throws ConninfoError.
 */
export function validateConninfo(conninfo: string, env: NodeJS.ProcessEnv = process.env): void {
  connSettings(conninfo, env);
}
