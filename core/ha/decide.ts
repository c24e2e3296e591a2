/**
 * The HA decision core: pure functions from what an agent or the leading manager observed (leases,
 * host records, ownership records with their revisions, snapshots, the clock) to what it should do.
 * No I/O: ops/agent.ts and ops/manager.ts gather the facts, call these and act on the answer; the
 * scenario tests drive the same functions through a simulated cluster.
 *
 * Why no second copy can run (the invariant the scenario tests check at every instant):
 * - An agent renews its host lease and remembers when it SENT the last renewal that succeeded.
 *   The store granted that renewal no earlier, so the lease cannot expire before
 *   sentAt + ttl ("deadline"). The agent destroys its protected VMs at deadline - fenceSafety
 *   unless it has renewed again (self-fence).
 * - The manager sees the host's record vanish only once the store expired the lease (>= deadline),
 *   and waits a further fencing margin (clock-rate drift, the time a destroy takes) before it
 *   recovers anything that host owned. So the old copy is gone before the new one starts.
 * - The new owner is written with a compare-and-swap on the ownership record's revision (the
 *   fencing token): two managers cannot both claim one VM, and a host that comes back finds
 *   another owner and destroys its stale copy.
 */

export type OwnerState = "running" | "recovering" | "stopped";

/** The ownership record of one VM (coordination key owners/<vm>). */
export interface OwnerRecord {
  vm: string;
  /** Host that may run the VM. */
  host: string;
  /**
   * "recovering": a manager claimed it for host and is restoring it there. "stopped": its owner
   * saw it shut off (not by a fence) - someone stopped it on purpose, so it is not recovered.
   */
  state: OwnerState;
  /** Primary host first, then recovery hosts in order of preference (from the VM's protection record). */
  hosts: string[];
  memoryMiB: number;
  /** Snapshot repository (the policy's). */
  repository: string;
  /** Set while recovering: where it came from and which snapshot is being restored. */
  from?: string;
  snapshotId?: string;
  /** Who wrote the record (agent or manager id) and when (ISO). */
  by: string;
  since: string;
}

export interface Owned {
  record: OwnerRecord;
  /** Revision of the record: the fencing token the next change must compare against. */
  revision: string;
}

/** An agent's host record (coordination key hosts/<host>), attached to its host lease. */
export interface HostRecord {
  host: string;
  agent: string;
  /** Protected VMs running on the host now. */
  running: string[];
  /** VMs the agent destroyed when it could not renew its lease, and that it still owns. */
  fenced: string[];
  /** Memory the host can still give to recovered VMs; absent when unknown (no limit assumed). */
  freeMemoryMiB?: number;
  at: string;
}

export interface HostView {
  host: string;
  /** The host record exists, so the host's lease is alive. */
  leaseHeld: boolean;
  /** Manager clock (ms) when it first saw the lease missing; set when !leaseHeld. */
  lostSinceMs?: number;
  record?: HostRecord;
}

export interface SnapshotFact {
  id: string;
  createdAtMs: number;
  complete: boolean;
  /** Known to fail verification (a restore from it was refused). */
  corrupt?: boolean;
}

export interface ManagerFacts {
  now: number;
  fencingMarginMs: number;
  hosts: Record<string, HostView>;
  owners: Owned[];
  /** Per VM, newest first. Only needed for VMs that must be recovered. */
  snapshots: Record<string, SnapshotFact[]>;
  /** VMs whose recovery this manager is carrying out right now. */
  inFlight: string[];
}

export type ManagerAction =
  | {
      kind: "recover";
      vm: string;
      from: string;
      to: string;
      snapshotId: string;
      snapshotAgeMs: number;
      /** Revision the ownership record must still have (fencing token). */
      expectRevision: string;
      reason: string;
    }
  | { kind: "confirm"; vm: string; host: string; expectRevision: string }
  | { kind: "wait"; vm: string; untilMs?: number; reason: string }
  | { kind: "refuse"; vm: string; reason: string };

