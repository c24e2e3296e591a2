/**
 * Typed reads and writes of the CloudStack resources the backend uses, on top of the client:
 * VMs, hosts, storage pools, ROOT volumes, VM snapshots, volume snapshots, templates, tags.
 * Every create goes through `client.create` with a lookup, so a create is never repeated
 * blindly, and every failed create job is followed by removal of the debris CloudStack leaves
 * (a VM or snapshot in state Error).
 */
import { CloudStackClient, Json } from "./client";
import { CloudStackError } from "./errors";
import { Tag, tagParams } from "./tags";

export interface CsTag {
  key: string;
  value: string;
  resourcetype?: string;
  resourceid?: string;
}

export interface CsVm {
  id: string;
  name: string;
  displayname?: string;
  state: string;
  hostid?: string;
  hostname?: string;
  zoneid: string;
  serviceofferingid: string;
  templateid: string;
  guestosid?: string;
  cpunumber: number;
  memory: number;
  cpuused?: string;
  created?: string;
  nic?: Array<{ networkid: string; isdefault?: boolean }>;
  tags?: CsTag[];
}

export interface CsHost {
  id: string;
  name: string;
  state: string;
  resourcestate: string;
  type?: string;
}

export interface CsPool {
  id: string;
  name: string;
  state: string;
}

export interface CsVolume {
  id: string;
  name: string;
  type: string;
  storageid?: string;
  size?: number;
  state?: string;
}

export interface CsVmSnapshot {
  id: string;
  name: string;
  displayname: string;
  description?: string;
  state: string;
  type: "Disk" | "DiskAndMemory";
  current?: boolean;
  created: string;
  virtualmachineid: string;
}

export interface CsSnapshot {
  id: string;
  name: string;
  volumeid: string;
  state: string;
  created: string;
  physicalsize?: number;
  virtualsize?: number;
  ostypeid?: string;
  zoneid?: string;
}

export interface CsTemplate {
  id: string;
  name: string;
  isready?: boolean;
  status?: string;
  zoneid?: string;
}

/** CloudStack host names: RFC 1123 labels starting with a letter. */
export const HOSTNAME_PATTERN = /^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

/** The name a VM is known by here: displayname when set, else name. */
export function vmLabel(vm: CsVm): string {
  return vm.displayname || vm.name;
}

export class CloudStackResources {
  constructor(readonly client: CloudStackClient) {}

