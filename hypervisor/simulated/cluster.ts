/**
 * A simulated cluster for HA tests: hosts with power and per-link network state (to the
 * coordination store, to the management network, to the shared storage), VMs, a snapshot
 * repository and a fake clock. hypervisor/simulated/backend.ts serves the Backend interface over
 * it, hypervisor/simulated/coordination.ts a leased, compare-and-swap key store.
 *
 * It watches the invariant HA exists for: whenever a copy of a VM starts while another copy of
 * the same VM runs on any powered host, it records a split-brain violation (at that instant, not
 * at the next sample).
 */
export type Link = "store" | "mgmt" | "storage";

export interface SimHost {
  name: string;
  power: boolean;
  links: Record<Link, boolean>;
  capacityMiB: number;
}

export interface SimVm {
  name: string;
  host: string;
  running: boolean;
  memoryMiB: number;
  /** Primary host first, then recovery hosts. */
  hosts: string[];
  repository: string;
  /** Bumped on each restore: which snapshot the running copy came from. */
  restoredFrom?: string;
}

export interface SimSnapshot {
  id: string;
  vm: string;
  host: string;
  createdAtMs: number;
  complete: boolean;
  corrupt: boolean;
}

export class FakeClock {
  constructor(public ms = Date.parse("2026-01-01T00:00:00Z")) {}
  now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

export class SimCluster {
  readonly clock: FakeClock;
  readonly hosts = new Map<string, SimHost>();
  /** Every definition of a VM, one per host it is defined on. */
  readonly vms: SimVm[] = [];
  readonly snapshots: SimSnapshot[] = [];
  readonly violations: string[] = [];
  private nextSnapshot = 1;
  /** Reads of the store from the management side (managers) work unless this is false. */
  managementStoreLink = true;

  constructor(readonly startMs?: number) {
    this.clock = new FakeClock(startMs);
  }

  addHost(name: string, capacityMiB = 4096): SimHost {
    const h: SimHost = { name, power: true, links: { store: true, mgmt: true, storage: true }, capacityMiB };
    this.hosts.set(name, h);
    return h;
  }

  host(name: string): SimHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no simulated host ${name}`);
    return h;
  }

  /** Define a VM on its primary host and start it. */
  addVm(name: string, hosts: string[], memoryMiB = 128, repository = "/sim/repo"): SimVm {
    const vm: SimVm = { name, host: hosts[0], running: false, memoryMiB, hosts, repository };
    this.vms.push(vm);
    this.start(vm);
    return vm;
  }

  copies(name: string): SimVm[] {
    return this.vms.filter((v) => v.name === name);
  }

  /** Copies of the VM that run right now (on powered hosts). */
  runningCopies(name: string): SimVm[] {
    return this.copies(name).filter((v) => v.running && this.host(v.host).power);
  }

  start(vm: SimVm): void {
    const others = this.runningCopies(vm.name).filter((v) => v !== vm);
    if (others.length) this.violations.push(`${this.clock.now()}: ${vm.name} started on ${vm.host} while running on ${others.map((o) => o.host).join(", ")}`);
    vm.running = true;
  }

  usedMiB(host: string): number {
    return this.vms.filter((v) => v.host === host && v.running).reduce((s, v) => s + v.memoryMiB, 0);
  }

  /** Power a host off: its VMs die (a powered-off host runs nothing, also after power returns). */
  powerOff(host: string): void {
    this.host(host).power = false;
    for (const v of this.vms) if (v.host === host) v.running = false;
  }

  powerOn(host: string): void {
    this.host(host).power = true;
  }

  takeSnapshot(vm: string, host: string): SimSnapshot {
    const s: SimSnapshot = { id: `s${this.nextSnapshot++}`, vm, host, createdAtMs: this.clock.now(), complete: true, corrupt: false };
    this.snapshots.push(s);
    return s;
  }

  /** Newest first. */
  snapshotsOf(vm: string): SimSnapshot[] {
    return this.snapshots.filter((s) => s.vm === vm).sort((a, b) => b.createdAtMs - a.createdAtMs || Number(b.id.slice(1)) - Number(a.id.slice(1)));
  }
}
