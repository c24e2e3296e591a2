/**
 * CloudStackBackend: the Backend interface mapped onto real CloudStack API commands.
 *
 * - Hosts (HostRef) are CloudStack host ids; placing a VM on one (hostid) needs a root-admin key.
 * - VMs are found by name: CloudStack's `name` filter (the host name, exact) when the name is a
 *   valid host name, else `keyword` with an exact display-name match (resources.vmsNamed). The
 *   protection record and the recovery record are stored on the VM as resource tags (tags.ts).
 * - Snapshots: createVMSnapshot with snapshotmemory=true (CloudStack needs the VM Running; on
 *   KVM a running VM cannot have a disk-only VM snapshot). repository "primary" keeps only the
 *   VM snapshot (internal to the qcow2 on primary storage, enough for warm recovery while that
 *   storage is shared and alive); "secondary" also copies it to secondary storage with
 *   createSnapshotFromVMSnapshot (KVM's way to get a copy off primary without
 *   kvm.snapshot.enabled), which cold recovery can use after primary storage is lost.
 * - SnapshotRecord.id is the VM snapshot id; location is the backed-up volume snapshot id
 *   when there is one, else the VM snapshot id.
 * - restoreSnapshot is the CloudStack restore step (recovery.ts): warm first, cold from the
 *   backed-up copy when warm is impossible or fails for a storage reason; the path taken is on the
 *   returned VmInfo's `recovery`, and on every VmInfo read later (from the VM's tags).
 */
import type { Backend } from "../backend";
import type { HostRef, RestoreOptions, SnapshotOptions, SnapshotRecord, VmInfo, VmRecoveryState, VmRef, VmSpec, VmState } from "../backend";
import type { ProtectionRecord } from "../../core/policy";
import { CloudStackClient, CloudStackClientOptions, CloudStackLogger } from "./client";
import { CloudStackConfigInput, resolveCloudStackConfig } from "./config";
import { CloudStackError } from "./errors";
import { CloudStackResources, CsHost, CsSnapshot, CsVm, CsVmSnapshot, HOSTNAME_PATTERN, vmLabel } from "./resources";
import { CloudStackRestoreOptions, backupName, recoveryStateOf, restoreOnCloudStack } from "./recovery";
import { MARKER_KEY, MARKER_VALUE, RESTORING_KEY, isProtectionTagKey, protectionToTags, tagsToProtection } from "./tags";

export interface CloudStackBackendOptions extends CloudStackClientOptions {
  /** Default zone for VMs whose spec has no cloudstack.zoneId. */
  zone?: string;
}

/** What restoreSnapshot returns on CloudStack: the VM, with the path taken and why on `recovery`. */
export type CloudStackRestoreResult = VmInfo & { recovery: VmRecoveryState };

const SNAPSHOT_DESCRIPTION = "protected-vm";

export function mapVmState(state: string | undefined): VmState {
  switch (state) {
    case "Running":
      return "running";
    case "Stopped":
      return "shutoff";
    case "Error":
      return "crashed";
    case "Destroyed":
    case "Expunging":
      return "missing";
    default:
      return "unknown"; // Starting, Stopping, Migrating, Unknown, Shutdown...
  }
}

function isoDate(cs: string | undefined): string {
  if (!cs) return new Date(0).toISOString();
  const fixed = cs.replace(/([+-]\d{2})(\d{2})$/, "$1:$2");
  const d = new Date(fixed);
  return Number.isNaN(d.getTime()) ? new Date(0).toISOString() : d.toISOString();
}

function stamp(d = new Date()): string {
  return d.toISOString().replace(/[-:TZ.]/g, "").slice(0, 17);
}

export class CloudStackBackend implements Backend {
  readonly kind = "cloudstack" as const;
  readonly client: CloudStackClient;
  readonly resources: CloudStackResources;
  private readonly zone?: string;
  private readonly log: CloudStackLogger;

  constructor(opts: CloudStackBackendOptions | { client: CloudStackClient; zone?: string; logger?: CloudStackLogger }) {
    this.client = "client" in opts ? opts.client : new CloudStackClient(opts);
    this.resources = new CloudStackResources(this.client);
    this.zone = opts.zone;
    this.log = opts.logger ?? {};
  }

