/**
 * recover(): bring a protected VM back on another host from its newest complete snapshot.
 * An explicit state machine (as HA managers do): each step is logged as an event, and every
 * step first looks at the real state, so running it again after a crash or a success is safe.
 *
 *   locate -> (fence) -> select-snapshot -> restore -> verify -> record -> done
 *                              ^                  |  (failed: clean up the target, record the
 *                              +------------------+   attempt, next older verified snapshot)
 *
 * A snapshot that verifies can still be impossible to restore (its disk's backing file was left
 * on the failed host by a take killed half-way); recovery that stops at the newest snapshot then
 * fails on every retry. So each candidate is checked (Backend.checkRestorable) before it is
 * chosen, and a restore that fails anyway is cleaned up on the target before the next older one
 * is tried. Every attempt is in the report.
 */
import type { Backend } from "../hypervisor/backend";
import type { HostRef, SnapshotRecord, VmInfo } from "../core/model";
import type { ProtectionRecord } from "../core/policy";
import { RefusedError } from "../core/errors";

export type RecoveryStep = "locate" | "fence" | "select-snapshot" | "restore" | "cleanup" | "verify" | "record" | "done";

/** One snapshot recovery considered, and what became of it. */
export interface RecoveryAttempt {
  snapshotId: string;
  snapshotCreatedAt: string;
  /**
   * "unverified": its checksums fail; "unrestorable": not self-contained (nothing was written);
   * "failed": restored but failed (cleaned up on the target); "recovered": the one that runs now.
   */
  outcome: "unverified" | "unrestorable" | "failed" | "recovered";
  /** The target host of a restore ("failed" / "recovered"). */
  host?: HostRef;
  detail: string;
  /** "failed": whether the half-restored VM and its files were removed from the target. */
  cleanedUp?: boolean;
}

export interface RecoveryEvent {
  step: RecoveryStep;
  at: string;
  detail: string;
}

export interface RecoverOptions {
  /** Where the snapshots are kept (the policy's repository). */
  repository: string;
  /** Primary host first, then the recovery hosts in order of preference. */
  hosts: HostRef[];
  /** Recover onto this host instead of the first healthy recovery host. */
  to?: HostRef;
  /** Use this snapshot instead of the newest complete one. */
  snapshotId?: string;
  /** Recover even though the VM still runs on a live host (it is stopped there first). */
  force?: boolean;
  /** Restore under another name (drills). The original is then left alone, wherever it runs. */
  asName?: string;
  /** How long the guest must stay running to count as recovered. Default 3 s. */
  verifyMs?: number;
  onEvent?: (e: RecoveryEvent) => void;
}

export interface RecoveryReport {
  vm: string;
  /** Name the VM runs under after recovery (differs for drills). */
  restoredAs: string;
  from: HostRef | null;
  to: HostRef;
  snapshotId: string;
  snapshotCreatedAt: string;
  /** State lost: time between the snapshot and the start of recovery, seconds. */
  rpoSeconds: number;
  /** Time recover() took from start to a verified running guest, seconds. */
  restoreSeconds: number;
  /** libvirt: always "warm" with memory, "cold" without; CloudStack reports its own path. */
  path: "warm" | "cold";
  /** True when the VM was already running on a recovery host (nothing was done). */
  alreadyRecovered: boolean;
  /** Every snapshot considered, newest first, the last one being the one that runs (when recovered). */
  attempts: RecoveryAttempt[];
  events: RecoveryEvent[];
}

/** Every candidate snapshot was tried and none could be brought up; `attempts` says why for each. */
export class RecoveryFailed extends Error {
  readonly exitCode = 1;
  constructor(message: string, readonly attempts: RecoveryAttempt[], readonly events: RecoveryEvent[]) {
    super(message);
    this.name = "RecoveryFailed";
  }
  /** What the CLI's --json prints with the error. */
  get report(): { attempts: RecoveryAttempt[]; events: RecoveryEvent[] } {
    return { attempts: this.attempts, events: this.events };
  }
}

