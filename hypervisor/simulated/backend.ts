/**
 * The Backend interface over a SimCluster, seen from one place: a host's own agent (viewpoint =
 * that host: its own VMs answer even when its management link is cut) or the management side
 * (viewpoint "manager": a host answers only when powered and its management link is up).
 * Every operation completes at once on the fake clock.
 */
import type { Backend } from "../backend";
import type { HostRef, RestoreOptions, SnapshotOptions, SnapshotRecord, VmInfo, VmRef, VmSpec } from "../../core/model";
import type { ProtectionRecord } from "../../core/policy";
import { withPolicyDefaults } from "../../core/policy";
import { SimCluster, SimSnapshot, SimVm } from "./cluster";

export class SimBackend implements Backend {
  readonly kind = "libvirt" as const;

  constructor(
    private readonly cluster: SimCluster,
    private readonly viewpoint: string,
  ) {}

  private reach(host: HostRef): void {
    const h = this.cluster.host(host);
    if (!h.power) throw new Error(`simulated host ${host} is powered off`);
    if (host !== this.viewpoint && !h.links.mgmt) throw new Error(`simulated host ${host} does not answer (management link cut)`);
  }

  private storage(host: HostRef): void {
    if (!this.cluster.host(host).links.storage) throw new Error(`simulated host ${host} cannot reach the shared storage`);
  }

  private info(v: SimVm): VmInfo {
    const protection: ProtectionRecord = {
      version: 1, backend: "libvirt", primaryHost: v.hosts[0], recoveryHosts: v.hosts.slice(1),
      policy: withPolicyDefaults({ repository: v.repository }),
    };
    return { name: v.name, id: `${v.name}@${v.host}`, host: v.host, state: v.running ? "running" : "shutoff", memoryMiB: v.memoryMiB, vcpus: 1, protection };
  }

  private copy(name: string, host: HostRef): SimVm | undefined {
    return this.cluster.vms.find((v) => v.name === name && v.host === host);
  }

  async defineVm(spec: VmSpec, host: HostRef): Promise<VmInfo> {
    this.reach(host);
    const v = this.copy(spec.name, host) ?? { name: spec.name, host, running: false, memoryMiB: spec.memoryMiB, hosts: [host], repository: spec.protection?.policy.repository ?? "/sim/repo" };
    if (!this.cluster.vms.includes(v)) this.cluster.vms.push(v);
    return this.info(v);
  }

  async startVm(vm: VmRef): Promise<void> {
    this.reach(vm.host);
    const v = this.copy(vm.name, vm.host);
    if (!v) throw new Error(`${vm.name} is not defined on ${vm.host}`);
    this.cluster.start(v);
  }

  async stopVm(vm: VmRef): Promise<void> {
    this.reach(vm.host);
    const v = this.copy(vm.name, vm.host);
    if (v) v.running = false;
  }

  async deleteVm(vm: VmRef): Promise<void> {
    this.reach(vm.host);
    const i = this.cluster.vms.findIndex((v) => v.name === vm.name && v.host === vm.host);
    if (i >= 0) this.cluster.vms.splice(i, 1);
  }

  async findVm(name: string, hosts: HostRef[]): Promise<VmInfo | undefined> {
    const found: SimVm[] = [];
    for (const h of hosts) {
      try {
        this.reach(h);
      } catch {
        continue;
      }
      const v = this.copy(name, h);
      if (v) found.push(v);
    }
    const pick = found.find((v) => v.running) ?? found[0];
    return pick && this.info(pick);
  }

  async listProtectedVms(host: HostRef): Promise<VmInfo[]> {
    this.reach(host);
    return this.cluster.vms.filter((v) => v.host === host).map((v) => this.info(v));
  }

  async setProtection(): Promise<void> {
    /* the simulated VM derives its record from its hosts list */
  }

  async cpuUsage(): Promise<number> {
    return 5;
  }

  async hostAlive(host: HostRef): Promise<boolean> {
    try {
      this.reach(host);
      return true;
    } catch {
      return false;
    }
  }

  private record(s: SimSnapshot): SnapshotRecord {
    return {
      id: s.id, vm: s.vm, backend: "libvirt", host: s.host, createdAt: new Date(s.createdAtMs).toISOString(), includesMemory: true,
      bytes: 1, storedBytes: 1, complete: s.complete, location: `/sim/${s.id}`,
    };
  }

  async takeSnapshot(vm: VmRef, _opts: SnapshotOptions): Promise<SnapshotRecord> {
    this.reach(vm.host);
    this.storage(vm.host);
    const v = this.copy(vm.name, vm.host);
    if (!v?.running) throw new Error(`${vm.name} does not run on ${vm.host}`);
    return this.record(this.cluster.takeSnapshot(vm.name, vm.host));
  }

  async listSnapshots(vmName: string): Promise<SnapshotRecord[]> {
    if (this.cluster.hosts.has(this.viewpoint)) this.storage(this.viewpoint);
    return this.cluster.snapshotsOf(vmName).map((s) => this.record(s));
  }

  async deleteSnapshot(snapshot: SnapshotRecord): Promise<void> {
    const i = this.cluster.snapshots.findIndex((s) => s.id === snapshot.id);
    if (i >= 0) this.cluster.snapshots.splice(i, 1);
  }

  async verifySnapshot(snapshot: SnapshotRecord): Promise<boolean> {
    const s = this.cluster.snapshots.find((x) => x.id === snapshot.id);
    return !!s && s.complete && !s.corrupt;
  }

  async restoreSnapshot(snapshot: SnapshotRecord, host: HostRef, opts: RestoreOptions): Promise<VmInfo> {
    this.reach(host);
    this.storage(host);
    const name = opts.name ?? snapshot.vm;
    const source = this.cluster.copies(snapshot.vm)[0];
    let v = this.copy(name, host);
    if (v?.running) throw new Error(`${name} already runs on ${host}`);
    const memoryMiB = source?.memoryMiB ?? 128;
    const h = this.cluster.host(host);
    if (this.cluster.usedMiB(host) + memoryMiB > h.capacityMiB) throw new Error(`${host} has no room for ${name} (${memoryMiB} MiB)`);
    if (!v) {
      v = { name, host, running: false, memoryMiB, hosts: source?.hosts ?? [host], repository: opts.repository };
      this.cluster.vms.push(v);
    }
    v.restoredFrom = snapshot.id;
    this.cluster.start(v);
    return this.info(v);
  }
}
