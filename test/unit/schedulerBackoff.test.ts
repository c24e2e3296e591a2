/** The scheduler stops retrying a deleted VM, and backs off from one that keeps failing. */
import type { Backend } from "../../hypervisor/backend";
import type { HostRef, VmInfo } from "../../core/model";
import { withPolicyDefaults } from "../../core/policy";
import { retryDelaySeconds, Scheduler, SchedulerEvent } from "../../ops/scheduler";

const A = "test:///a/default";
const B = "test:///b/default";
const policy = withPolicyDefaults({ repository: "/r", minIntervalSeconds: 3, maxIntervalSeconds: 30, loadAdaptive: false });

class FakeBackend implements Partial<Backend> {
  readonly kind = "libvirt" as const;
  vm: VmInfo | undefined = { name: "web", id: "u", host: A, state: "running", memoryMiB: 64, vcpus: 1, protection: { version: 1, backend: "libvirt", primaryHost: A, recoveryHosts: [B], policy } };
  hostsUp = new Set<HostRef>([A, B]);
  takes = 0;
  async hostAlive(h: HostRef) { return this.hostsUp.has(h); }
  async listProtectedVms(h: HostRef) { return this.vm && this.vm.host === h ? [this.vm] : []; }
  async findVm(name: string, hosts: HostRef[]) { return this.vm && this.vm.name === name && hosts.includes(this.vm.host) ? this.vm : undefined; }
  async listSnapshots() { return []; }
  async cpuUsage(): Promise<number> { throw new Error("no such domain"); }
  async takeSnapshot(): Promise<never> {
    this.takes++;
    throw new Error("Domain not found: no domain with matching name 'web'");
  }
}

test("retry delay: the policy interval while healthy, doubling after failures, capped at 10 x maxIntervalSeconds", () => {
  expect(retryDelaySeconds(0, 3, policy)).toBe(3);
  expect([1, 2, 3, 4].map((n) => retryDelaySeconds(n, 3, policy))).toEqual([6, 12, 24, 48]);
  expect(retryDelaySeconds(20, 3, policy)).toBe(300);
});

test("a VM deleted from every host is forgotten after its first failed snapshot, not retried forever", async () => {
  const backend = new FakeBackend();
  const events: SchedulerEvent[] = [];
  const s = new Scheduler({ backend: backend as unknown as Backend, hosts: [A, B], log: (e) => events.push(e) });
  await s.discover();
  expect(s.status().map((v) => v.vm)).toEqual(["web"]);
  backend.vm = undefined; // pulumi destroy
  const t = (s as any).vms.get("web");
  await s.snapshotVm(t);
  expect(events.map((e) => e.event)).toEqual(["discovered", "snapshot-failed", "vm-gone"]);
  expect(s.status()).toEqual([]);
});

test("a VM that still exists but keeps failing is kept, with a growing delay; one on a host that is down is not declared gone", async () => {
  const backend = new FakeBackend();
  const s = new Scheduler({ backend: backend as unknown as Backend, hosts: [A, B], log: () => undefined });
  await s.discover();
  const t = (s as any).vms.get("web");
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    await s.snapshotVm(t);
    delays.push(Math.round(s.status()[0].nextSnapshotInSeconds));
  }
  expect(delays).toEqual([6, 12, 24]);
  backend.vm = undefined;
  backend.hostsUp.delete(B); // cannot tell whether B has it
  await s.snapshotVm(t);
  expect(s.status().map((v) => v.vm)).toEqual(["web"]);
});
