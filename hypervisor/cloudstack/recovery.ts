/**
 * The CloudStack-specific restore step of recovery (ops/recover.ts is the state machine; this is
 * what `CloudStackBackend.restoreSnapshot` does). Two paths, chosen by what happens, not by a
 * state CloudStack never reports:
 *
 * - warm: start the same VM on the recovery host (startVirtualMachine hostid=...) and revert it
 *   to the memory snapshot (revertToVMSnapshot; CloudStack reverts a Running VM only to a
 *   DiskAndMemory snapshot), so it resumes from the snapshot's memory - the paper's method.
 *   Tried first whenever the VM and its memory snapshot exist.
 * - cold: make a template from the backed-up volume snapshot on secondary storage (createTemplate
 *   snapshotid=...) and deploy a new VM from it on the recovery host. The guest boots from the
 *   snapshot's disk; memory is lost. Used when warm is impossible, or when the warm attempt
 *   fails for a storage reason: CloudStack never marks an NFS pool whose export is unreachable
 *   as anything but Up (api/.../storage/StoragePoolStatus.java has no Down), so the only sign is
 *   that the start (533) or the revert (530) fails. The half-done warm attempt is stopped first.
 *
 * Tags on the VM record the recovery (tags.ts): `restoring` (snapshot id), `restore-path` and
 * `restore-to` while it runs; `restored-from`, `restore-path`, `restore-to` and `restore-reason`
 * once it is done. A re-run reads them: it finishes an interrupted recovery by the same path,
 * and reports a finished one by the path it really took.
 *
 * Safety: recover only from a host CloudStack reports Down (its own HA waits for that too); a VM
 * that CloudStack still lists on an Up, Disconnected or Alert host is refused unless forced.
 */
import type { HostRef, RestoreOptions, SnapshotRecord, VmInfo, VmRecoveryState } from "../backend";
import type { CloudStackLogger } from "./client";
import { CloudStackError } from "./errors";
import { RefusedError } from "../../core/errors";
import { CloudStackResources, CsHost, CsSnapshot, CsVm, CsVmSnapshot, HOSTNAME_PATTERN } from "./resources";
import {
  RESTORED_FROM_KEY, RESTORE_PATH_KEY, RESTORE_REASON_KEY, RESTORE_TO_KEY, RESTORING_KEY, MAX_TAG_VALUE, Tag,
  isProtectionTagKey, protectionToTags, tagsToProtection,
} from "./tags";

export type RecoveryPath = "warm" | "cold";

export interface RecoveryFacts {
  /** Restoring the snapshot's own VM (not a drill under another name). */
  sameVm: boolean;
  /** The VM that owns the snapshot still exists in CloudStack. */
  vmExists: boolean;
  vmSnapshotReady: boolean;
  vmSnapshotHasMemory: boolean;
  /** A backed-up copy of the snapshot is on secondary storage (state BackedUp). */
  backupReady: boolean;
  /** Ask for one path; default auto. */
  prefer?: RecoveryPath | "auto";
}

export type RecoveryPlan =
  | { first: RecoveryPath; fallback?: "cold"; reason: string }
  | { first: undefined; reason: string };

const COLD_BLOCKER = 'no backed-up copy of this snapshot on secondary storage (repository "secondary" makes one)';

/** Pure: which path to try first, whether cold is there to fall back on, and why. */
export function planRecovery(f: RecoveryFacts): RecoveryPlan {
  const warmBlockers: string[] = [];
  if (!f.sameVm) warmBlockers.push("restoring under another name (a drill) needs a new VM");
  if (!f.vmExists) warmBlockers.push("the original VM no longer exists");
  if (!f.vmSnapshotReady) warmBlockers.push("the VM snapshot is not Ready");
  if (!f.vmSnapshotHasMemory) warmBlockers.push("the VM snapshot has no memory");
  const warmOk = warmBlockers.length === 0;
  const coldOk = f.backupReady;
  if (f.prefer === "warm") return warmOk ? { first: "warm", reason: "warm path requested" } : { first: undefined, reason: `warm path impossible: ${warmBlockers.join("; ")}` };
  if (f.prefer === "cold") return coldOk ? { first: "cold", reason: "cold path requested" } : { first: undefined, reason: `cold path impossible: ${COLD_BLOCKER}` };
  if (warmOk) {
    return coldOk
      ? { first: "warm", fallback: "cold", reason: "the VM and its memory snapshot exist: resume from memory (the backed-up copy on secondary storage is the fallback)" }
      : { first: "warm", reason: "the VM and its memory snapshot exist: resume from memory" };
  }
  if (coldOk) return { first: "cold", reason: `warm path impossible (${warmBlockers.join("; ")}); booting from the backed-up disk snapshot` };
  return { first: undefined, reason: `neither path is possible: warm: ${warmBlockers.join("; ")}; cold: ${COLD_BLOCKER}` };
}

