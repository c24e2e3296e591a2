/**
 * The HA scenario suite (unit layer, fake clock): each scenario in haScenarios.data.ts runs the
 * real Agent and Manager over the simulated cluster; the event log must match line for line,
 * no two copies of a VM may ever run at once, and each VM must end where expected.
 */
import { runScenario } from "../support/haScenario";
import { scenarios } from "./haScenarios.data";
import { SimCluster } from "../../hypervisor/simulated/cluster";
import { SimBackend } from "../../hypervisor/simulated/backend";
import { SimStore } from "../../hypervisor/simulated/coordination";
import { decideAgent, decideManager, Owned, OwnerRecord } from "../../core/ha/decide";

describe("HA scenarios", () => {
  for (const s of scenarios) {
    test(s.name, async () => {
      const r = await runScenario(s);
      expect(r.violations).toEqual([]);
      expect(r.log).toEqual(s.expectLog);
      expect(r.runningOn).toEqual(s.expectRunning);
    });
  }
});

describe("split-brain guards", () => {
  test("the simulated cluster records a second copy starting (the invariant check can fail)", async () => {
    const cluster = new SimCluster();
    cluster.addHost("a");
    cluster.addHost("b");
    cluster.addVm("vm1", ["a", "b"]);
    const snap = cluster.takeSnapshot("vm1", "a");
    await new SimBackend(cluster, "manager").restoreSnapshot(
      { id: snap.id, vm: "vm1", backend: "libvirt", host: "a", createdAt: new Date(snap.createdAtMs).toISOString(), includesMemory: true, bytes: 1, storedBytes: 1, complete: true, location: "" },
      "b",
      { repository: "/sim/repo" },
    );
    expect(cluster.violations).toHaveLength(1);
    expect(cluster.violations[0]).toMatch(/vm1 started on b while running on a/);
  });

  test("two managers acting on the same decision: the ownership revision lets exactly one claim", async () => {
    const cluster = new SimCluster();
    cluster.addHost("a");
    cluster.addHost("b");
    const store = new SimStore(cluster);
    const m1 = store.client("m1");
    const m2 = store.client("m2");
    const record: OwnerRecord = { vm: "vm1", host: "a", state: "running", hosts: ["a", "b"], memoryMiB: 128, repository: "/r", by: "agent/a", since: "" };
    const rev = (await m1.compareAndSwap("/o/vm1", null, JSON.stringify(record)))!;
    const owned: Owned = { record, revision: rev };
    const facts = {
      now: 10_000, fencingMarginMs: 2000, inFlight: [],
      hosts: { a: { host: "a", leaseHeld: false, lostSinceMs: 5000 }, b: { host: "b", leaseHeld: true } },
      owners: [owned], snapshots: { vm1: [{ id: "s1", createdAtMs: 4000, complete: true }] },
    };
    const [a1] = decideManager(facts);
    const [a2] = decideManager(facts);
    expect(a1).toMatchObject({ kind: "recover", to: "b", snapshotId: "s1", expectRevision: rev });
    expect(a2).toEqual(a1);
    const claim = JSON.stringify({ ...record, host: "b", state: "recovering" });
    const results = await Promise.all([m1.compareAndSwap("/o/vm1", rev, claim), m2.compareAndSwap("/o/vm1", rev, claim)]);
    expect(results.filter((r) => r !== null)).toHaveLength(1);
  });

  test("the manager waits out the fencing margin, then recovers", () => {
    const record: OwnerRecord = { vm: "vm1", host: "a", state: "running", hosts: ["a", "b"], memoryMiB: 128, repository: "/r", by: "agent/a", since: "" };
    const facts = (now: number) => ({
      now, fencingMarginMs: 2000, inFlight: [],
      hosts: { a: { host: "a", leaseHeld: false, lostSinceMs: 5000 }, b: { host: "b", leaseHeld: true } },
      owners: [{ record, revision: "7" }], snapshots: { vm1: [{ id: "s1", createdAtMs: 4000, complete: true }, { id: "s2", createdAtMs: 4500, complete: false }] },
    });
    expect(decideManager(facts(6999))).toEqual([{ kind: "wait", vm: "vm1", untilMs: 7000, reason: "a lost its lease; fencing margin" }]);
    expect(decideManager(facts(7000))[0]).toMatchObject({ kind: "recover", snapshotId: "s1", snapshotAgeMs: 3000 });
  });

  test("an agent fences before its lease can expire, and destroys a copy another host owns", () => {
    const base = { host: "a", fenceSafetyMs: 1500, fenced: [], local: [{ vm: "vm1", running: true }] };
    expect(decideAgent({ ...base, now: 8499, leaseDeadlineMs: 10_000, leaseHeld: false, owners: null })).toEqual([]);
    expect(decideAgent({ ...base, now: 8500, leaseDeadlineMs: 10_000, leaseHeld: false, owners: null })[0]).toMatchObject({ kind: "self-fence", vms: ["vm1"] });
    const other: Owned = { record: { vm: "vm1", host: "b", state: "running", hosts: ["a", "b"], memoryMiB: 1, repository: "/r", by: "m", since: "" }, revision: "9" };
    expect(decideAgent({ ...base, now: 1000, leaseDeadlineMs: 10_000, leaseHeld: true, owners: { vm1: other } })).toEqual([
      { kind: "destroy-stale", vm: "vm1", owner: "b", revision: "9" },
    ]);
  });
});
