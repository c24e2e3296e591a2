/**
 * Recovery on CloudStack, two paths, chosen by what survived the failure:
 *
 * - warm: the VM's primary storage (shared NFS) is still reachable and the VM snapshot with
 *   memory is Ready. Start the same VM on a healthy host (startVirtualMachine hostid=...) and
 *   revert it to the memory snapshot (revertToVMSnapshot; CloudStack reverts a Running VM only
 *   to a DiskAndMemory snapshot), so it resumes from the snapshot's memory state - the paper's
 *   method.
 * - cold: only secondary storage survived. Make a template from the backed-up volume snapshot
 *   (createTemplate snapshotid=...) and deploy a new VM from it on the healthy host. The guest
 *   boots from the snapshot's disk; memory is lost.
 *
 * Safety: refuse while the original VM is Running on a host that is Up (two copies would run)
 * unless forced; a VM on a dead host is force-stopped first. Idempotent: a re-run finds the
 * VM already recovered from this snapshot (tag protected-vm.restored-from) and returns it, or
 * continues a half-done run (tag protected-vm.restoring).
 */
import type { SnapshotRecord, VmInfo, RestoreOptions, HostRef } from "../backend";
import type { CloudStackLogger } from "./client";
import { CloudStackError } from "./errors";
import { RefusedError } from "../../core/errors";
import { CloudStackResources, CsSnapshot, CsVm, CsVmSnapshot, HOSTNAME_PATTERN } from "./resources";
import { RESTORED_FROM_KEY, RESTORE_PATH_KEY, RESTORING_KEY, isProtectionTagKey, tagsToProtection, protectionToTags } from "./tags";

export type RecoveryPath = "warm" | "cold";

export interface RecoveryFacts {
  /** Restoring the snapshot's own VM (not a drill under another name). */
  sameVm: boolean;
  /** The VM that owns the snapshot still exists in CloudStack. */
  vmExists: boolean;
  vmSnapshotReady: boolean;
  vmSnapshotHasMemory: boolean;
  /** The primary storage pool holding the VM's volumes is Up. */
  primaryStorageUp: boolean;
  /** A backed-up copy of the snapshot is on secondary storage (state BackedUp). */
  backupReady: boolean;
  /** Ask for one path; default auto. */
  prefer?: RecoveryPath | "auto";
}

export type RecoveryChoice = { path: RecoveryPath; reason: string } | { path: undefined; reason: string };

/** Pure: which path the facts allow, and why. */
export function chooseRecoveryPath(f: RecoveryFacts): RecoveryChoice {
  const warmBlockers: string[] = [];
  if (!f.sameVm) warmBlockers.push("restoring under another name (a drill) needs a new VM");
  if (!f.vmExists) warmBlockers.push("the original VM no longer exists");
  if (!f.vmSnapshotReady) warmBlockers.push("the VM snapshot is not Ready");
  if (!f.vmSnapshotHasMemory) warmBlockers.push("the VM snapshot has no memory");
  if (!f.primaryStorageUp) warmBlockers.push("the VM's primary storage is not reachable");
  const warmOk = warmBlockers.length === 0;
  const coldOk = f.backupReady;
  const coldBlocker = "no backed-up copy of this snapshot on secondary storage (repository \"secondary\" makes one)";
  if (f.prefer === "warm") return warmOk ? { path: "warm", reason: "warm path requested" } : { path: undefined, reason: `warm path impossible: ${warmBlockers.join("; ")}` };
  if (f.prefer === "cold") return coldOk ? { path: "cold", reason: "cold path requested" } : { path: undefined, reason: `cold path impossible: ${coldBlocker}` };
  if (warmOk) return { path: "warm", reason: "primary storage is reachable and the memory snapshot is Ready: resume from memory" };
  if (coldOk) return { path: "cold", reason: `warm path impossible (${warmBlockers.join("; ")}); booting from the backed-up disk snapshot` };
  return { path: undefined, reason: `neither path is possible: warm: ${warmBlockers.join("; ")}; cold: ${coldBlocker}` };
}

export interface RecoveryReport {
  path: RecoveryPath;
  reason: string;
  snapshotId: string;
  snapshotCreatedAt: string;
  /** State lost, at most: from the snapshot to the start of this recovery (s). */
  rpoSeconds: number;
  host: HostRef;
  vmId: string;
  /** True when a previous run had already finished this recovery. */
  alreadyRecovered: boolean;
  durationMs: number;
}

export interface CloudStackRestoreOptions extends RestoreOptions {
  /** Recover even though the original VM is Running on a host that is Up (it is force-stopped first). */
  force?: boolean;
  /** Insist on one path. Default auto. */
  path?: RecoveryPath | "auto";
}