  /** Build from settings/environment (CLOUDSTACK_API_URL, ...); throws CloudStackConfigError listing every bad field. */
  static fromConfig(input: CloudStackConfigInput = {}, extra: Partial<CloudStackClientOptions> = {}, env: NodeJS.ProcessEnv = process.env): CloudStackBackend {
    const cfg = resolveCloudStackConfig(input, env);
    return new CloudStackBackend({ ...extra, ...cfg, zone: cfg.zone });
  }

  toJSON(): Record<string, unknown> {
    return { kind: this.kind, client: this.client.toJSON(), zone: this.zone };
  }

  /**
   * One cheap round trip that proves the endpoint, the key pair and the zone are right
   * (listCapabilities + listZones). For a provider's create/diff, after `check` has validated
   * the fields offline. Throws CloudStackError (401 for bad keys) or a plain Error for a bad zone.
   */
  async probe(): Promise<{ cloudstackVersion: string; zoneId?: string; zoneName?: string }> {
    const caps = await this.client.call("listCapabilities");
    const version = String(caps.capability?.cloudstackversion ?? "unknown");
    if (!this.zone) return { cloudstackVersion: version };
    const zones = await this.client.listAll<{ id: string; name: string }>("listZones", "zone", {});
    const z = zones.find((x) => x.id === this.zone || x.name === this.zone);
    if (!z) throw new Error(`CloudStack zone ${JSON.stringify(this.zone)} not found; zones visible to this key: ${zones.map((x) => `${x.name} (${x.id})`).join(", ") || "none"}`);
    return { cloudstackVersion: version, zoneId: z.id, zoneName: z.name };
  }

  // ------------------------------------------------------------------ mapping

  toVmInfo(vm: CsVm): VmInfo {
    const protection = tagsToProtection(vm.tags);
    const recovery = recoveryStateOf(vm, protection?.primaryHost);
    return {
      name: vmLabel(vm),
      id: vm.id,
      host: vm.hostid ?? protection?.primaryHost ?? "",
      state: mapVmState(vm.state),
      memoryMiB: Number(vm.memory) || 0,
      vcpus: Number(vm.cpunumber) || 0,
      ...(protection ? { protection } : {}),
      ...(recovery ? { recovery } : {}),
    };
  }

  /**
   * toVmInfo plus what the VM's host says: CloudStack keeps a VM "Running" while its host is
   * Disconnected, Alert or Down, so such a VM is reported `unknown` - by findVm and
   * listProtectedVms alike. `hosts` caches host lookups across VMs.
   */
  private async vmInfoWithHost(vm: CsVm, hosts = new Map<string, Promise<CsHost | undefined>>()): Promise<VmInfo> {
    const info = this.toVmInfo(vm);
    if (vm.state === "Running" && vm.hostid) {
      if (!hosts.has(vm.hostid)) hosts.set(vm.hostid, this.resources.host(vm.hostid).catch(() => undefined));
      const h = await hosts.get(vm.hostid);
      if (!h || h.state !== "Up") info.state = "unknown";
    }
    return info;
  }

  private async mustFind(ref: VmRef): Promise<CsVm> {
    const vm = await this.pick(ref.name, [ref.host]);
    if (!vm) {
      throw new CloudStackError({ command: "listVirtualMachines", errorCode: 431, errorText: `no VM named ${ref.name} (looked for it by name in CloudStack)` });
    }
    return vm;
  }

  /** The live VM named `name`, preferring one running on the given hosts. */
  private async pick(name: string, hosts: HostRef[]): Promise<CsVm | undefined> {
    const all = (await this.resources.vmsNamed(name)).filter((v) => v.state !== "Destroyed" && v.state !== "Expunging");
    if (!all.length) return undefined;
    for (const h of hosts) {
      const running = all.find((v) => v.hostid === h && v.state === "Running");
      if (running) return running;
    }
    for (const h of hosts) {
      const there = all.find((v) => v.hostid === h);
      if (there) return there;
    }
    return all.find((v) => v.state === "Running") ?? all.find((v) => v.state !== "Error") ?? all[0];
  }

