/**
 * The one interface that the ProtectedVM component, the scheduler, recovery and drills use to
 * talk to a hypervisor. libvirt (hypervisor/libvirt), CloudStack (hypervisor/cloudstack) and the
 * simulated backend used by tests implement it; nothing outside hypervisor/ calls virsh or the
 * CloudStack API directly.
 *
 * All inputs and outputs are plain JSON-able data (core/model) so they can cross the
 * dynamic-provider boundary and be stored in Pulumi state.
 */
import type { ProtectionRecord } from "../core/policy";
import type {
  BackendKind, HostRef, RestoreOptions, SnapshotOptions, SnapshotRecord, VmInfo, VmRef, VmSpec,
} from "../core/model";

export type * from "../core/model";

export type Restorability = { ok: true } | { ok: false; reason: string };

export interface Backend {
  readonly kind: BackendKind;

  /**
   * Define (create) the VM on host and write its protection record; idempotent for an identical spec.
   * opts.create: a first creation - storage of that name must not exist yet (it is never reused),
   * and on failure everything this call made is removed again.
   */
  defineVm(spec: VmSpec, host: HostRef, opts?: { create?: boolean }): Promise<VmInfo>;
  /**
   * What on host would stop this VM from being created or recovered there (e.g. its storage pool
   * is missing), each naming the input field; empty when fine. Optional: default no problems.
   */
  hostProblems?(host: HostRef, spec: VmSpec): Promise<{ field: string; message: string }[]>;
  startVm(vm: VmRef): Promise<void>;
  /** Stop the VM; force pulls the plug (virsh destroy / forced stop). */
  stopVm(vm: VmRef, opts?: { force?: boolean }): Promise<void>;
  /** Stop if needed, undefine, and remove the VM's own storage. No error if already gone. */
  deleteVm(vm: VmRef): Promise<void>;
  /** Find the VM on the first host (in order) that has it, preferring one where it runs. */
  findVm(name: string, hosts: HostRef[]): Promise<VmInfo | undefined>;
  /** Every VM on host that carries a protection record. */
  listProtectedVms(host: HostRef): Promise<VmInfo[]>;
  /** Replace the protection record stored on the VM. */
  setProtection(vm: VmRef, protection: ProtectionRecord): Promise<void>;
  /** Average CPU usage over sampleMs, 0..100 (% of the VM's vCPUs). */
  cpuUsage(vm: VmRef, sampleMs?: number): Promise<number>;
  /** True when the host answers and can run VMs. */
  hostAlive(host: HostRef): Promise<boolean>;

  /** Take a snapshot of the running VM and commit it where another host can reach it; returns a complete record. */
  takeSnapshot(vm: VmRef, opts: SnapshotOptions): Promise<SnapshotRecord>;
  /** All snapshots of the VM, newest first, complete or not. */
  listSnapshots(vmName: string, repository: string): Promise<SnapshotRecord[]>;
  /**
   * Names of the VMs that have snapshots in repository (drill cleanup looks for drill copies'
   * snapshots by name). Only backends whose repository is a store of ours implement it.
   */
  listRepositoryVms?(repository: string): Promise<string[]>;
  deleteSnapshot(snapshot: SnapshotRecord, repository: string): Promise<void>;
  /** Re-check a snapshot's checksums; false when anything is missing or corrupt. */
  verifySnapshot(snapshot: SnapshotRecord, repository: string): Promise<boolean>;
  /**
   * Whether the snapshot can be restored on another host on its own: e.g. its disk has no
   * backing file outside the snapshot. Cheap (reads metadata, restores nothing). Optional: a
   * backend without it treats every verified snapshot as restorable.
   */
  checkRestorable?(snapshot: SnapshotRecord, repository: string): Promise<Restorability>;
  /** Bring the VM up on host from snapshot (memory + disk); returns where it now runs. */
  restoreSnapshot(snapshot: SnapshotRecord, host: HostRef, opts: RestoreOptions): Promise<VmInfo>;
  /**
   * Remove what a failed restoreSnapshot left on host (the half-restored VM and its files), so
   * recovery can try an older snapshot. Optional: a backend whose restore reuses the VM itself
   * (CloudStack reverts the same instance) cleans up its own attempts and has nothing to discard.
   */
  discardFailedRestore?(vm: VmRef, host: HostRef): Promise<void>;
}
