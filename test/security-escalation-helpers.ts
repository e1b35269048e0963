// Helpers for security-escalation.test.ts: a role that owns a replicated table
// (and nothing else) sets traps — casts, operators, shadowing functions, domain
// checks, target-side constraints and triggers — whose functions record who ran
// them (app.pwned, or a NOTIFY where the transaction is read-only) and, when run
// by a superuser, make the owner a superuser. The tests then assert that nothing
// ran as a privileged role.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { Client, Pool } from "pg";
import { Env, freshEnv, rows, value } from "./helpers";

export interface Mark {
  side: "source" | "target";
  tag: string;
  cu: string;
  su: string;
  is_super: boolean;
}

/** Which traps the owner sets on each side. */
export interface Traps {
  /** create cast (app.e as text): what `col::text` resolves for an enum column. */
  castToText?: boolean;
  /** create cast (text as app.e): what `'...'::app.e` resolves. */
  castFromText?: boolean;
  /** Domain app.dc over text whose CHECK calls a hostile function (on the source; on the target too when `targetDomainCheck`). */
  domainCheck?: boolean;
  targetDomainCheck?: boolean;
  /** Operators for app.e in public and app, shadows of int4/text operators and of built-in functions. */
  operators?: boolean;
}

export interface Scene {
  env: Env;
  /** The table owner: the same role name on both clusters. */
  app: string;
  sfx: string;
  /** Sessions as the owner. */
  srcApp: Pool;
  tgtApp: Pool;
  /** Roles allowed to have run the owner's code (besides the owner). */
  allowed: Set<string>;
  /** Everything recorded so far, both sides. */
  marks(): Promise<Mark[]>;
  /** Forget the marks recorded so far (e.g. after the reachability checks). */
  clearMarks(): Promise<void>;
  /** The owner is no superuser on either side, and no hostile function ran as anybody else than the owner (or `allowed`). */
  assertNoEscalation(context?: string): Promise<void>;
  /** Extra roles to drop at the end: [cluster admin pool, role]. */
  extraRoles: Array<{ side: "source" | "target"; role: string }>;
  cleanup(): Promise<void>;
}

function asRole(url: string, role: string, password: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = password;
  return u.toString();
}

/** The SQL that creates the marker table and function; `app` is the owner's role name. */
function markerSql(app: string, channel: string): string {
  return `
    create table app.pwned (tag text, cu text, su text, is_super boolean, at timestamptz default clock_timestamp());
    -- Any role that runs the owner's code leaves its mark, even one with no other right here.
    grant insert on app.pwned to public;
    create function app.mark(p_tag text) returns void
    language plpgsql volatile set search_path = pg_catalog, pg_temp as $m$
    declare
        v_super boolean := (select r.rolsuper from pg_catalog.pg_roles r where r.rolname operator(pg_catalog.=) current_user);
    begin
        begin
            insert into app.pwned (tag, cu, su, is_super) values (p_tag, current_user, session_user, v_super);
        exception when others then
            -- A read-only transaction: say it by NOTIFY instead (delivered at commit).
            perform pg_catalog.pg_notify('${channel}', pg_catalog.json_build_object(
                'tag', p_tag, 'cu', current_user, 'su', session_user, 'is_super', v_super)::text);
        end;
        if v_super then
            begin
                execute 'alter role ${app} superuser';
            exception when others then
                null;
            end;
        end if;
    end
    $m$;
    grant execute on function app.mark(text) to public;`;
}

