/** The libvirt implementation of Backend: composes domains, storage and snapshots over virsh. */
import type { Backend } from "../backend";
import type { HostRef, Restorability, RestoreOptions, SnapshotOptions, SnapshotRecord, VmInfo, VmRef, VmSpec } from "../backend";
import { checkSnapshotRestorable } from "./restorable";
import type { ProtectionRecord } from "../../core/policy";
import { SnapshotRepository } from "../../repository/repository";
import { RepositoryBusyError } from "../../repository/lock";
import { ExecVirsh, VirshError, VirshRunner } from "./virsh";
import { buildDomainXml } from "./domainXml";
import { protectionElement } from "./metadata";
import * as domains from "./domains";
import { DEFAULT_POOL, ensureDiskVolume, poolDir, volumeExists, volumeNames } from "./storage";
import { deleteVmStorage, restoreSnapshot, takeSnapshot } from "./snapshots";
import type { TransferSetting } from "./hostFiles";
import * as path from "path";

export interface LibvirtBackendOptions {
  virsh?: VirshRunner;
  /** Storage pool used on every host when the VM's protection record names none. */
  pool?: string;
  /**
   * How snapshot files move between a host's pool and the repository: "direct" (in place; the
   * host's pool directory is on this machine), "stream" (through libvirt: vol-download /
   * vol-upload), or "auto" (default: direct for a URI without a host part, else stream).
   * PROTECTED_VM_TRANSFER sets it for the CLI and scheduler.
   */
  transfer?: TransferSetting;
}

export class LibvirtBackend implements Backend {
  readonly kind = "libvirt" as const;
  readonly virsh: VirshRunner;
  private readonly defaultPool: string;
  private readonly transfer: TransferSetting;

  constructor(opts: LibvirtBackendOptions = {}) {
    this.virsh = opts.virsh ?? new ExecVirsh();
    this.defaultPool = opts.pool ?? DEFAULT_POOL;
    this.transfer = opts.transfer ?? (process.env.PROTECTED_VM_TRANSFER as TransferSetting | undefined) ?? "auto";
  }

  private async poolOf(vm: VmRef): Promise<string> {
    const rec = await domains.readProtection(this.virsh, vm.host, vm.name).catch(() => undefined);
    return rec?.pool ?? this.defaultPool;
  }

  /** Where the VM's serial console is logged on its host (in its pool directory). */
  async consoleLogPath(vm: VmRef, pool?: string): Promise<string> {
    const dir = await poolDir(this.virsh, vm.host, pool ?? (await this.poolOf(vm)));
    return path.join(dir, volumeNames.consoleLog(vm.name));
  }

  async defineVm(spec: VmSpec, host: HostRef, opts: { create?: boolean } = {}): Promise<VmInfo> {
    const pool = spec.disk?.pool ?? spec.protection?.pool ?? this.defaultPool;
    const dir = await poolDir(this.virsh, host, pool);
    const diskVolume = volumeNames.disk(spec.name);
    if (opts.create && spec.disk && (await volumeExists(this.virsh, host, pool, diskVolume))) {
      // A leftover of someone else (or of a create that failed before this fix): never adopt it,
      // or the VM would start from that disk instead of its image.
      throw new Error(`disk: volume ${diskVolume} already exists in pool ${pool} on ${host} and this create did not write it; remove it (virsh vol-delete --pool ${pool} ${diskVolume}) or choose another vmName - nothing was created`);
    }
    try {
      const diskPath = spec.disk ? await ensureDiskVolume(this.virsh, host, pool, diskVolume, spec.disk.sizeMiB ?? 64, spec.disk.image) : undefined;
      const consoleLog = path.join(dir, volumeNames.consoleLog(spec.name));
      const metadataXml = spec.protection ? protectionElement({ ...spec.protection, pool }) : undefined;
      await domains.defineXml(this.virsh, host, buildDomainXml(spec, { diskPath, consoleLog, metadataXml }));
      const info = await domains.vmInfo(this.virsh, host, spec.name);
      if (!info) throw new Error(`defined ${spec.name} on ${host} but libvirt does not list it`);
      return info;
    } catch (e) {
      if (opts.create) {
        // Leave nothing half-created: the domain if it got defined, the disk and console log we made.
        await domains.undefineDomain(this.virsh, host, spec.name).catch(() => undefined);
        await deleteVmStorage(this.virsh, host, pool, spec.name).catch(() => undefined);
      }
      throw e;
    }
  }