/** Recovery refused on purpose (exit 3): the shared refusal of every backend, under recovery's name. */
export class RecoveryRefused extends RefusedError {
  constructor(message: string) {
    super(message);
    this.name = "RecoveryRefused";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The newest complete snapshot that verifies (or the requested one); corrupt ones are skipped. */
export async function selectSnapshot(
  backend: Backend,
  vm: string,
  repository: string,
  snapshotId?: string,
  note: (s: string) => void = () => undefined,
): Promise<SnapshotRecord> {
  for await (const c of restoreCandidates(backend, vm, repository, snapshotId)) {
    if (c.usable) return c.snapshot;
    note(c.attempt.detail);
  }
  throw new RecoveryRefused(`no complete, verified snapshot of ${vm} in ${repository}`);
}

type Candidate = { usable: true; snapshot: SnapshotRecord } | { usable: false; snapshot: SnapshotRecord; attempt: RecoveryAttempt };

/**
 * The complete snapshots of vm, newest first (or only the requested one), each judged: it must
 * verify and be self-contained. Checked lazily, so a long history costs nothing when the newest works.
 */
export async function* restoreCandidates(backend: Backend, vm: string, repository: string, snapshotId?: string): AsyncGenerator<Candidate> {
  const all = await backend.listSnapshots(vm, repository);
  const candidates = all.filter((s) => s.complete && (!snapshotId || s.id === snapshotId));
  if (snapshotId && candidates.length === 0) throw new RecoveryRefused(`snapshot ${snapshotId} of ${vm} does not exist or is incomplete`);
  for (const s of candidates) {
    const skip = (outcome: RecoveryAttempt["outcome"], detail: string): Candidate => ({
      usable: false, snapshot: s, attempt: { snapshotId: s.id, snapshotCreatedAt: s.createdAt, outcome, detail },
    });
    if (!(await backend.verifySnapshot(s, repository))) {
      yield skip("unverified", `snapshot ${s.id} failed verification; trying an older one`);
      continue;
    }
    const restorable = backend.checkRestorable ? await backend.checkRestorable(s, repository) : { ok: true as const };
    if (!restorable.ok) {
      yield skip("unrestorable", `snapshot ${s.id} cannot be restored: ${restorable.reason}; trying an older one`);
      continue;
    }
    yield { usable: true, snapshot: s };
  }
}

export async function recover(backend: Backend, vm: string, opts: RecoverOptions): Promise<RecoveryReport> {
  const started = Date.now();
  const events: RecoveryEvent[] = [];
  const log = (step: RecoveryStep, detail: string) => {
    const e = { step, at: new Date().toISOString(), detail };
    events.push(e);
    opts.onEvent?.(e);
  };
  const targetName = opts.asName ?? vm;
  const drill = targetName !== vm;
  const [primary, ...recoveryHosts] = opts.hosts;

  // locate
  const alive = new Map<HostRef, boolean>();
  for (const h of opts.hosts) alive.set(h, await backend.hostAlive(h));
  const current = await backend.findVm(vm, opts.hosts.filter((h) => alive.get(h)));
  log("locate", `hosts: ${opts.hosts.map((h) => `${h}=${alive.get(h) ? "up" : "down"}`).join(", ")}; VM ${current ? `${current.state} on ${current.host}` : "not found on any live host"}`);

  // A recovery the backend recorded as started but not finished (CloudStack: the VM's
  // `restoring` tag) is finished - from the same snapshot, onto the same host - not reported done.
  const unfinished = !drill && current?.recovery?.inProgress ? current.recovery : undefined;
  if (unfinished) log("locate", `an interrupted recovery from snapshot ${unfinished.snapshotId} onto ${unfinished.to ?? current?.host}: finishing it`);
  if (!drill && !unfinished && current && (current.state === "running" || current.state === "paused")) {
    if (current.host !== primary && !opts.force) {
      // Already recovered (a second run, or someone else did it): nothing to do. The path is the
      // one the backend recorded; libvirt records none: memory snapshots restore warm there.
      const prot = current.protection?.lastRecovery;
      const path = current.recovery?.path ?? "warm";
      log("done", `${vm} already runs on ${current.host} (${path}${current.recovery?.reason ? `: ${current.recovery.reason}` : ""})`);
      return {
        vm, restoredAs: vm, from: prot?.from ?? primary, to: current.host, snapshotId: prot?.snapshotId ?? current.recovery?.snapshotId ?? "", snapshotCreatedAt: "",
        rpoSeconds: 0, restoreSeconds: (Date.now() - started) / 1000, path, alreadyRecovered: true, attempts: [], events,
      };
    }
    if (!opts.force) {
      throw new RecoveryRefused(`${vm} is still ${current.state} on ${current.host}, which is up: refusing to start a second copy (split brain). Use --force to stop it there and recover anyway.`);
    }
    log("fence", `force: stopping ${vm} on ${current.host}`);
    await backend.stopVm({ name: vm, host: current.host }, { force: true });
  }

  // select-snapshot -> restore -> verify, falling back to the next older snapshot on failure
  const attempts: RecoveryAttempt[] = [];
  let chosen: { snapshot: SnapshotRecord; target: HostRef; failedHost: HostRef; info: VmInfo; backendPath?: "warm" | "cold" } | undefined;
  const onlySnapshot = opts.snapshotId ?? unfinished?.snapshotId;
  for await (const c of restoreCandidates(backend, vm, opts.repository, onlySnapshot)) {
    if (!c.usable) {
      attempts.push(c.attempt);
      log("select-snapshot", c.attempt.detail);
      continue;
    }
    const snapshot = c.snapshot;
    const rpo = (started - Date.parse(snapshot.createdAt)) / 1000;
    log("select-snapshot", `${snapshot.id} taken ${snapshot.createdAt} on ${snapshot.host} (${rpo.toFixed(1)} s before recovery started)`);

    // pick the target: requested, else the first live recovery host that is not where the VM failed
    const failedHost = unfinished ? snapshot.host : current?.host ?? snapshot.host;
    const target =
      opts.to ??
      unfinished?.to ??
      recoveryHosts.find((h) => alive.get(h) && h !== failedHost) ??
      (drill ? opts.hosts.find((h) => alive.get(h)) : undefined);
    if (!target) throw new RecoveryRefused(`no healthy recovery host for ${vm} among ${recoveryHosts.join(", ") || "(none)"}`);
    if (opts.to && !(alive.get(opts.to) ?? (await backend.hostAlive(opts.to)))) throw new RecoveryRefused(`target host ${opts.to} does not answer`);
    // Only what this attempt creates may be cleaned up after it: never a running domain of that name.
    const before = unfinished ? undefined : await backend.findVm(targetName, [target]);
    if (before && (before.state === "running" || before.state === "paused")) {
      throw new RecoveryRefused(`a VM named ${targetName} is already ${before.state} on ${target}; refusing to restore over it`);
    }

    // restore (a stale, stopped definition on the target is replaced by the backend)
    log("restore", `restoring ${snapshot.id} as ${targetName} on ${target}`);
    try {
      const restored: VmInfo = await backend.restoreSnapshot(snapshot, target, { repository: opts.repository, name: targetName, force: opts.force });
      // CloudStack decides warm (revert to a memory snapshot) or cold (redeploy from a backup) by what happens.
      const backendPath = restored.recovery?.path;
      if (restored.recovery?.reason) log("restore", `${restored.recovery.path} path: ${restored.recovery.reason}`);
      // verify: running now and still running a moment later (not crashed on resume)
      await sleep(opts.verifyMs ?? 3000);
      const after = await backend.findVm(targetName, [target]);
      if (!after || after.state !== "running") {
        throw new Error(`${targetName} on ${target} is ${after?.state ?? "missing"} after restore`);
      }
      log("verify", `${targetName} is running on ${target}`);
      attempts.push({ snapshotId: snapshot.id, snapshotCreatedAt: snapshot.createdAt, outcome: "recovered", host: target, detail: `${targetName} runs on ${target}` });
      chosen = { snapshot, target, failedHost, info: after, backendPath };
      break;
    } catch (e) {
      if (e instanceof RefusedError) throw e; // any backend's refusal: nothing was changed, try nothing else
      const detail = `restoring ${snapshot.id} on ${target} failed: ${(e as Error).message}`;
      log("restore", detail);
      // Leave nothing of the failed attempt on the target: the half-restored VM and its files. A
      // backend whose restore reuses the VM itself (CloudStack reverts the same instance, and
      // cleans up its own warm attempt before falling back to cold) has nothing to discard here.
      let cleanedUp = true;
      try {
        if (backend.discardFailedRestore) {
          await backend.discardFailedRestore({ name: targetName, host: target }, target);
          log("cleanup", `removed what the failed restore of ${snapshot.id} left on ${target}`);
        } else {
          log("cleanup", `the ${backend.kind} backend cleans up its own failed restore of ${snapshot.id}`);
        }
      } catch (ce) {
        cleanedUp = false;
        log("cleanup", `could not remove the failed restore of ${snapshot.id} from ${target}: ${(ce as Error).message}`);
      }
      attempts.push({ snapshotId: snapshot.id, snapshotCreatedAt: snapshot.createdAt, outcome: "failed", host: target, detail, cleanedUp });
      if (onlySnapshot) break; // the operator (or an interrupted recovery) named this one snapshot: no other
    }
  }
  if (!chosen) {
    const summary = attempts.map((a) => `${a.snapshotId}: ${a.outcome}`).join(", ") || "none";
    const why = `no snapshot of ${vm} in ${opts.repository} could be restored (attempts: ${summary})`;
    // Nothing was even tried on a host: that is a refusal (no usable snapshot), as before.
    if (!attempts.some((a) => a.outcome === "failed")) throw Object.assign(new RecoveryRefused(why), { report: { attempts, events } });
    log("done", why);
    throw new RecoveryFailed(why, attempts, events);
  }
  const { snapshot, target, failedHost, backendPath } = chosen;
  const info = chosen.info;
  const rpoSeconds = (started - Date.parse(snapshot.createdAt)) / 1000;

  // record where it runs now, in the VM itself
  if (!drill && info.protection) {
    const record: ProtectionRecord = {
      ...info.protection,
      lastRecovery: { from: failedHost, to: target, snapshotId: snapshot.id, at: new Date().toISOString() },
    };
    await backend.setProtection({ name: vm, host: target }, record);
    log("record", `protection record on ${target} notes the recovery from ${failedHost}`);
  }
  const restoreSeconds = (Date.now() - started) / 1000;
  log("done", `recovered in ${restoreSeconds.toFixed(1)} s, RPO ${rpoSeconds.toFixed(1)} s`);
  return {
    vm, restoredAs: targetName, from: failedHost, to: target, snapshotId: snapshot.id, snapshotCreatedAt: snapshot.createdAt,
    rpoSeconds, restoreSeconds, path: backendPath ?? (snapshot.includesMemory ? "warm" : "cold"), alreadyRecovered: false, attempts, events,
  };
}