function trapSql(traps: Traps, side: "source" | "target"): string {
  const parts: string[] = [
    `create type app.e as enum ('x', 'y', 'z');
     create domain app.de as app.e;`,
  ];
  if (traps.castToText) {
    parts.push(`
      create function app.e_to_text(app.e) returns text language plpgsql volatile strict as $f$
      begin
          perform app.mark('cast app.e -> text');
          -- format() uses the type's output function: no cast, and a domain value works too.
          return pg_catalog.format('%s', $1);
      end $f$;
      create cast (app.e as text) with function app.e_to_text(app.e);`);
  }
  if (traps.castFromText) {
    parts.push(`
      create function app.text_to_e(text) returns app.e language plpgsql volatile strict as $f$
      begin
          perform app.mark('cast text -> app.e');
          return pg_catalog.enum_in(pg_catalog.textout($1), 'app.e'::pg_catalog.regtype);
      end $f$;
      create cast (text as app.e) with function app.text_to_e(text);`);
  }
  const check = traps.domainCheck && (side === "source" || traps.targetDomainCheck);
  parts.push(`
    create function app.dcheck(text) returns boolean language plpgsql volatile strict as $f$
    begin
        perform app.mark('domain check');
        return true;
    end $f$;
    create domain app.dc as text ${check ? "check (app.dcheck(value))" : ""};`);
  if (traps.operators) {
    const ops: Array<[string, string]> = [
      ["=", "eq"],
      ["<>", "ne"],
      ["<", "lt"],
      ["<=", "le"],
      [">", "gt"],
      [">=", "ge"],
    ];
    for (const [op, name] of ops) {
      parts.push(`
        create function app.enum_${name}_hostile(app.e, app.e) returns boolean language plpgsql volatile strict as $f$
        begin
            perform app.mark('operator ${op} (app.e)');
            return pg_catalog.enum_${name}($1, $2);
        end $f$;
        create function app.int4${name}_hostile(int4, int4) returns boolean language plpgsql volatile strict as $f$
        begin
            perform app.mark('operator ${op} (int4)');
            return pg_catalog.int4${name}($1, $2);
        end $f$;
        create function app.text${name}_hostile(text, text) returns boolean language plpgsql volatile strict as $f$
        begin
            perform app.mark('operator ${op} (text)');
            return pg_catalog.text${name === "eq" || name === "ne" ? name : "_" + name}($1, $2);
        end $f$;`);
      for (const schema of ["public", "app"]) {
        parts.push(`
          create operator ${schema}.${op} (leftarg = app.e, rightarg = app.e, procedure = app.enum_${name}_hostile);
          create operator ${schema}.${op} (leftarg = int4, rightarg = int4, procedure = app.int4${name}_hostile);
          create operator ${schema}.${op} (leftarg = text, rightarg = text, procedure = app.text${name}_hostile);`);
      }
    }
    // Shadows of built-ins a generated statement might call unqualified.
    const fns: Array<[string, string, string]> = [
      ["lower(text)", "text", "pg_catalog.lower($1)"],
      ["md5(text)", "text", "pg_catalog.md5($1)"],
      ["left(text, int4)", "text", "pg_catalog.left($1, $2)"],
      ["format(text, text)", "text", "pg_catalog.format($1, $2)"],
      ["array_position(text[], text)", "int4", "pg_catalog.array_position($1, $2)"],
      ["pg_notify(text, text)", "void", "pg_catalog.pg_notify($1, $2)"],
      ["nextval(regclass)", "int8", "pg_catalog.nextval($1)"],
      ["current_setting(text)", "text", "pg_catalog.current_setting($1)"],
      ["set_config(text, text, boolean)", "text", "pg_catalog.set_config($1, $2, $3)"],
      ["text(app.e)", "text", "pg_catalog.format('%s', $1)"],
    ];
    for (const schema of ["public", "app"]) {
      for (const [sig, ret, body] of fns) {
        const name = sig.slice(0, sig.indexOf("("));
        parts.push(`
          create function ${schema}.${sig} returns ${ret} language plpgsql volatile strict as $f$
          begin
              perform app.mark('function ${schema}.${name}');
              ${ret === "void" ? `perform ${body}; return;` : `return ${body};`}
          end $f$;`);
      }
    }
  }
  return parts.join("\n");
}

/**
 * A fresh source and target, a role owning schema `app` on both (created by the
 * cluster admin), the marker and the traps. `setup(side)`: more SQL the owner runs.
 */