  /** Re-read until `done` says so or asyncTimeoutMs passes; returns the last value read. */
  async poll<T>(read: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
    const deadline = Date.now() + this.client.asyncTimeoutMs;
    let wait = this.client.pollMs;
    let v = await read();
    while (!done(v) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 10_000);
      v = await read();
    }
    return v;
  }

  // ------------------------------------------------------------------ VMs

  /**
   * The VMs known by `name`. We deploy with host name = name when it is a valid host name, and
   * always with display name = name. CloudStack's `name` filter compares the host name exactly
   * (QueryManagerImpl.searchForUserVMIdsAndCount, getHostName() Op.EQ) and never the display
   * name, so a name that is not a host name (web_1, a.b, 1web) is found with `keyword` (LIKE
   * %keyword% on display name or host name) and kept only on an exact display-name match.
   */
  async vmsNamed(name: string): Promise<CsVm[]> {
    const hostName = HOSTNAME_PATTERN.test(name);
    const all = await this.client.listAll<CsVm>("listVirtualMachines", "virtualmachine", { ...(hostName ? { name } : { keyword: name }), listall: true });
    return all.filter((v) => (hostName ? v.name === name : v.displayname === name));
  }

  async vm(id: string): Promise<CsVm | undefined> {
    try {
      const r = await this.client.call("listVirtualMachines", { id, listall: true });
      return ((r.virtualmachine ?? []) as CsVm[])[0];
    } catch (e) {
      if (e instanceof CloudStackError && e.notFound) return undefined;
      throw e;
    }
  }

  async taggedVms(key: string, value: string): Promise<CsVm[]> {
    return this.client.listAll<CsVm>("listVirtualMachines", "virtualmachine", { listall: true, "tags[0].key": key, "tags[0].value": value });
  }

  async deploy(params: Record<string, unknown>, lookupName: string): Promise<CsVm> {
    const post = typeof params.userdata === "string" && params.userdata.length > 0;
    const lookup = async () => {
      const found = (await this.vmsNamed(lookupName)).find((v) => v.state !== "Error" && v.state !== "Destroyed");
      return found ? this.settleVm(found) : undefined;
    };
    try {
      return await this.client.create(
        async () => {
          const r = await this.client.callAsync("deployVirtualMachine", params, { post });
          return r.result.virtualmachine as CsVm;
        },
        lookup,
        "deployVirtualMachine",
      );
    } catch (e) {
      // A failed deploy leaves a VM in state Error: remove it so nothing is orphaned.
      if (e instanceof CloudStackError && e.jobId) await this.expungeErrored(lookupName);
      throw e;
    }
  }

  /** A VM found by lookup while its deploy job may still run: wait until it leaves Starting. */
  async settleVm(vm: CsVm, timeoutMs = this.client.asyncTimeoutMs, pollMs = 500): Promise<CsVm> {
    const deadline = Date.now() + timeoutMs;
    let cur: CsVm | undefined = vm;
    while (cur && (cur.state === "Starting" || cur.state === "Creating") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(pollMs, this.client.pollMs)));
      cur = await this.vm(vm.id);
    }
    if (!cur) throw new CloudStackError({ command: "deployVirtualMachine", errorCode: 431, errorText: `VM ${vm.id} disappeared while being deployed` });
    if (cur.state === "Error") throw new CloudStackError({ command: "deployVirtualMachine", errorCode: 530, errorText: `VM ${vm.id} ended in state Error` });
    return cur;
  }

  async expungeErrored(name: string): Promise<void> {
    for (const v of await this.vmsNamed(name)) {
      if (v.state === "Error") await this.destroyVm(v.id);
    }
  }

  async destroyVm(id: string): Promise<void> {
    try {
      await this.client.callAsync("destroyVirtualMachine", { id, expunge: true });
    } catch (e) {
      if (e instanceof CloudStackError && e.notFound) return;
      throw e;
    }
  }

  async startVm(id: string, hostid?: string): Promise<CsVm> {
    const r = await this.client.callAsync("startVirtualMachine", { id, hostid });
    return r.result.virtualmachine as CsVm;
  }

  async stopVm(id: string, forced: boolean): Promise<CsVm> {
    const r = await this.client.callAsync("stopVirtualMachine", { id, forced });
    return r.result.virtualmachine as CsVm;
  }

  // ------------------------------------------------------------------ hosts, storage, volumes

  async host(id: string): Promise<CsHost | undefined> {
    try {
      const r = await this.client.call("listHosts", { id });
      return ((r.host ?? []) as CsHost[])[0];
    } catch (e) {
      if (e instanceof CloudStackError && e.notFound) return undefined;
      throw e;
    }
  }

  static hostUsable(h: CsHost | undefined): boolean {
    return !!h && h.state === "Up" && h.resourcestate === "Enabled";
  }

  async pool(id: string): Promise<CsPool | undefined> {
    const r = await this.client.call("listStoragePools", { id });
    return ((r.storagepool ?? []) as CsPool[])[0];
  }

  async rootVolume(vmId: string): Promise<CsVolume | undefined> {
    const r = await this.client.call("listVolumes", { virtualmachineid: vmId, type: "ROOT", listall: true });
    return ((r.volume ?? []) as CsVolume[])[0];
  }

  // ------------------------------------------------------------------ VM snapshots

  async vmSnapshots(vmId: string): Promise<CsVmSnapshot[]> {
    return this.client.listAll<CsVmSnapshot>("listVMSnapshot", "vmSnapshot", { virtualmachineid: vmId, listall: true });
  }

  async vmSnapshot(id: string): Promise<CsVmSnapshot | undefined> {
    const r = await this.client.call("listVMSnapshot", { vmsnapshotid: id, listall: true });
    return ((r.vmSnapshot ?? []) as CsVmSnapshot[])[0];
  }

  async vmSnapshotNamed(vmId: string, name: string): Promise<CsVmSnapshot | undefined> {
    const r = await this.client.call("listVMSnapshot", { virtualmachineid: vmId, name, listall: true });
    return ((r.vmSnapshot ?? []) as CsVmSnapshot[]).find((s) => s.displayname === name || s.name === name);
  }

  /** Wait until a VM snapshot found by lookup (no job id known) leaves Allocated/Creating. */
  async settleVmSnapshot(s: CsVmSnapshot, timeoutMs: number, pollMs: number): Promise<CsVmSnapshot> {
    const deadline = Date.now() + timeoutMs;
    let cur: CsVmSnapshot | undefined = s;
    while (cur && (cur.state === "Allocated" || cur.state === "Creating") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, pollMs));
      cur = await this.vmSnapshot(s.id);
    }
    if (!cur) throw new CloudStackError({ command: "createVMSnapshot", errorCode: 431, errorText: `VM snapshot ${s.id} disappeared while being created` });
    return cur;
  }

  async createVmSnapshot(vmId: string, name: string, description: string, memory: boolean, timeoutMs: number, pollMs: number): Promise<CsVmSnapshot> {
    const lookup = async () => {
      const found = await this.vmSnapshotNamed(vmId, name);
      return found ? this.settleVmSnapshot(found, timeoutMs, pollMs) : undefined;
    };
    try {
      const snap = await this.client.create(
        async () => {
          const r = await this.client.callAsync("createVMSnapshot", { virtualmachineid: vmId, name, description, snapshotmemory: memory, quiescevm: false });
          return r.result.vmsnapshot as CsVmSnapshot;
        },
        lookup,
        "createVMSnapshot",
      );
      if (snap.state !== "Ready") {
        throw new CloudStackError({ command: "createVMSnapshot", errorCode: 530, errorText: `VM snapshot ${snap.id} ended in state ${snap.state}` });
      }
      return snap;
    } catch (e) {
      if (e instanceof CloudStackError && (e.jobId || e.errorCode === 530)) {
        const debris = await this.vmSnapshotNamed(vmId, name).catch(() => undefined);
        if (debris && debris.state === "Error") await this.deleteVmSnapshot(debris.id).catch(() => undefined);
      }
      throw e;
    }
  }

  async deleteVmSnapshot(id: string): Promise<void> {
    try {
      await this.client.callAsync("deleteVMSnapshot", { vmsnapshotid: id });
    } catch (e) {
      if (e instanceof CloudStackError && e.notFound) return;
      throw e;
    }
  }

  async revertToVmSnapshot(id: string): Promise<CsVm> {
    const r = await this.client.callAsync("revertToVMSnapshot", { vmsnapshotid: id });
    return r.result.virtualmachine as CsVm;
  }

  // ------------------------------------------------------------------ volume snapshots (secondary storage)

  async snapshotNamed(name: string): Promise<CsSnapshot | undefined> {
    const r = await this.client.call("listSnapshots", { name, listall: true });
    return ((r.snapshot ?? []) as CsSnapshot[]).find((s) => s.name === name);
  }

  async snapshot(id: string): Promise<CsSnapshot | undefined> {
    try {
      const r = await this.client.call("listSnapshots", { id, listall: true });
      return ((r.snapshot ?? []) as CsSnapshot[])[0];
    } catch (e) {
      if (e instanceof CloudStackError && e.notFound) return undefined;
      throw e;
    }
  }

  async volumeSnapshots(volumeId: string): Promise<CsSnapshot[]> {
    return this.client.listAll<CsSnapshot>("listSnapshots", "snapshot", { volumeid: volumeId, listall: true });
  }

  /** Back a VM snapshot up to secondary storage (KVM: createSnapshotFromVMSnapshot). */
  async backUpVmSnapshot(volumeId: string, vmSnapshotId: string, name: string): Promise<CsSnapshot> {
    // The snapshot record exists as soon as CloudStack accepted the command (create phase):
    // if the lookup finds it, wait for its job to finish instead of sending a second one.
    const lookup = async () => {
      const s = await this.snapshotNamed(name);
      if (!s) return undefined;
      const done = await this.poll(() => this.snapshot(s.id), (x) => !x || !["Allocated", "Creating", "BackingUp", "CreatedOnPrimary"].includes(x.state));
      if (!done || done.state !== "BackedUp") {
        throw new CloudStackError({ command: "createSnapshotFromVMSnapshot", errorCode: 530, errorText: `snapshot ${s.id} ended in state ${done?.state ?? "deleted"}` });
      }
      return done;
    };
    try {
      return await this.client.create(
        async () => {
          const r = await this.client.callAsync("createSnapshotFromVMSnapshot", { volumeid: volumeId, vmsnapshotid: vmSnapshotId, name });
          return r.result.snapshot as CsSnapshot;
        },
        lookup,
        "createSnapshotFromVMSnapshot",
      );
    } catch (e) {
      if (e instanceof CloudStackError && e.jobId) {
        const debris = await this.snapshotNamed(name).catch(() => undefined);
        if (debris) await this.deleteSnapshot(debris.id).catch(() => undefined);
      }
      throw e;
    }
  }

  async deleteSnapshot(id: string): Promise<void> {
    try {
      await this.client.callAsync("deleteSnapshot", { id });
    } catch (e) {
      if (e instanceof CloudStackError && e.notFound) return;
      throw e;
    }
  }

  // ------------------------------------------------------------------ templates

  async templateNamed(name: string): Promise<CsTemplate | undefined> {
    const r = await this.client.call("listTemplates", { templatefilter: "self", name, listall: true });
    return ((r.template ?? []) as CsTemplate[]).find((t) => t.name === name);
  }

  async templateFromSnapshot(snapshotId: string, name: string, ostypeid: string): Promise<CsTemplate> {
    const existing = await this.templateNamed(name);
    if (existing && existing.isready !== false) return existing;
    const lookup = async () => {
      const t = await this.templateNamed(name);
      if (!t) return undefined;
      const done = await this.poll(() => this.templateNamed(name), (x) => !x || x.isready === true || /error|fail/i.test(x.status ?? ""));
      if (!done || !done.isready) throw new CloudStackError({ command: "createTemplate", errorCode: 530, errorText: `template ${t.id} ended ${done?.status ?? "deleted"}` });
      return done;
    };
    try {
      return await this.client.create(
        async () => {
          const r = await this.client.callAsync("createTemplate", { snapshotid: snapshotId, name, displaytext: name, ostypeid });
          return r.result.template as CsTemplate;
        },
        lookup,
        "createTemplate",
      );
    } catch (e) {
      if (e instanceof CloudStackError && e.jobId) {
        const debris = await this.templateNamed(name).catch(() => undefined);
        if (debris) await this.client.callAsync("deleteTemplate", { id: debris.id }).catch(() => undefined);
      }
      throw e;
    }
  }

  // ------------------------------------------------------------------ tags

  async createTags(resourceType: string, resourceId: string, tags: Tag[]): Promise<void> {
    if (!tags.length) return;
    // createTags is not repeatable (CloudStack refuses an existing key): after an ambiguous
    // failure, check whether the tags are there before sending it again.
    const lookup = async () => {
      const r = await this.client.call("listTags", { resourceid: resourceId, resourcetype: resourceType, listall: true });
      const have = (r.tag ?? []) as CsTag[];
      return tags.every((t) => have.some((h) => h.key === t.key && h.value === t.value)) ? true : undefined;
    };
    try {
      await this.client.create(
        async () => (await this.client.callAsync("createTags", { resourcetype: resourceType, resourceids: resourceId, ...tagParams(tags) })) && true,
        lookup,
        "createTags",
      );
    } catch (e) {
      // The lost request's job may have finished after our lookup: then the re-sent one is
      // refused as a duplicate, and the tags are exactly what we wanted.
      // CloudStack reports it as 530 (TaggedResourceManagerImpl.createTags: CloudRuntimeException
      // "tag ... already on ..."); older versions answered 431.
      if (e instanceof CloudStackError && e.jobId && (e.errorCode === 530 || e.errorCode === 431) && /already on/i.test(e.errorText) && (await lookup())) return;
      throw e;
    }
  }

  async deleteTags(resourceType: string, resourceId: string, keys: string[]): Promise<void> {
    if (!keys.length) return;
    await this.client.callAsync("deleteTags", { resourcetype: resourceType, resourceids: resourceId, ...tagParams(keys.map((key) => ({ key, value: "" })), false) });
  }

  /** Make these keys have these values on the resource (delete, then create: createTags refuses an existing key). */
  async putTags(resourceType: string, resourceId: string, current: CsTag[] | undefined, tags: Tag[]): Promise<void> {
    const keys = new Set(tags.map((t) => t.key));
    const stale = (current ?? []).filter((t) => keys.has(t.key));
    const unchanged = stale.length === tags.length && tags.every((t) => stale.some((s) => s.key === t.key && s.value === t.value));
    if (unchanged) return;
    await this.deleteTags(resourceType, resourceId, stale.map((t) => t.key));
    await this.createTags(resourceType, resourceId, tags);
  }
}

export type { Json };