/** A CloudStack recovery refused on purpose: exit 3 like every other refusal (core/errors). */
export class RecoveryRefusedError extends RefusedError {
  constructor(message: string) {
    super(message);
    this.name = "RecoveryRefusedError";
  }
}

/** Name of the backed-up volume snapshot made from a VM snapshot. */
export const backupName = (vmSnapshotId: string) => `pvm-${vmSnapshotId}`;
const templateName = (backupId: string) => `pvm-tpl-${backupId}`;

export interface RecoveryDeps {
  res: CloudStackResources;
  toVmInfo(vm: CsVm): VmInfo;
  log: CloudStackLogger;
}

type Outcome = VmInfo & { recovery: RecoveryReport };

export async function recover(deps: RecoveryDeps, snapshot: SnapshotRecord, host: HostRef, opts: CloudStackRestoreOptions): Promise<Outcome> {
  const { res, log } = deps;
  const started = Date.now();
  const name = opts.name ?? snapshot.vm;
  const sameVm = name === snapshot.vm;
  const report = (path: RecoveryPath, reason: string, vm: CsVm, already: boolean): Outcome => ({
    ...deps.toVmInfo(vm),
    recovery: {
      path,
      reason,
      snapshotId: snapshot.id,
      snapshotCreatedAt: snapshot.createdAt,
      rpoSeconds: Math.max(0, Math.round((started - Date.parse(snapshot.createdAt)) / 1000)),
      host,
      vmId: vm.id,
      alreadyRecovered: already,
      durationMs: Date.now() - started,
    },
  });

  // Already done? (idempotent re-run)
  for (const vm of await res.vmsNamed(name)) {
    const tags = new Map((vm.tags ?? []).map((t) => [t.key, t.value]));
    if (vm.state === "Running" && tags.get(RESTORED_FROM_KEY) === snapshot.id && vm.hostid && CloudStackResources.hostUsable(await res.host(vm.hostid))) {
      const path = (tags.get(RESTORE_PATH_KEY) as RecoveryPath) ?? "warm";
      return report(path, "already recovered from this snapshot", vm, true);
    }
  }

  const target = await res.host(host);
  if (!CloudStackResources.hostUsable(target)) {
    throw new RecoveryRefusedError(`cannot recover ${snapshot.vm} onto host ${host}: it is ${target ? `${target.state}/${target.resourcestate}` : "not a known host"}; pick a host that is Up and Enabled`);
  }

  const vmSnap: CsVmSnapshot | undefined = await res.vmSnapshot(snapshot.id).catch(() => undefined);
  const original: CsVm | undefined = vmSnap ? await res.vm(vmSnap.virtualmachineid) : (await res.vmsNamed(snapshot.vm))[0];
  const root = original ? await res.rootVolume(original.id) : undefined;
  const pool = root?.storageid ? await res.pool(root.storageid).catch(() => undefined) : undefined;
  const backup: CsSnapshot | undefined =
    (await res.snapshotNamed(backupName(snapshot.id))) ?? (snapshot.location !== snapshot.id ? await res.snapshot(snapshot.location) : undefined);

  const choice = chooseRecoveryPath({
    sameVm,
    vmExists: !!original,
    vmSnapshotReady: vmSnap?.state === "Ready",
    vmSnapshotHasMemory: vmSnap?.type === "DiskAndMemory",
    primaryStorageUp: pool?.state === "Up",
    backupReady: backup?.state === "BackedUp",
    prefer: opts.path,
  });
  if (!choice.path) throw new RecoveryRefusedError(`cannot recover ${snapshot.vm} from snapshot ${snapshot.id}: ${choice.reason}`);
  log.info?.(`cloudstack: recovering ${snapshot.vm} from ${snapshot.id} onto ${host}: ${choice.path} (${choice.reason})`);

  // Never run two copies: the original must not be Running on a live host (unless forced).
  const ownTag = (vm: CsVm, key: string) => (vm.tags ?? []).find((t) => t.key === key)?.value;
  if (original && sameVm && original.state === "Running" && ownTag(original, RESTORING_KEY) !== snapshot.id) {
    const h = original.hostid ? await res.host(original.hostid) : undefined;
    if (h && h.state === "Up" && !opts.force) {
      throw new RecoveryRefusedError(
        `${snapshot.vm} (${original.id}) is still Running on host ${h.name} (${h.id}), which is Up; refusing to recover it elsewhere (two copies would run). Stop it first or pass force: true.`,
      );
    }
  }

  if (choice.path === "warm") {
    const vm = await warm(res, original!, vmSnap!, host, snapshot);
    return report("warm", choice.reason, vm, false);
  }
  const vm = await cold(res, snapshot, name, sameVm ? original : undefined, backup!, host, !!opts.force);
  return report("cold", choice.reason, vm, false);
}