export async function scene(label: string, traps: Traps): Promise<Scene> {
  const env = await freshEnv(label);
  const sfx = crypto.randomBytes(4).toString("hex");
  const app = `esc_app_${sfx}`;
  const password = crypto.randomBytes(12).toString("hex");
  const channel = `esc_${sfx}`;
  const adminOf = { source: env.source, target: env.target };
  const urlOf = { source: env.sourceUrl, target: env.targetUrl };
  const extraRoles: Array<{ side: "source" | "target"; role: string }> = [];
  const notes: Mark[] = [];
  const listeners: Client[] = [];

  for (const side of ["source", "target"] as const) {
    const admin = adminOf[side];
    await admin.query(`create role ${app} login password '${password}'`);
    // The owner's own sessions look in its schema first (a trick against code that trusts search_path).
    await admin.query(`alter role ${app} set search_path = app, pg_catalog`);
    await admin.query(`create schema app authorization ${app}`);
    // As on PostgreSQL 14 and earlier, where every role may create in public.
    await admin.query(`grant create on schema public to ${app}`);
    const l = new Client({ connectionString: urlOf[side] });
    await l.connect();
    l.on("notification", (n) => {
      if (n.channel !== channel || !n.payload) return;
      const p = JSON.parse(n.payload) as Omit<Mark, "side">;
      notes.push({ side, ...p });
    });
    await l.query(`listen ${channel}`);
    listeners.push(l);
  }
  const srcApp = new Pool({ connectionString: asRole(env.sourceUrl, app, password), max: 2 });
  const tgtApp = new Pool({ connectionString: asRole(env.targetUrl, app, password), max: 2 });
  srcApp.on("error", () => undefined);
  tgtApp.on("error", () => undefined);
  const disconnect = () => Promise.all([srcApp.end(), tgtApp.end(), ...listeners.map((l) => l.end())].map((p) => p.catch(() => undefined)));
  try {
    await srcApp.query(markerSql(app, channel));
    await tgtApp.query(markerSql(app, channel));
    await srcApp.query(trapSql(traps, "source"));
    await tgtApp.query(trapSql(traps, "target"));
  } catch (err) {
    // Open connections would keep the file's process, and the run, from ever ending.
    await disconnect();
    throw err;
  }

  const allowed = new Set<string>([app]);
  const s: Scene = {
    env,
    app,
    sfx,
    srcApp,
    tgtApp,
    allowed,
    extraRoles,
    async marks() {
      const out: Mark[] = [];
      for (const side of ["source", "target"] as const) {
        const r = await rows<Omit<Mark, "side">>(adminOf[side], "select tag, cu, su, is_super from app.pwned order by at");
        out.push(...r.map((m) => ({ side, ...m })));
      }
      // Let NOTIFYs of transactions that just committed arrive.
      await new Promise((r) => setTimeout(r, 200));
      return [...out, ...notes];
    },
    async clearMarks() {
      await env.source.query("truncate app.pwned");
      await env.target.query("truncate app.pwned");
      notes.length = 0;
    },
    async assertNoEscalation(context = "") {
      const marks = await s.marks();
      if (process.env.ESC_DEBUG) console.log(context, JSON.stringify(marks));
      // (Once the owner is a superuser, its own marks say so too: the cause is elsewhere.)
      const bad = marks.filter((m) => !allowed.has(m.cu) || (m.is_super && m.cu !== app));
      const summary = [...new Set(bad.map((m) => `${m.side}: ${m.tag} ran as current_user=${m.cu} (session_user=${m.su}${m.is_super ? ", superuser" : ""})`))];
      const superSrc = await value<boolean>(env.source, "select rolsuper from pg_roles where rolname = $1", [app]);
      const superTgt = await value<boolean>(env.target, "select rolsuper from pg_roles where rolname = $1", [app]);
      assert.deepEqual(summary, [], `${context}: the table owner's code ran with privileged rights`);
      assert.equal(superSrc, false, `${context}: the table owner became superuser on the source`);
      assert.equal(superTgt, false, `${context}: the table owner became superuser on the target`);
    },
    async cleanup() {
      await disconnect();
      const problems: string[] = [];
      for (const side of ["source", "target"] as const) {
        const roles = [app, ...extraRoles.filter((r) => r.side === side).map((r) => r.role)];
        for (const role of roles) {
          try {
            await adminOf[side].query(`drop owned by ${role} cascade`);
            await adminOf[side].query(`drop role if exists ${role}`);
          } catch (err) {
            problems.push(`${side} ${role}: ${(err as Error).message}`);
          }
        }
      }
      if (problems.length) console.error(`security-escalation cleanup: ${problems.join("; ")}`);
    },
  };
  return s;
}

/** Marks of one tag, by role: for the reachability checks. */
export function ranAs(marks: Mark[], side: "source" | "target", tag: string): string[] {
  return [...new Set(marks.filter((m) => m.side === side && m.tag === tag).map((m) => m.cu))];
}
