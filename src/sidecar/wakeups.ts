// When to look for work: NOTIFY from capture triggers (pg-listen, reconnecting
// forever), a modest poll so that a lost notification only delays, and the queue
// upkeep timer. NOTIFYs sent while the LISTEN connection was down are gone, so
// every (re)connect is followed by a full scan. pg-listen is loaded at start(), after
// the start-up pass's first batches (run.ts): they do not wait for its loading.
import type { Subscriber } from "pg-listen";
import { Pool } from "pg";
import { clientConfig } from "../db/connect";
import { positiveEnv } from "../config";
import { isTransient, messageOf, sqlstateOf } from "../errors";
import { Log, Outages } from "../log";
import { Appliers } from "./appliers";
import { Jobs } from "./jobs";
import { epochMs } from "../target/phases";
import { activeSubscriptions, type GroupVerdict, installation, maintain, notApplying, pollWork, setSleeping, tick, upkeepDue, verificationsToDo } from "../source/protocol";

export interface WakeupOptions {
  sourceUrl: string | undefined;
  /** The source's major version at start. */
  sourceMajor: number;
  pollIntervalMs: number;
  rotateAfterSeconds: number;
}

/** undefined_table, undefined_function, invalid_schema_name: what dbsync's calls meet once it is uninstalled. */
const GONE_STATES = new Set(["42P01", "42883", "3F000"]);

/**
 * How often the queue upkeep runs: every 5 s, or every `--rotate-after` when that is
 * shorter. A switch takes three upkeeps (switch, its switched_xmax, the truncate), so
 * at 5 s a rotation period of 1 s would be a 15 s one in fact.
 */
function upkeepIntervalMs(rotateAfterSeconds: number): number {
  return Math.min(5000, rotateAfterSeconds * 1000);
}

/**
 * A group's upkeep is skipped when any process did it less than this ago: with two
 * `dbsync run` processes, each group was maintained twice per interval. 0.8 of the
 * interval, so that timer jitter never makes a process skip its own next turn.
 */
function upkeepSpacingSeconds(rotateAfterSeconds: number): number {
  return (0.8 * upkeepIntervalMs(rotateAfterSeconds)) / 1000;
}

/**
 * How often pg-listen checks its LISTEN connection (a SELECT 1, bounded by the query
 * timeout of src/db/liveness.ts): 30 s, or DBSYNC_LISTEN_CHECK_MS, with which the tests see
 * a hung LISTEN link noticed without waiting half a minute.
 */
function listenCheckMs(env: NodeJS.ProcessEnv = process.env): number {
  return positiveEnv(env, "DBSYNC_LISTEN_CHECK_MS", "milliseconds", 30_000, "Unset it (a check every 30 s) or set a number such as 5000.");
}

export class Wakeups {
  private subscriber?: Subscriber;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  /** A scan or upkeep still running when the timer fires again is not started twice. */
  private busy = new Set<string>();
  /** Groups whose wake-up is running, and whether another NOTIFY came meanwhile. */
  private notified = new Map<number, boolean>();
  /** Each group's verdict of the last poll: a group settled without new writers is not looked into again. */
  private verdicts = new Map<number, GroupVerdict>();

  constructor(
    private readonly opts: WakeupOptions,
    private readonly pool: Pool,
    private readonly jobs: Jobs,
    private readonly appliers: Appliers,
    private readonly log: Log,
    private readonly outages: Outages,
    /** Called once when dbsync's schema is gone from the source (dbsync uninstall). */
    private readonly onUninstalled: () => void = () => undefined,
  ) {}

  /**
   * A failure that could mean dbsync was uninstalled: if its schema is indeed gone,
   * say so once and let the sidecar stop, instead of failing on every poll.
   */
  private async checkGone(err: unknown): Promise<boolean> {
    if (!GONE_STATES.has(sqlstateOf(err) ?? "")) return false;
    try {
      if ((await installation(this.pool)).installed || this.stopped) return false;
    } catch {
      return false;
    }
    this.stopped = true;
    this.onUninstalled();
    return true;
  }

  /** LISTEN, the poll and upkeep timers, and a first scan. (The start-up pass wakes every subscription: run.ts.) */
  async start() {
    this.timers.push(setInterval(() => void this.once("scan", () => this.scan()), this.opts.pollIntervalMs));
    this.timers.push(setInterval(() => void this.once("maintain", () => this.maintain()), upkeepIntervalMs(this.opts.rotateAfterSeconds)));
    const { default: createSubscriber } = await import("pg-listen");
    const config = clientConfig(this.opts.sourceUrl, { applicationName: "dbsync listen" });
    // A LISTEN session is idle all the time: a database's idle_session_timeout would
    // end it over and over (the other sessions unset it at connect, src/db/client.ts;
    // this one is pg-listen's plain client). PostgreSQL 13 and older refuse the name.
    if (this.opts.sourceMajor >= 14) config.options = `${config.options ?? ""} -c idle_session_timeout=0`.trim();
    const sub = createSubscriber(config, {
      retryLimit: Infinity,
      retryTimeout: Infinity,
      retryInterval: (attempt) => Math.min(5000, 250 * attempt),
      paranoidChecking: listenCheckMs(),
      parse: (s: string) => s, // payloads are group ids, not JSON
    });
    // One line when the LISTEN link goes, one when it is back; attempts at debug level.
    sub.events.on("error", (err) => this.outages.fail("listen", "LISTEN connection lost; reconnecting", { err: messageOf(err) }));
    sub.events.on("reconnect", (attempt) => this.outages.fail("listen", "LISTEN connection lost; reconnecting", { attempt }));
    sub.events.on("connected", () => {
      this.outages.ok("listen", "LISTEN connection");
      void this.scan();
    });
    sub.notifications.on("dbsync", (payload: string) => void this.onNotify(payload));
    this.subscriber = sub;
    // A LISTEN link that cannot be opened now (a busy or unreachable source) is an
    // outage like any other, never a reason to stop: pg-listen reconnects by itself
    // once its first client has ended, and LISTENs again on every channel named
    // below, connected or not. Meanwhile the poll finds the work.
    try {
      await sub.connect();
    } catch (err) {
      this.outages.fail("listen", "LISTEN connection lost; reconnecting", { err: messageOf(err) });
    }
    await sub.listenTo("dbsync")?.catch((err) => this.outages.fail("listen", "LISTEN failed; the poll finds work until the link is back", { err: messageOf(err) }));
    await this.scan();
  }

