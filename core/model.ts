/**
 * The data model every layer shares: what a VM, a host, a snapshot and their options are. Plain
 * JSON-able data only (it crosses the dynamic-provider boundary and is stored in Pulumi state);
 * no I/O here.
 */
export type BackendKind = "libvirt" | "cloudstack";

/** A hypervisor host: a libvirt connection URI, or a CloudStack host id. */
export type HostRef = string;

export interface KernelBoot {
  /** Path of the kernel on the hypervisor host. */
  kernel: string;
  initrd?: string;
  cmdline?: string;
}

export interface DiskSpec {
  /** Size of a new empty qcow2 disk, in MiB. */
  sizeMiB?: number;
  /** Base qcow2 image to copy into the new disk (libvirt: a path on the management host; CloudStack: use templateId instead). */
  image?: string;
  /** libvirt storage pool that holds the disk on every host (primary and recovery). Default "default". */
  pool?: string;
}

export interface CloudStackPlacement {
  zoneId: string;
  serviceOfferingId: string;
  templateId: string;
  networkIds?: string[];
}

/** What a VM should look like. */
export interface VmSpec {
  name: string;
  memoryMiB: number;
  vcpus: number;
  disk?: DiskSpec;
  boot?: KernelBoot;
  /** libvirt network name; unset means no NIC. */
  network?: string;
  cloudstack?: CloudStackPlacement;
  /** Written into the VM itself (libvirt <metadata>, CloudStack tags) so a scheduler can find it. */
  protection?: ProtectionRecord;
}

export type VmState = "running" | "paused" | "shutoff" | "crashed" | "missing" | "unknown";

/** What a VM is, read back from the hypervisor. */
export interface VmInfo {
  name: string;
  /** libvirt UUID or CloudStack VM id. */
  id: string;
  host: HostRef;
  state: VmState;
  memoryMiB: number;
  vcpus: number;
  protection?: ProtectionRecord;
  /** How the VM came to run where it runs, when the backend records it (CloudStack: VM tags). */
  recovery?: VmRecoveryState;
}

/** A recovery of this VM as the backend recorded it: finished or still to finish, and by which path. */
export interface VmRecoveryState {
  /** A recovery was started and not finished: recover() must finish it, not report it done. */
  inProgress: boolean;
  snapshotId?: string;
  /** warm: resumed from the snapshot's memory; cold: booted from the snapshot's disk (memory lost). */
  path?: "warm" | "cold";
  /** The host the recovery brought (or is bringing) the VM to. */
  to?: HostRef;
  /** Why this path, in one sentence. */
  reason?: string;
  /** Set by restoreSnapshot when an earlier run had already finished this recovery. */
  alreadyRecovered?: boolean;
}

export interface VmRef {
  name: string;
  host: HostRef;
}

export interface SnapshotOptions {
  includeMemory: boolean;
  /** Where snapshots are kept (libvirt: a directory every host can reach; CloudStack: "primary" or "secondary"). */
  repository: string;
  /**
   * libvirt: "auto" takes the memory live when the guest's measured dirty rate is low (shorter
   * pause), else pauses the guest while memory is written; "never" (default) always pauses.
   */
  live?: "auto" | "never";
  /**
   * libvirt: "auto" (default) stores what changed (memory page groups, changed disk clusters)
   * where the host's pool can be read in place; "whole-files" always takes the external-snapshot
   * path that stores the memory file and the frozen disk (the fallback).
   */
  method?: "auto" | "whole-files";
}

/** One snapshot, as the repository (libvirt) or CloudStack records it. */
export interface SnapshotRecord {
  id: string;
  vm: string;
  backend: BackendKind;
  /** Host the VM ran on when the snapshot was taken. */
  host: HostRef;
  /** The consistent moment the snapshot captures (ISO 8601). */
  createdAt: string;
  includesMemory: boolean;
  /** Logical size of the captured state (memory + disk), bytes. */
  bytes: number;
  /** Bytes newly written to the repository for this snapshot (smaller than bytes when differential). */
  storedBytes: number;
  /** True only once written, checksummed and verified. Incomplete snapshots are never restored. */
  complete: boolean;
  /** Repository path or CloudStack snapshot id. */
  location: string;
  /** How long the guest was paused, as measured by the backend (ms), when known. */
  pauseMs?: number;
  /** libvirt: the memory was taken live (the guest ran while it was written). */
  live?: boolean;
  /** Wall time of the whole take+commit (ms). */
  durationMs?: number;
  /** libvirt: how memory and disk were stored (page groups / changed clusters, or whole files) and why. */
  method?: string;
}

export interface RestoreOptions {
  repository: string;
  /** Restore under another name (drills); default the snapshot's VM name. */
  name?: string;
  /** Proceed although the VM's host is not confirmed down (the caller fenced it). */
  force?: boolean;
}

export interface SnapshotPolicy {
  /** Interval used when the VM is idle (seconds). Default 30. */
  minIntervalSeconds: number;
  /** Interval used when the VM is busy (seconds). Default 300. */
  maxIntervalSeconds: number;
  /** Pick the interval from CPU usage (the paper's prototype); false = always minIntervalSeconds. Default true. */
  loadAdaptive: boolean;
  /** At or below this CPU % the VM counts as idle. Default 20. */
  cpuIdlePercent: number;
  /** At or above this CPU % the VM counts as busy. Default 70. */
  cpuBusyPercent: number;
  /** Keep the newest N complete snapshots. Default 3. */
  keepLast: number;
  /** Also delete complete snapshots older than this (seconds); the newest complete one is always kept. */
  maxAgeSeconds?: number;
  /** Capture memory (warm recovery). Default true. */
  includeMemory: boolean;
  /** libvirt: a directory every recovery host can reach (shared storage). CloudStack: "primary" or "secondary". */
  repository: string;
  /** What `pulumi destroy` does with the VM's snapshots. Default "keep" (they outlive the VM). */
  onDestroy: "keep" | "delete";
  /**
   * libvirt: "auto" (default) snapshots memory live when the guest dirties memory slowly (the
   * pause is then only the final switch-over), and with the guest paused otherwise (a live
   * snapshot of a fast writer does not converge); "never" always pauses.
   */
  liveSnapshot: "auto" | "never";
}

export type SnapshotPolicyInput = Partial<SnapshotPolicy> & { repository: string };

/** What is stored on the VM itself so the scheduler and recovery need no other database. */
export interface ProtectionRecord {
  version: 1;
  backend: BackendKind;
  primaryHost: string;
  recoveryHosts: string[];
  policy: SnapshotPolicy;
  /** libvirt: the storage pool that holds the VM's disk on every host. */
  pool?: string;
  /** Set by `recover`: where the VM was brought back, from which snapshot. */
  lastRecovery?: { from: string; to: string; snapshotId: string; at: string };
}
