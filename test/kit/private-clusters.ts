// A source and a target cluster of a test file's own, for tests that restart or
// stop servers (the shared ones serve the other files meanwhile). The source
// commits synchronously: a test that stops it 'immediate' counts acknowledged
// commits. allSettled: if one fails to start, the other is registered before
// after() stops them.
import { after, before } from "node:test";
import { Cluster, startCluster, stopAll, targetMajorFromEnv } from "../../src/embedded/cluster";

export function privateClusters(): { source(): Cluster; target(): Cluster } {
  let source: Cluster | undefined;
  let target: Cluster | undefined;
  before(async () => {
    const started = await Promise.allSettled([startCluster({ settings: { synchronous_commit: "on", max_prepared_transactions: 10 } }), startCluster({ major: targetMajorFromEnv() })]);
    for (const r of started) if (r.status === "rejected") throw r.reason;
    [source, target] = started.map((r) => (r as PromiseFulfilledResult<Cluster>).value);
  });
  after(async () => {
    await stopAll();
  });
  return {
    source: () => source ?? assertStarted(),
    target: () => target ?? assertStarted(),
  };
}

function assertStarted(): never {
  throw new Error("the private clusters are not started yet (use them inside a test)");
}