/**
 * Pure: did the warm attempt fail because the VM's primary storage is unusable? A start whose
 * volume's pool does not answer ends in 533 (no deployment) or 534 (resource unavailable); a
 * revert or snapshot on it fails with 530 and a text naming the storage.
 */
export function isStorageFailure(e: unknown): boolean {
  if (!(e instanceof CloudStackError) || typeof e.errorCode !== "number") return false;
  if (e.errorCode === 533 || e.errorCode === 534) return true;
  return e.errorCode === 530 && /storage|pool|volume|disk|nfs|mount/i.test(e.errorText);
}

export type SourceHostVerdict = { proceed: true; note: string } | { proceed: false; reason: string };

/**
 * Pure: may we recover a VM that CloudStack still lists (Running or in a transition) on `host`?
 * Only when CloudStack reports that host Down (its HA investigators confirmed it), or when the
 * caller forces it. Disconnected or Alert mean "not heard from", not "dead": a forced stop then
 * only changes CloudStack's database, and a guest that still runs would write the same NFS disk
 * as the new copy.
 */
export function judgeSourceHost(vmName: string, vmState: string, host: CsHost | undefined, force: boolean): SourceHostVerdict {
  if (!host) return { proceed: true, note: "its host no longer exists in CloudStack" };
  if (host.state === "Down") return { proceed: true, note: `its host ${host.name} is Down (confirmed by CloudStack)` };
  if (force) return { proceed: true, note: `forced although its host ${host.name} is ${host.state}` };
  if (host.state === "Up") {
    return {
      proceed: false,
      reason: `${vmName} is still ${vmState} on host ${host.name} (${host.id}), which is Up; refusing to recover it elsewhere (two copies would run). Stop it first or pass force (--force).`,
    };
  }
  return {
    proceed: false,
    reason:
      `${vmName} is ${vmState} on host ${host.name} (${host.id}), which CloudStack reports ${host.state}, not Down: the host has not been confirmed dead ` +
      `(CloudStack's own HA waits for Down too). If its guest still runs, it and a recovered copy would write the same disk. ` +
      `Wait until CloudStack reports the host Down, or fence it yourself and pass force (--force).`,
  };
}