/** Remember when each host's lease was first seen missing (the manager's clock); pure. */
export function trackLeaseLoss(
  previous: Record<string, number>,
  knownHosts: Iterable<string>,
  presentHosts: Set<string>,
  now: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const h of knownHosts) if (!presentHosts.has(h)) out[h] = previous[h] ?? now;
  return out;
}

function newestUsable(snapshots: SnapshotFact[] | undefined): SnapshotFact | undefined {
  return [...(snapshots ?? [])].sort((a, b) => b.createdAtMs - a.createdAtMs).find((s) => s.complete && !s.corrupt);
}

/** What the leading manager should do for every owned VM this round. */
export function decideManager(f: ManagerFacts): ManagerAction[] {
  const actions: ManagerAction[] = [];
  // Memory promised to recoveries planned in this round, per target host.
  const promised: Record<string, number> = {};
  const owners = [...f.owners].sort((a, b) => a.record.vm.localeCompare(b.record.vm));

  const planRecovery = (o: Owned, failed: string, why: string): ManagerAction => {
    const vm = o.record.vm;
    const rejected: string[] = [];
    let target: string | undefined;
    for (const h of o.record.hosts) {
      if (h === failed) continue;
      const view = f.hosts[h];
      if (!view?.leaseHeld) {
        rejected.push(`${h}: no lease`);
        continue;
      }
      const free = view.record?.freeMemoryMiB;
      if (free !== undefined && free - (promised[h] ?? 0) < o.record.memoryMiB) {
        rejected.push(`${h}: full (${free - (promised[h] ?? 0)} MiB free < ${o.record.memoryMiB})`);
        continue;
      }
      target = h;
      break;
    }
    if (!target) return { kind: "refuse", vm, reason: `${why}; no healthy recovery host (${rejected.join(", ") || "none listed"})` };
    const snap = newestUsable(f.snapshots[vm]);
    if (!snap) return { kind: "refuse", vm, reason: `${why}; no complete, uncorrupted snapshot` };
    promised[target] = (promised[target] ?? 0) + o.record.memoryMiB;
    return {
      kind: "recover", vm, from: failed, to: target, snapshotId: snap.id, snapshotAgeMs: f.now - snap.createdAtMs,
      expectRevision: o.revision, reason: rejected.length ? `${why}; skipped ${rejected.join(", ")}` : why,
    };
  };

  for (const o of owners) {
    const { vm, host } = o.record;
    if (f.inFlight.includes(vm)) {
      actions.push({ kind: "wait", vm, reason: "recovery in progress" });
      continue;
    }
    const view = f.hosts[host];
    const held = view?.leaseHeld ?? false;
    if (o.record.state === "stopped") continue;
    if (o.record.state === "recovering") {
      if (held && view?.record?.running.includes(vm)) {
        actions.push({ kind: "confirm", vm, host, expectRevision: o.revision });
      } else if (held) {
        // A manager claimed it and stopped before the guest ran (it died, or the restore failed):
        // finish it on the same target, taking the claim over with a new revision.
        const snap = newestUsable(f.snapshots[vm]);
        if (!snap) actions.push({ kind: "refuse", vm, reason: `recovery onto ${host} unfinished; no complete, uncorrupted snapshot` });
        else actions.push({ kind: "recover", vm, from: o.record.from ?? host, to: host, snapshotId: snap.id, snapshotAgeMs: f.now - snap.createdAtMs, expectRevision: o.revision, reason: `finishing the recovery onto ${host}` });
      } else {
        const lost = view?.lostSinceMs ?? f.now;
        if (f.now - lost < f.fencingMarginMs) actions.push({ kind: "wait", vm, untilMs: lost + f.fencingMarginMs, reason: `recovery target ${host} lost its lease; fencing margin` });
        else actions.push(planRecovery(o, host, `recovery target ${host} lost its lease`));
      }
      continue;
    }
    if (held) {
      // The agent itself says it destroyed the VM (it could not renew in time): recover at once.
      if (view?.record?.fenced.includes(vm)) actions.push(planRecovery(o, host, `${host} fenced ${vm}`));
      continue;
    }
    const lost = view?.lostSinceMs ?? f.now;
    if (f.now - lost < f.fencingMarginMs) {
      actions.push({ kind: "wait", vm, untilMs: lost + f.fencingMarginMs, reason: `${host} lost its lease; fencing margin` });
      continue;
    }
    actions.push(planRecovery(o, host, `${host} lost its lease`));
  }
  return actions;
}

