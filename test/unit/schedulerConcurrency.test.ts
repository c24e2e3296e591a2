/**
 * The snapshot loop with bounded concurrency: a VM whose snapshots are slow does not starve the
 * others on the same host (the HA agent runs it with concurrency 2), and a VM is never
 * snapshotted twice at once. Simulated host, real timers in the hundreds of ms.
 */
import { Scheduler, SchedulerEvent } from "../../ops/scheduler";
import { SimCluster } from "../../hypervisor/simulated/cluster";
import { SimBackend } from "../../hypervisor/simulated/backend";
import type { SnapshotOptions, SnapshotRecord, VmInfo, VmRef } from "../../core/model";

class SlowFor extends SimBackend {
  active = new Map<string, number>();
  maxParallelPerVm = 0;
  constructor(cluster: SimCluster, private readonly slowVm: string, private readonly slowMs: number) {
    super(cluster, "a");
  }
  async listProtectedVms(host: string): Promise<VmInfo[]> {
    const vms = await super.listProtectedVms(host);
    for (const v of vms) v.protection!.policy = { ...v.protection!.policy, minIntervalSeconds: 0.2, loadAdaptive: false, keepLast: 100 };
    return vms;
  }
  async takeSnapshot(vm: VmRef, opts: SnapshotOptions): Promise<SnapshotRecord> {
    const n = (this.active.get(vm.name) ?? 0) + 1;
    this.active.set(vm.name, n);
    this.maxParallelPerVm = Math.max(this.maxParallelPerVm, n);
    try {
      await new Promise((r) => setTimeout(r, vm.name === this.slowVm ? this.slowMs : 20));
      return await super.takeSnapshot(vm, opts);
    } finally {
      this.active.set(vm.name, (this.active.get(vm.name) ?? 1) - 1);
    }
  }
}

async function run(concurrency: number): Promise<{ fast: number; slow: number; maxParallelPerVm: number }> {
  const cluster = new SimCluster();
  cluster.clock.now = () => Date.now();
  cluster.addHost("a");
  for (const name of ["fast1", "fast2", "slow"]) cluster.addVm(name, ["a"]);
  const backend = new SlowFor(cluster, "slow", 1500);
  const events: SchedulerEvent[] = [];
  const s = new Scheduler({ backend, hosts: ["a"], concurrency, cpuSampleMs: 0, log: (e) => events.push(e) });
  const done = s.run();
  await new Promise((r) => setTimeout(r, 3000));
  s.stop();
  await done;
  const count = (vm: string) => events.filter((e) => e.event === "snapshot" && e.vm === vm).length;
  return { fast: count("fast1"), slow: count("slow"), maxParallelPerVm: backend.maxParallelPerVm };
}

test("with concurrency 2 a slow VM does not starve the others; with 1 it does", async () => {
  const one = await run(1);
  const two = await run(2);
  console.log(`3 s, interval 0.2 s, one VM's snapshot takes 1.5 s: fast VM snapshots ${one.fast} (concurrency 1) vs ${two.fast} (concurrency 2)`);
  expect(two.fast).toBeGreaterThanOrEqual(2 * one.fast);
  expect(two.fast).toBeGreaterThanOrEqual(6);
  expect(two.slow).toBeGreaterThanOrEqual(1);
  expect(two.maxParallelPerVm).toBe(1);
  expect(one.maxParallelPerVm).toBe(1);
}, 20_000);