  // ------------------------------------------------------------------ VMs

  async defineVm(spec: VmSpec, host: HostRef): Promise<VmInfo> {
    const place = spec.cloudstack;
    if (!place) throw new Error(`defineVm ${spec.name}: a CloudStack VM needs spec.cloudstack {zoneId, serviceOfferingId, templateId}`);
    const zoneid = place.zoneId || this.zone;
    if (!zoneid) throw new Error(`defineVm ${spec.name}: no zone (spec.cloudstack.zoneId or the provider's zone)`);

    const existing = (await this.resources.vmsNamed(spec.name)).filter((v) => v.state !== "Destroyed" && v.state !== "Expunging");
    for (const v of existing) {
      if (v.state === "Error") await this.resources.destroyVm(v.id); // debris of an earlier failed deploy
    }
    const live = existing.find((v) => v.state !== "Error");
    if (live) {
      const same = live.zoneid === zoneid && live.serviceofferingid === place.serviceOfferingId && live.templateid === place.templateId;
      if (!same) {
        throw new Error(
          `defineVm ${spec.name}: a VM with this name already exists (${live.id}) with zone ${live.zoneid}, offering ${live.serviceofferingid}, template ${live.templateid}; it differs from the spec`,
        );
      }
      if (spec.protection) await this.setProtectionOn(live, spec.protection);
      return { ...this.toVmInfo((await this.resources.vm(live.id)) ?? live), host: live.hostid ?? host };
    }

    const params: Record<string, unknown> = {
      zoneid,
      serviceofferingid: place.serviceOfferingId,
      templateid: place.templateId,
      hostid: host || undefined,
      displayname: spec.name,
      name: HOSTNAME_PATTERN.test(spec.name) ? spec.name : undefined,
      networkids: place.networkIds?.length ? place.networkIds : undefined,
      startvm: false,
    };
    const vm = await this.resources.deploy(params, spec.name);
    if (Number(vm.memory) !== spec.memoryMiB || Number(vm.cpunumber) !== spec.vcpus) {
      this.log.warn?.(
        `cloudstack: ${spec.name}: the service offering gives ${vm.cpunumber} vCPU / ${vm.memory} MiB, the spec asked ${spec.vcpus} / ${spec.memoryMiB}; the offering wins`,
      );
    }
    if (spec.protection) await this.setProtectionOn(vm, spec.protection);
    const now = (await this.resources.vm(vm.id)) ?? vm;
    return { ...this.toVmInfo(now), host: now.hostid ?? host };
  }

  async startVm(ref: VmRef): Promise<void> {
    const vm = await this.mustFind(ref);
    if (vm.state === "Running") return;
    await this.resources.startVm(vm.id, ref.host || undefined);
  }

  async stopVm(ref: VmRef, opts: { force?: boolean } = {}): Promise<void> {
    const vm = await this.mustFind(ref);
    if (vm.state === "Stopped") return;
    await this.resources.stopVm(vm.id, !!opts.force);
  }

  async deleteVm(ref: VmRef): Promise<void> {
    const vm = await this.pick(ref.name, [ref.host]);
    if (!vm) return;
    await this.resources.destroyVm(vm.id);
  }

  async findVm(name: string, hosts: HostRef[]): Promise<VmInfo | undefined> {
    const vm = await this.pick(name, hosts);
    return vm ? this.vmInfoWithHost(vm) : undefined;
  }

  async listProtectedVms(host: HostRef): Promise<VmInfo[]> {
    const vms = await this.resources.taggedVms(MARKER_KEY, MARKER_VALUE);
    const hosts = new Map<string, Promise<CsHost | undefined>>();
    const infos = await Promise.all(vms.filter((v) => v.state !== "Destroyed" && v.state !== "Expunging").map((v) => this.vmInfoWithHost(v, hosts)));
    return infos.filter((i) => i.protection && i.host === host);
  }

  async setProtection(ref: VmRef, protection: ProtectionRecord): Promise<void> {
    await this.setProtectionOn(await this.mustFind(ref), protection);
  }

