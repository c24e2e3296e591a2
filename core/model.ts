/**
 * The data model every layer shares: what a VM, a host, a snapshot and their options are. Plain
 * JSON-able data only (it crosses the dynamic-provider boundary and is stored in Pulumi state);
 * no I/O here.
 */
import type { ProtectionRecord } from "./policy";

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
}