  async hostProblems(host: HostRef, spec: VmSpec): Promise<{ field: string; message: string }[]> {
    const pool = spec.disk?.pool ?? spec.protection?.pool ?? this.defaultPool;
    try {
      await this.virsh.run(host, ["pool-info", pool], { timeoutMs: 10_000 });
      return [];
    } catch (e) {
      return [{ field: "disk.pool", message: `storage pool ${pool} is not usable on ${host}: ${((e as VirshError).stderr || (e as Error).message).trim().split("\n").pop()}` }];
    }
  }

  startVm(vm: VmRef): Promise<void> {
    return domains.startDomain(this.virsh, vm.host, vm.name);
  }

  stopVm(vm: VmRef, opts: { force?: boolean } = {}): Promise<void> {
    return domains.stopDomain(this.virsh, vm.host, vm.name, opts.force);
  }

  async deleteVm(vm: VmRef): Promise<void> {
    const pool = await this.poolOf(vm);
    await domains.stopDomain(this.virsh, vm.host, vm.name, true);
    await domains.undefineDomain(this.virsh, vm.host, vm.name);
    await deleteVmStorage(this.virsh, vm.host, pool, vm.name);
  }

  /** A failed restore is a domain and files of its own on the target: remove them like a VM. */
  discardFailedRestore(vm: VmRef): Promise<void> {
    return this.deleteVm(vm);
  }

  async findVm(name: string, hosts: HostRef[]): Promise<VmInfo | undefined> {
    let first: VmInfo | undefined;
    for (const host of hosts) {
      const info = await domains.vmInfo(this.virsh, host, name).catch(() => undefined);
      if (!info) continue;
      if (info.state === "running" || info.state === "paused") return info;
      first ??= info;
    }
    return first;
  }

  async listProtectedVms(host: HostRef): Promise<VmInfo[]> {
    const out: VmInfo[] = [];
    for (const name of await domains.listDomainNames(this.virsh, host)) {
      const info = await domains.vmInfo(this.virsh, host, name).catch(() => undefined);
      if (info?.protection) out.push(info);
    }
    return out;
  }

  setProtection(vm: VmRef, protection: ProtectionRecord): Promise<void> {
    return domains.writeProtection(this.virsh, vm.host, vm.name, protection);
  }

  cpuUsage(vm: VmRef, sampleMs = 1000): Promise<number> {
    return domains.cpuPercent(this.virsh, vm.host, vm.name, sampleMs);
  }

  async hostAlive(host: HostRef): Promise<boolean> {
    try {
      await this.virsh.run(host, ["nodeinfo"], { timeoutMs: 10_000 });
      return true;
    } catch {
      return false;
    }
  }

  async takeSnapshot(vm: VmRef, opts: SnapshotOptions): Promise<SnapshotRecord> {
    return takeSnapshot(this.virsh, { uri: vm.host, name: vm.name, pool: await this.poolOf(vm), transfer: this.transfer, ...opts });
  }

  async listSnapshots(vmName: string, repository: string): Promise<SnapshotRecord[]> {
    return new SnapshotRepository(repository).list(vmName);
  }

  async listRepositoryVms(repository: string): Promise<string[]> {
    return new SnapshotRepository(repository).listVms();
  }

  async deleteSnapshot(snapshot: SnapshotRecord, repository: string): Promise<void> {
    const repo = new SnapshotRepository(repository);
    await repo.delete(snapshot.vm, snapshot.id);
    try {
      await repo.gc();
    } catch (e) {
      // Another snapshot is being written (any VM): the deleted one's chunks go at the next gc.
      // The delete itself is done, so this is not a failure (issue 14: "repository busy").
      if (!(e instanceof RepositoryBusyError)) throw e;
    }
  }

  async verifySnapshot(snapshot: SnapshotRecord, repository: string): Promise<boolean> {
    return (await new SnapshotRepository(repository).verify(snapshot.vm, snapshot.id)).ok;
  }

  /** Self-contained: no disk in the snapshot has a backing file (or data file) outside it. */
  checkRestorable(snapshot: SnapshotRecord, repository: string): Promise<Restorability> {
    return checkSnapshotRestorable(repository, snapshot);
  }

  async restoreSnapshot(snapshot: SnapshotRecord, host: HostRef, opts: RestoreOptions): Promise<VmInfo> {
    return restoreSnapshot(this.virsh, { snapshot, uri: host, pool: this.defaultPool, repository: opts.repository, name: opts.name, transfer: this.transfer });
  }
}