  private async setProtectionOn(vm: CsVm, protection: ProtectionRecord): Promise<void> {
    const want = protectionToTags(protection);
    const have = (vm.tags ?? []).filter((t) => isProtectionTagKey(t.key));
    const same = have.length === want.length && want.every((w) => have.some((h) => h.key === w.key && h.value === w.value));
    if (same) return;
    await this.resources.deleteTags("UserVm", vm.id, have.map((t) => t.key));
    await this.resources.createTags("UserVm", vm.id, want);
  }

  async cpuUsage(ref: VmRef): Promise<number> {
    const vm = await this.mustFind(ref);
    if (vm.state !== "Running") return 0;
    let used: string | undefined;
    try {
      const r = await this.client.call("listVirtualMachinesMetrics", { id: vm.id, listall: true });
      used = (r.virtualmachine?.[0] as CsVm | undefined)?.cpuused;
    } catch (e) {
      if (!(e instanceof CloudStackError && e.errorCode === 432)) throw e;
      used = vm.cpuused; // older CloudStack without the metrics plugin: listVirtualMachines stats
    }
    const n = parseFloat(String(used ?? "0").replace("%", ""));
    return Number.isFinite(n) ? Math.min(100, Math.max(0, n)) : 0;
  }

  async hostAlive(host: HostRef): Promise<boolean> {
    return CloudStackResources.hostUsable(await this.resources.host(host));
  }

  // ------------------------------------------------------------------ snapshots

  private toRecord(vm: CsVm, s: CsVmSnapshot, backup: CsSnapshot | undefined, repository: string, rootBytes: number): SnapshotRecord {
    const memory = s.type === "DiskAndMemory";
    const memBytes = memory ? (Number(vm.memory) || 0) * 1024 * 1024 : 0;
    const hostMatch = /host=([^\s;]+)/.exec(s.description ?? "");
    const complete = s.state === "Ready" && (repository !== "secondary" || backup?.state === "BackedUp");
    return {
      id: s.id,
      vm: vmLabel(vm),
      backend: "cloudstack",
      host: hostMatch?.[1] ?? vm.hostid ?? "",
      createdAt: isoDate(s.created),
      includesMemory: memory,
      bytes: memBytes + rootBytes,
      storedBytes: backup ? Number(backup.physicalsize) || 0 : memBytes,
      complete,
      location: backup?.id ?? s.id,
    };
  }

  async takeSnapshot(ref: VmRef, opts: SnapshotOptions): Promise<SnapshotRecord> {
    checkRepository(opts.repository);
    const t0 = Date.now();
    const vm = await this.mustFind(ref);
    if (opts.includeMemory && vm.state !== "Running") {
      throw new Error(`takeSnapshot ${ref.name}: a memory snapshot needs the VM Running; it is ${vm.state}`);
    }
    if (!opts.includeMemory && vm.state === "Running") {
      throw new Error(`takeSnapshot ${ref.name}: on KVM CloudStack refuses a disk-only VM snapshot of a running VM; use includeMemory: true or stop the VM`);
    }
    const name = `pvm-${stamp()}-${Math.random().toString(36).slice(2, 6)}`;
    const description = `${SNAPSHOT_DESCRIPTION} host=${vm.hostid ?? ref.host}`;
    const snap = await this.resources.createVmSnapshot(vm.id, name, description, opts.includeMemory, this.client.asyncTimeoutMs, this.client.pollMs);
    const root = await this.resources.rootVolume(vm.id);
    let backup: CsSnapshot | undefined;
    if (opts.repository === "secondary") {
      if (!root) throw new Error(`takeSnapshot ${ref.name}: the VM has no ROOT volume`);
      try {
        backup = await this.resources.backUpVmSnapshot(root.id, snap.id, backupName(snap.id));
      } catch (e) {
        // Leave nothing half-made: without its backup the snapshot does not meet the policy.
        await this.resources.deleteVmSnapshot(snap.id).catch(() => undefined);
        throw e;
      }
    }
    return { ...this.toRecord(vm, snap, backup, opts.repository, Number(root?.size) || 0), durationMs: Date.now() - t0 };
  }