export interface CloudStackRestoreOptions extends RestoreOptions {
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

const tagOf = (vm: CsVm | undefined, key: string) => (vm?.tags ?? []).find((t) => t.key === key)?.value;

/**
 * Pure: what the VM's tags (and where it runs) say about its recovery, for VmInfo.recovery.
 * A VM running away from its primary host with no recovery tags was started there by CloudStack
 * (HA) or an operator: it booted, so that counts as cold.
 */
export function recoveryStateOf(vm: CsVm, primaryHost: string | undefined): VmRecoveryState | undefined {
  const restoring = tagOf(vm, RESTORING_KEY);
  const path = tagOf(vm, RESTORE_PATH_KEY) as RecoveryPath | undefined;
  const to = tagOf(vm, RESTORE_TO_KEY);
  if (restoring) return { inProgress: true, snapshotId: restoring, path, to, reason: `an unfinished ${path ? `${path} ` : ""}recovery from snapshot ${restoring}` };
  const from = tagOf(vm, RESTORED_FROM_KEY);
  const running = vm.state === "Running" && !!vm.hostid;
  if (from) {
    if (running && to && vm.hostid !== to) {
      return { inProgress: false, snapshotId: from, path: "cold", to: vm.hostid, reason: `recovered (${path}) onto ${to}, since restarted on ${vm.hostid}: it booted, its memory was not kept` };
    }
    return { inProgress: false, snapshotId: from, path, to, reason: tagOf(vm, RESTORE_REASON_KEY) };
  }
  if (running && primaryHost && vm.hostid !== primaryHost) {
    return {
      inProgress: false,
      path: "cold",
      to: vm.hostid,
      reason: `runs on ${vm.hostid}, not its primary host, without a recovery by protected-vm: CloudStack (HA) or an operator started it there - it booted, memory was not restored`,
    };
  }
  return undefined;
}

export interface RecoveryDeps {
  res: CloudStackResources;
  toVmInfo(vm: CsVm): VmInfo;
  log: CloudStackLogger;
}

export async function restoreOnCloudStack(deps: RecoveryDeps, snapshot: SnapshotRecord, host: HostRef, opts: CloudStackRestoreOptions): Promise<VmInfo & { recovery: VmRecoveryState }> {
  const { res, log } = deps;
  const name = opts.name ?? snapshot.vm;
  const sameVm = name === snapshot.vm;
  const outcome = (vm: CsVm, path: RecoveryPath, reason: string, alreadyRecovered: boolean) => ({
    ...deps.toVmInfo(vm),
    recovery: { inProgress: false, snapshotId: snapshot.id, path, to: host, reason, alreadyRecovered },
  });

  // Already done? A VM under this name restored from this snapshot, running on a usable host.
  const named = await res.vmsNamed(name);
  for (const vm of named) {
    if (vm.state === "Running" && tagOf(vm, RESTORED_FROM_KEY) === snapshot.id && !tagOf(vm, RESTORING_KEY) && vm.hostid && CloudStackResources.hostUsable(await res.host(vm.hostid))) {
      const state = recoveryStateOf(vm, undefined);
      return { ...outcome(vm, state?.path ?? "cold", state?.reason ?? "already recovered from this snapshot", true), host: vm.hostid };
    }
  }

  const target = await res.host(host);
  if (!CloudStackResources.hostUsable(target)) {
    throw new RecoveryRefusedError(`cannot recover ${snapshot.vm} onto host ${host}: it is ${target ? `${target.state}/${target.resourcestate}` : "not a known host"}; pick a host that is Up and Enabled`);
  }

  const vmSnap: CsVmSnapshot | undefined = await res.vmSnapshot(snapshot.id).catch(() => undefined);
  const original: CsVm | undefined = vmSnap ? await res.vm(vmSnap.virtualmachineid) : named.find((v) => v.state !== "Error");
  const backup: CsSnapshot | undefined =
    (await res.snapshotNamed(backupName(snapshot.id))) ?? (snapshot.location !== snapshot.id ? await res.snapshot(snapshot.location) : undefined);

  // An interrupted recovery from this snapshot: finish it by the path it was on.
  const unfinished = [...(sameVm && original ? [original] : []), ...named].find((v) => tagOf(v, RESTORING_KEY) === snapshot.id && v.state !== "Error");
  if (unfinished && tagOf(unfinished, RESTORE_PATH_KEY) === "cold") {
    if (!backup) throw new Error(`cannot finish the cold recovery of ${name}: the backed-up snapshot ${backupName(snapshot.id)} is gone`);
    const reason = tagOf(unfinished, RESTORE_REASON_KEY) ?? "finishing an interrupted cold recovery";
    log.info?.(`cloudstack: finishing the interrupted cold recovery of ${name} (${unfinished.id}) from ${snapshot.id}`);
    return outcome(await cold(res, snapshot, name, sameVm ? original : undefined, backup, host, !!opts.force, reason), "cold", reason, false);
  }

  // Never run two copies: the original must not still be listed on a host that is not Down.
  if (original && sameVm && original.state !== "Stopped" && original.hostid && tagOf(original, RESTORING_KEY) !== snapshot.id) {
    const verdict = judgeSourceHost(snapshot.vm, original.state, await res.host(original.hostid), !!opts.force);
    if (!verdict.proceed) throw new RecoveryRefusedError(verdict.reason);
    log.info?.(`cloudstack: ${snapshot.vm}: ${verdict.note}`);
  }

  const plan = planRecovery({
    sameVm,
    vmExists: !!original,
    vmSnapshotReady: vmSnap?.state === "Ready",
    vmSnapshotHasMemory: vmSnap?.type === "DiskAndMemory",
    backupReady: backup?.state === "BackedUp",
    prefer: opts.path,
  });
  if (!plan.first) throw new RecoveryRefusedError(`cannot recover ${snapshot.vm} from snapshot ${snapshot.id}: ${plan.reason}`);
  log.info?.(`cloudstack: recovering ${snapshot.vm} from ${snapshot.id} onto ${host}: ${plan.first} first (${plan.reason})`);

  if (plan.first === "cold") return outcome(await cold(res, snapshot, name, sameVm ? original : undefined, backup!, host, !!opts.force, plan.reason), "cold", plan.reason, false);

  try {
    return outcome(await warm(res, original!, vmSnap!, host, snapshot, plan.reason), "warm", plan.reason, false);
  } catch (e) {
    if (!isStorageFailure(e)) throw e; // the restoring tag stays: a re-run finishes the warm recovery
    const why = `${(e as CloudStackError).command} failed (${(e as CloudStackError).errorCode}: ${(e as CloudStackError).errorText})`;
    await abandonWarm(res, original!.id);
    if (plan.fallback !== "cold" || !backup) {
      await res.deleteTags("UserVm", original!.id, [RESTORING_KEY, RESTORE_PATH_KEY, RESTORE_TO_KEY, RESTORE_REASON_KEY]).catch(() => undefined);
      throw new Error(`warm recovery of ${snapshot.vm} failed for a storage reason (${why}) and there is no cold path: ${COLD_BLOCKER}`);
    }
    const reason = `warm recovery failed for a storage reason (${why}); booted from the backed-up disk snapshot on secondary storage instead`;
    log.warn?.(`cloudstack: ${snapshot.vm}: ${reason}`);
    return outcome(await cold(res, snapshot, name, original, backup, host, !!opts.force, reason), "cold", reason, false);
  }
}

/** Tags that say "a recovery from this snapshot to this host by this path is under way". */
function restoringTags(snapshotId: string, path: RecoveryPath, host: HostRef, reason: string): Tag[] {
  return [
    { key: RESTORING_KEY, value: snapshotId },
    { key: RESTORE_PATH_KEY, value: path },
    { key: RESTORE_TO_KEY, value: host },
    { key: RESTORE_REASON_KEY, value: reason.slice(0, MAX_TAG_VALUE) },
  ];
}

async function warm(res: CloudStackResources, original: CsVm, vmSnap: CsVmSnapshot, host: HostRef, snapshot: SnapshotRecord, reason: string): Promise<CsVm> {
  await res.putTags("UserVm", original.id, original.tags, restoringTags(snapshot.id, "warm", host, reason));
  let vm = (await res.vm(original.id)) ?? original;
  if (vm.state !== "Stopped" && !(vm.state === "Running" && vm.hostid === host)) {
    // Listed Running (or stuck) on the dead host: mark it stopped (the host was judged Down, or forced).
    vm = await res.stopVm(vm.id, true);
  }
  if (vm.state !== "Running") vm = await res.startVm(original.id, host);
  await res.revertToVmSnapshot(vmSnap.id);
  const now = await res.vm(original.id);
  if (!now || now.state !== "Running" || now.hostid !== host) {
    throw new CloudStackError({ command: "revertToVMSnapshot", errorCode: 530, errorText: `after recovery ${original.id} is ${now?.state ?? "missing"} on ${now?.hostid ?? "no host"}, expected Running on ${host}` });
  }
  await finishTags(res, now, snapshot.id, "warm", host, reason);
  return (await res.vm(original.id)) ?? now;
}

/** The warm attempt failed: a copy that booted from the failing storage must not keep running. */
async function abandonWarm(res: CloudStackResources, vmId: string): Promise<void> {
  const vm = await res.vm(vmId).catch(() => undefined);
  if (vm && vm.state !== "Stopped" && vm.state !== "Error") await res.stopVm(vm.id, true).catch(() => undefined);
}

async function finishTags(res: CloudStackResources, vm: CsVm, snapshotId: string, path: RecoveryPath, host: HostRef, reason: string): Promise<void> {
  if (tagOf(vm, RESTORING_KEY) !== undefined) await res.deleteTags("UserVm", vm.id, [RESTORING_KEY]);
  await res.putTags("UserVm", vm.id, vm.tags, [
    { key: RESTORED_FROM_KEY, value: snapshotId },
    { key: RESTORE_PATH_KEY, value: path },
    { key: RESTORE_TO_KEY, value: host },
    { key: RESTORE_REASON_KEY, value: reason.slice(0, MAX_TAG_VALUE) },
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
  reason: string,
): Promise<CsVm> {
  const drill = name !== snapshot.vm;
  // An earlier, interrupted run may have deployed the new VM already (tagged before it starts).
  let vm = (await res.vmsNamed(name)).find((v) => tagOf(v, RESTORING_KEY) === snapshot.id && tagOf(v, RESTORE_PATH_KEY) === "cold" && v.state !== "Error");
  if (!vm) {
    const source = original ?? (await res.vmsNamed(snapshot.vm)).find((v) => v.state !== "Error");
    if (!source) {
      throw new RecoveryRefusedError(`cannot deploy ${name}: the original VM ${snapshot.vm} is gone, so its service offering and networks are unknown`);
    }
    const template = await res.templateFromSnapshot(backup.id, templateName(backup.id), backup.ostypeid ?? source.guestosid ?? "");

    // Free the name: the original (its disks are on storage that failed) is stopped and renamed, not destroyed.
    for (const v of await res.vmsNamed(name)) {
      if (v.state === "Error") {
        await res.destroyVm(v.id);
        continue;
      }
      if (original && v.id === original.id) {
        let o = v;
        if (o.state !== "Stopped") o = await res.stopVm(o.id, true);
        const suffix = `-lost-${o.id.slice(0, 8)}`;
        const hostName = `${HOSTNAME_PATTERN.test(o.name) ? o.name : "vm"}`.slice(0, 63 - suffix.length) + suffix;
        await res.client.call("updateVirtualMachine", { id: o.id, name: hostName, displayname: `${name}${suffix}` });
        continue;
      }
      if (v.state === "Running" && !force) {
        throw new RecoveryRefusedError(`a different VM named ${name} (${v.id}) already exists and is Running; refusing to deploy a second one`);
      }
    }
    if (original) {
      // The lost original must not be picked up by the scheduler (or a re-run) any more.
      const lost = await res.vm(original.id);
      const keys = (lost?.tags ?? []).filter((t) => isProtectionTagKey(t.key) || [RESTORING_KEY, RESTORE_PATH_KEY, RESTORE_TO_KEY, RESTORE_REASON_KEY].includes(t.key)).map((t) => t.key);
      await res.deleteTags("UserVm", original.id, keys);
    }

    // Deployed stopped and tagged first, then started: an interruption leaves a VM a re-run recognises.
    const params: Record<string, unknown> = {
      zoneid: source.zoneid,
      serviceofferingid: source.serviceofferingid,
      templateid: template.id,
      displayname: name,
      name: HOSTNAME_PATTERN.test(name) ? name : undefined,
      networkids: (source.nic ?? []).map((n) => n.networkid).filter(Boolean),
      startvm: false,
    };
    if ((params.networkids as string[]).length === 0) delete params.networkids;
    vm = await res.deploy(params, name);
    const tags = restoringTags(snapshot.id, "cold", host, reason);
    // A drill copy is not the protected VM: it gets no protection record (the scheduler must not snapshot it).
    const protection = drill ? undefined : tagsToProtection(source.tags);
    await res.createTags("UserVm", vm.id, protection ? [...tags, ...protectionToTags(protection)] : tags);
  }
  if (vm.state !== "Running") vm = await res.startVm(vm.id, host);
  const now = await res.vm(vm.id);
  if (!now || now.state !== "Running" || now.hostid !== host) {
    throw new CloudStackError({ command: "startVirtualMachine", errorCode: 530, errorText: `recovered VM ${vm.id} is ${now?.state ?? "missing"} on ${now?.hostid ?? "no host"}, expected Running on ${host}` });
  }
  await finishTags(res, now, snapshot.id, "cold", host, reason);
  return (await res.vm(now.id)) ?? now;
}