  private async once(what: string, fn: () => Promise<void>) {
    if (this.busy.has(what)) return;
    this.busy.add(what);
    try {
      await fn();
    } finally {
      this.busy.delete(what);
    }
  }

  private async onNotify(payload: string) {
    const at = epochMs();
    const groupId = Number(payload);
    if (!Number.isInteger(groupId)) return;
    // NOTIFYs held while the LISTEN link hung arrive all at once (thousands): one
    // wake-up per group at a time, plus one more if any came meanwhile.
    this.appliers.pokeGroup(groupId, at);
    if (this.notified.has(groupId)) {
      this.notified.set(groupId, true);
      return;
    }
    try {
      do {
        this.notified.set(groupId, false);
        // Every process gets the NOTIFY; the one that wakes the group queues its
        // wake-ups (two processes queued each one twice: a second add_job, and a
        // second job when the first was already taken, whose apply loop found the
        // subscription busy or caught up). The group already awake: the process
        // that woke it queued them, each applier of the group looks for work once
        // more after it sets the flag again (appliers.ts), and a subscription
        // running nowhere that the wake-up left out (the poll wakes only those it
        // found work for), or one a notification of dbsync's own calls is for
        // (resume, resync_table ...), is found by the next poll.
        const woke = await setSleeping(this.pool, groupId, false);
        for (const r of await activeSubscriptions(this.pool, groupId)) if (!this.appliers.poke(r.name, at) && woke) await this.jobs.wakeApplier(r.name);
      } while (this.notified.get(groupId));
    } catch (err) {
      this.log.warn({ err: messageOf(err) }, "wake-up failed; the poll will catch up");
    } finally {
      this.notified.delete(groupId);
    }
  }

  /** Wake every subscription and verification with work. */
  async scan() {
    if (this.stopped) return;
    const began = this.outages.mark();
    try {
      // Subscriptions with events to apply or tables to copy.
      const rows = await pollWork(this.pool, this.verdicts);
      // Awake for these groups now: writers need not NOTIFY (it costs them a
      // cluster-wide lock at commit) until the applier sleeps again; without this,
      // while the LISTEN connection is down every captured transaction would notify.
      for (const g of new Set(rows.map((r) => r.group_id))) await setSleeping(this.pool, g, false);
      // Subscriptions waiting for a free runner keep their wake-up: adding it again
      // at every poll cost the source about 1 ms each (100 subscriptions behind,
      // --concurrency 4: 18 wake-ups per batch applied).
      const due = rows.length ? await this.jobs.dueAppliers() : new Set<string>();
      const others = rows.filter((r) => !this.appliers.backoff.waiting(r.name) && !this.appliers.poke(r.name) && !due.has(r.name)).map((r) => r.name);
      // Nor those another process applies now (its apply lock held): its loop looks
      // for work once more after it lets go (appliers.ts), and its own poll pokes it
      // meanwhile. Such a wake-up was a job whose loop here found the subscription
      // busy, or, turned away for want of a slot, queued itself again every second
      // until the other process was done.
      for (const name of others.length ? await notApplying(this.pool, others) : []) await this.jobs.wakeApplier(name);
      for (const id of await verificationsToDo(this.pool)) await this.jobs.wakeVerify(id);
      this.outages.ok("source", "source connection", {}, began);
    } catch (err) {
      if (await this.checkGone(err)) return;
      this.failed(err, "looking for work failed; will retry");
    }
  }

  private async maintain() {
    if (this.stopped) return;
    try {
      const spacing = upkeepSpacingSeconds(this.opts.rotateAfterSeconds);
      for (const g of await upkeepDue(this.pool, spacing)) {
        // An idle group's positions must move past a rotated slot before it can go.
        if (await maintain(this.pool, g, this.opts.rotateAfterSeconds, spacing)) await tick(this.pool, g, true);
      }
    } catch (err) {
      if (await this.checkGone(err)) return;
      this.failed(err, "queue upkeep failed; will retry");
    }
  }

  /** A lost source is one outage (logged when it starts and ends); anything else is logged as it comes. */
  private failed(err: unknown, what: string) {
    if (isTransient(sqlstateOf(err))) this.outages.fail("source", "source unreachable; retrying", { err: messageOf(err), during: what });
    else this.log.warn({ err: messageOf(err), sqlstate: sqlstateOf(err) }, what);
  }

  async stop() {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await this.subscriber?.close().catch(() => undefined);
  }
}