  async listSnapshots(vmName: string, repository: string): Promise<SnapshotRecord[]> {
    checkRepository(repository);
    const vm = await this.pick(vmName, []);
    if (!vm) return [];
    const ours = (await this.resources.vmSnapshots(vm.id)).filter((s) => (s.description ?? "").startsWith(SNAPSHOT_DESCRIPTION));
    const root = await this.resources.rootVolume(vm.id);
    const backups = root ? await this.resources.volumeSnapshots(root.id) : [];
    const byName = new Map(backups.map((b) => [b.name, b]));
    // CloudStack's `created` has 1 s resolution; our names carry a millisecond stamp, so they break ties.
    const sorted = [...ours].sort((a, b) => Date.parse(isoDate(b.created)) - Date.parse(isoDate(a.created)) || (b.displayname < a.displayname ? -1 : b.displayname > a.displayname ? 1 : 0));
    const records = sorted.map((s) => this.toRecord(vm, s, byName.get(backupName(s.id)), repository, Number(root?.size) || 0));
    // A VM that a cold recovery deployed and has not finished (tag `restoring`) has no snapshots of
    // its own yet: the one it is being restored from belongs to the lost original. List it too,
    // so recovery can select it again and finish.
    const restoring = (vm.tags ?? []).find((t) => t.key === RESTORING_KEY)?.value;
    if (restoring && !records.some((r) => r.id === restoring)) {
      const vs = await this.resources.vmSnapshot(restoring).catch(() => undefined);
      const owner = vs ? await this.resources.vm(vs.virtualmachineid) : undefined;
      if (vs && owner) {
        const ownerRoot = await this.resources.rootVolume(owner.id);
        const backup = await this.resources.snapshotNamed(backupName(vs.id));
        records.push({ ...this.toRecord(owner, vs, backup, repository, Number(ownerRoot?.size) || 0), vm: vmName });
        records.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
      }
    }
    return records;
  }

  async deleteSnapshot(snapshot: SnapshotRecord, repository: string): Promise<void> {
    checkRepository(repository);
    const backup = (await this.resources.snapshotNamed(backupName(snapshot.id))) ?? (snapshot.location !== snapshot.id ? await this.resources.snapshot(snapshot.location) : undefined);
    if (backup) await this.resources.deleteSnapshot(backup.id);
    const vs = await this.resources.vmSnapshot(snapshot.id).catch(() => undefined);
    if (vs) await this.resources.deleteVmSnapshot(vs.id);
  }

  async verifySnapshot(snapshot: SnapshotRecord, repository: string): Promise<boolean> {
    checkRepository(repository);
    const vs = await this.resources.vmSnapshot(snapshot.id).catch(() => undefined);
    if (repository === "secondary") {
      const backup = await this.resources.snapshotNamed(backupName(snapshot.id));
      return backup?.state === "BackedUp";
    }
    // CloudStack cannot tell whether the snapshot's primary storage still answers (a pool whose
    // NFS export is gone stays Up), so this checks what it can: the snapshot is Ready. Recovery
    // finds out the rest by trying (recovery.ts) and falls back to the backed-up copy.
    return !!vs && vs.state === "Ready";
  }

  async restoreSnapshot(snapshot: SnapshotRecord, host: HostRef, opts: RestoreOptions | CloudStackRestoreOptions): Promise<CloudStackRestoreResult> {
    checkRepository(opts.repository);
    const result = await restoreOnCloudStack({ res: this.resources, toVmInfo: (vm) => this.toVmInfo(vm), log: this.log }, snapshot, host, opts as CloudStackRestoreOptions);
    this.log.info?.(
      `cloudstack: ${snapshot.vm} ${result.recovery.alreadyRecovered ? "was already recovered" : "recovered"} on ${result.host} by the ${result.recovery.path} path from snapshot ${snapshot.id}: ${result.recovery.reason}`,
    );
    return result;
  }
}

function checkRepository(repository: string): void {
  if (repository !== "primary" && repository !== "secondary") {
    throw new Error(`CloudStack snapshot repository must be "primary" or "secondary", got ${JSON.stringify(repository)}`);
  }
}