async function ensureStoppedUnlessOn(res: CloudStackResources, vm: CsVm, host: HostRef): Promise<CsVm> {
  if (vm.state === "Stopped") return vm;
  if (vm.state === "Running" && vm.hostid === host) return vm;
  // Running on a dead (or other) host, or stuck in a transition: mark it stopped.
  return res.stopVm(vm.id, true);
}

async function warm(res: CloudStackResources, original: CsVm, vmSnap: CsVmSnapshot, host: HostRef, snapshot: SnapshotRecord): Promise<CsVm> {
  await res.putTags("UserVm", original.id, original.tags, [{ key: RESTORING_KEY, value: snapshot.id }]);
  let vm = await ensureStoppedUnlessOn(res, original, host);
  if (vm.state !== "Running") vm = await res.startVm(original.id, host);
  vm = await res.revertToVmSnapshot(vmSnap.id);
  const now = await res.vm(original.id);
  if (!now || now.state !== "Running" || now.hostid !== host) {
    throw new CloudStackError({ command: "revertToVMSnapshot", errorCode: 530, errorText: `after recovery ${original.id} is ${now?.state ?? "missing"} on ${now?.hostid ?? "no host"}, expected Running on ${host}` });
  }
  await finishTags(res, now, snapshot.id, "warm");
  return (await res.vm(original.id)) ?? vm;
}

async function finishTags(res: CloudStackResources, vm: CsVm, snapshotId: string, path: RecoveryPath): Promise<void> {
  const restoring = (vm.tags ?? []).filter((t) => t.key === RESTORING_KEY).map((t) => t.key);
  await res.deleteTags("UserVm", vm.id, restoring);
  await res.putTags("UserVm", vm.id, vm.tags, [
    { key: RESTORED_FROM_KEY, value: snapshotId },
    { key: RESTORE_PATH_KEY, value: path },
  ]);
}

async function cold(
  res: CloudStackResources,
  snapshot: SnapshotRecord,
  name: string,
  original: CsVm | undefined,
  backup: CsSnapshot,
  host: HostRef,
  force: boolean,
): Promise<CsVm> {
  const template = await res.templateFromSnapshot(backup.id, templateName(backup.id), backup.ostypeid ?? original?.guestosid ?? "");
  const source = original ?? (await res.vmsNamed(snapshot.vm))[0];
  if (!source) {
    throw new RecoveryRefusedError(`cannot deploy ${name}: the original VM ${snapshot.vm} is gone, so its service offering and networks are unknown`);
  }

  // Free the name: the original (unusable, its disks are on lost storage) is stopped and renamed, not destroyed.
  for (const vm of await res.vmsNamed(name)) {
    if (vm.state === "Error") {
      await res.destroyVm(vm.id);
      continue;
    }
    if (original && vm.id === original.id) {
      let v = vm;
      if (v.state !== "Stopped") v = await res.stopVm(v.id, true);
      const lost = `${HOSTNAME_PATTERN.test(v.name) ? v.name : "vm"}-lost-${v.id.slice(0, 8)}`.slice(0, 63);
      await res.client.call("updateVirtualMachine", { id: v.id, name: lost, displayname: lost });
      continue;
    }
    if (vm.state === "Running" && !force) {
      throw new RecoveryRefusedError(`a different VM named ${name} (${vm.id}) already exists and is Running; refusing to deploy a second one`);
    }
  }

  const params: Record<string, unknown> = {
    zoneid: source.zoneid,
    serviceofferingid: source.serviceofferingid,
    templateid: template.id,
    hostid: host,
    displayname: name,
    name: HOSTNAME_PATTERN.test(name) ? name : undefined,
    networkids: (source.nic ?? []).map((n) => n.networkid).filter(Boolean),
    startvm: true,
  };
  if ((params.networkids as string[]).length === 0) delete params.networkids;
  const vm = await res.deploy(params, name);
  const now = await res.vm(vm.id);
  if (!now || now.state !== "Running" || now.hostid !== host) {
    throw new CloudStackError({ command: "deployVirtualMachine", errorCode: 530, errorText: `recovered VM ${vm.id} is ${now?.state ?? "missing"} on ${now?.hostid ?? "no host"}, expected Running on ${host}` });
  }
  const protection = tagsToProtection(source.tags);
  if (protection) await res.createTags("UserVm", now.id, protectionToTags(protection));
  await finishTags(res, (await res.vm(now.id)) ?? now, snapshot.id, "cold");
  if (original) {
    // The lost original must not be picked up by the scheduler any more.
    const lost = await res.vm(original.id);
    const keys = (lost?.tags ?? []).filter((t) => isProtectionTagKey(t.key)).map((t) => t.key);
    await res.deleteTags("UserVm", original.id, keys);
  }
  return (await res.vm(now.id)) ?? now;
}