/** A protected VM defined on the agent's host. */
export interface LocalVm {
  vm: string;
  running: boolean;
}

export interface AgentFacts {
  now: number;
  host: string;
  /**
   * The earliest moment the host lease may expire in the store: send time of the last renewal
   * that succeeded + TTL. Before the first grant: the agent's start time (nothing vouches for
   * VMs found running by an agent that has no lease).
   */
  leaseDeadlineMs: number;
  /** The lease was renewed (or granted) in the last round and the store still has it. */
  leaseHeld: boolean;
  fenceSafetyMs: number;
  local: LocalVm[];
  /** Ownership of the local VMs and of every VM this host owns; null when the store could not be read this round. */
  owners: Record<string, Owned | null> | null;
  /** VMs this agent already destroyed by self-fencing. */
  fenced: string[];
}

export type AgentAction =
  | { kind: "self-fence"; vms: string[]; reason: string }
  | { kind: "destroy-stale"; vm: string; owner: string; revision: string }
  | { kind: "claim"; vm: string }
  | { kind: "forget-fenced"; vm: string; owner: string }
  /** The owner saw its VM shut off (not fenced) or running again: record it, so a manager does not recover a VM someone stopped. */
  | { kind: "mark"; vm: string; state: "running" | "stopped"; revision: string }
  /** A VM this host owns is no longer defined here (deleted): drop its ownership record. */
  | { kind: "release"; vm: string; revision: string };

/** What an agent should do with the VMs on its host this round. */
export function decideAgent(f: AgentFacts): AgentAction[] {
  const actions: AgentAction[] = [];
  const running = f.local.filter((v) => v.running).map((v) => v.vm).sort();
  const fenceAt = f.leaseDeadlineMs - f.fenceSafetyMs;
  if (f.now >= fenceAt && running.length) {
    const reason = f.leaseHeld
      ? `lease renewal too late (${f.now - fenceAt} ms past the fence point)`
      : `cannot renew the host lease; it may expire at ${new Date(f.leaseDeadlineMs).toISOString()}`;
    return [{ kind: "self-fence", vms: running, reason }];
  }
  if (!f.owners) return actions; // store unreachable but lease still safe: nothing to learn
  for (const vm of running) {
    const owner = f.owners[vm];
    if (owner && owner.record.host !== f.host) actions.push({ kind: "destroy-stale", vm, owner: owner.record.host, revision: owner.revision });
    else if (!owner && f.leaseHeld && !f.fenced.includes(vm)) actions.push({ kind: "claim", vm });
  }
  for (const vm of f.fenced) {
    const owner = f.owners[vm];
    if (owner && owner.record.host !== f.host) actions.push({ kind: "forget-fenced", vm, owner: owner.record.host });
  }
  if (!f.leaseHeld) return actions;
  const defined = new Map(f.local.map((v) => [v.vm, v.running]));
  for (const [vm, owner] of Object.entries(f.owners).sort(([a], [b]) => a.localeCompare(b))) {
    if (!owner || owner.record.host !== f.host || f.fenced.includes(vm)) continue;
    const running = defined.get(vm);
    // "recovering": a manager is still restoring it here, so it may not be defined yet.
    if (running === undefined && owner.record.state !== "recovering") actions.push({ kind: "release", vm, revision: owner.revision });
    else if (!running && owner.record.state === "running") actions.push({ kind: "mark", vm, state: "stopped", revision: owner.revision });
    else if (running && owner.record.state === "stopped") actions.push({ kind: "mark", vm, state: "running", revision: owner.revision });
  }
  return actions;
}
